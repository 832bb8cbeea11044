//! Private channels end to end: a real in-process server on 127.0.0.1 and the real
//! `megatorrent` binary for every home (separate processes, separate torrent sessions,
//! the invitation sent through the server's mailbox).
#![cfg(all(
    feature = "client",
    feature = "server",
    feature = "sqlite",
    feature = "torrent"
))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::cli::{find, mt, start_seed, stop_seeder, Run, Seeders, LISTEN};
use megatorrent::client::channel::seal::{self, ReadKey};
use megatorrent::proto::PublicKey;

async fn post(home: &Path, server: &str, channel: &str, text: &str) -> String {
    let mut args = vec!["share", "--channel", channel, "--detach", text];
    args.extend_from_slice(LISTEN);
    let magnet = mt(home, server, &args).await.ok().to_owned();
    assert!(magnet.starts_with("magnet:?xt=urn:btih:"), "{magnet}");
    magnet
}

/// The texts `find` printed, oldest first.
fn texts(run: &Run) -> Vec<String> {
    run.ok()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_channel_is_readable_only_with_its_invited_read_key() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    // A writes, A2 writes after importing the channel, B is invited, C is not.
    let dirs: [tempfile::TempDir; 4] = std::array::from_fn(|_| tempfile::tempdir().unwrap());
    let [a, a2, b, c] = dirs.each_ref().map(tempfile::TempDir::path);
    let _guard = Seeders(vec![a.to_owned(), a2.to_owned()]);
    mt(a, &url, &["keygen"]).await.ok();
    let key_b = mt(b, &url, &["keygen"]).await.ok().to_owned();
    mt(c, &url, &["keygen"]).await.ok();

    // A creates a private channel and posts two messages into it.
    let channel = mt(a, &url, &["channel", "create", "news", "--private"])
        .await
        .ok()
        .to_owned();
    assert_eq!(channel.len(), 64, "{channel}");
    let listed = mt(a, &url, &["channel", "list"]).await;
    assert_eq!(listed.ok(), format!("news {channel} private"));
    let settings = std::fs::read_to_string(a.join("channels/news/channel.json")).unwrap();
    let read_key: serde_json::Value = serde_json::from_str(&settings).unwrap();
    let read_key = read_key["readKey"].as_str().unwrap().to_owned();
    assert_eq!(read_key.len(), 64);
    post(a, &url, "news", "secret one").await;
    post(a, &url, "news", "secret two").await;

    // The server holds only sealed items: no magnet, no text.
    let manifest = mt(c, &url, &["lookup", "--json", &channel]).await;
    let manifest = manifest.ok();
    let doc: serde_json::Value = serde_json::from_str(manifest).unwrap();
    let items = doc["collections"][0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{manifest}");
    for item in items {
        assert!(item.as_str().unwrap().starts_with("mtchan1:"), "{manifest}");
    }
    assert!(!manifest.contains("btih") && !manifest.contains("secret"));

    // C has no read key: it learns only that the channel is private, with 2 items.
    let run = find(c, &url, &channel).await;
    run.fails_with("is a private channel: 2 encrypted items not shown");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(!run.stderr.contains("secret") && !run.stderr.contains(&read_key));

    // A invites B by direct message; B's inbox stores the key and says so (not the key).
    let sent = mt(a, &url, &["channel", "invite", "news", &key_b]).await;
    assert!(sent.ok().starts_with("sent "), "{sent:?}");
    let inbox = mt(b, &url, &["inbox"]).await;
    let shown = inbox.ok();
    assert!(
        shown.contains(&format!(
            "invitation to private channel \"news\" ({channel}): read key stored"
        )),
        "{inbox:?}"
    );
    assert!(!shown.contains(&read_key) && !inbox.stderr.contains(&read_key));
    let run = find(b, &url, &channel).await;
    assert_eq!(texts(&run), ["secret one", "secret two"], "{run:?}");

    // A second writer: the channel exported from A and imported on A2; its post reaches B.
    let file = a.join("news.channel");
    mt(
        a,
        &url,
        &["channel", "export", "news", "--out", file.to_str().unwrap()],
    )
    .await
    .ok();
    let imported = mt(a2, &url, &["channel", "import", file.to_str().unwrap()]).await;
    assert_eq!(imported.ok(), channel);
    post(a2, &url, "news", "secret three").await;
    let run = find(b, &url, &channel).await;
    assert_eq!(
        texts(&run),
        ["secret one", "secret two", "secret three"],
        "{run:?}"
    );

    // An item sealed under another key, published with the channel's identity (a channel
    // directory is laid out like a home): rejected on B's side, never printed.
    let ch_home = a.join("channels/news");
    let ch_key = PublicKey::from_hex(&channel).unwrap();
    let forged = seal::seal_item(
        &ReadKey::generate(),
        &ch_key,
        &format!("magnet:?xt=urn:btih:{}", "ab".repeat(20)),
    )
    .unwrap();
    mt(&ch_home, &url, &["publish", "--title", "messages", &forged])
        .await
        .ok();
    let run = find(b, &url, &channel).await;
    assert_eq!(texts(&run).len(), 3, "{run:?}");
    assert!(
        run.stderr
            .contains("rejected item 3: does not decrypt with this channel's read key"),
        "{run:?}"
    );
    // C still sees nothing but the count.
    find(c, &url, &channel)
        .await
        .fails_with("is a private channel: 4 encrypted items not shown");

    // A repeated invitation changes nothing.
    mt(a, &url, &["channel", "invite", "news", &key_b])
        .await
        .ok();
    let inbox = mt(b, &url, &["inbox"]).await;
    assert!(
        inbox.ok().contains("this home already has its read key"),
        "{inbox:?}"
    );

    // B seeds the sealed torrents it fetched (seeding needs no key); with both writers
    // offline, a newly invited D gets every message from B alone.
    let (mut seed_b, ready) = start_seed(b, &url).await;
    assert!(ready.starts_with("seeding 3 torrents"), "{ready}");
    stop_seeder(a).await;
    stop_seeder(a2).await;
    let d = tempfile::tempdir().unwrap();
    let key_d = mt(d.path(), &url, &["keygen"]).await.ok().to_owned();
    mt(a, &url, &["channel", "invite", "news", &key_d])
        .await
        .ok();
    mt(d.path(), &url, &["inbox"]).await.ok();
    let run = find(d.path(), &url, &channel).await;
    assert_eq!(
        texts(&run),
        ["secret one", "secret two", "secret three"],
        "{run:?}"
    );
    seed_b.kill().await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn channel_commands_fail_cleanly_on_bad_input() {
    let server = common::server::start_sqlite().await;
    let url = server.url.clone();
    let t = tempfile::tempdir().unwrap();
    let h = t.path();
    mt(h, &url, &["keygen"]).await.ok();
    mt(h, &url, &["channel", "create", "9lives"])
        .await
        .fails_with("invalid channel name");
    let open = mt(h, &url, &["channel", "create", "open"])
        .await
        .ok()
        .to_owned();
    mt(h, &url, &["channel", "create", "open", "--private"])
        .await
        .fails_with("already exists");
    mt(h, &url, &["channel", "invite", "open", &open])
        .await
        .fails_with("is public");
    mt(h, &url, &["channel", "invite", "nope", &open])
        .await
        .fails_with("no channel named \"nope\"");
    mt(h, &url, &["share", "--channel", "nope", "hi"])
        .await
        .fails_with("no channel named \"nope\"");
    let out = h.join("open.channel");
    let out = out.to_str().unwrap();
    mt(h, &url, &["channel", "export", "open", "--out", out])
        .await
        .ok();
    mt(h, &url, &["channel", "export", "open", "--out", out])
        .await
        .fails_with("already exists");
    std::fs::write(h.join("bad.channel"), "{\"secretKey\":\"0123\"}").unwrap();
    let bad = mt(
        h,
        &url,
        &["channel", "import", h.join("bad.channel").to_str().unwrap()],
    )
    .await;
    bad.fails_with("is corrupt");
    assert!(!bad.stderr.contains("0123"), "{bad:?}");
    let list = mt(h, &url, &["channel", "list"]).await;
    assert_eq!(list.ok(), format!("open {open} public"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_private_channel_refuses_more_posts_and_leaves_nothing_behind() {
    // A 4 KiB manifest cap holds about a dozen sealed items.
    let mut cfg = common::server::test_config();
    cfg.limits.max_manifest_bytes = 4096;
    let server = common::server::start_with(cfg, None).await;
    let url = server.url.clone();
    let t = tempfile::tempdir().unwrap();
    let h = t.path();
    let _guard = Seeders(vec![h.to_owned()]);
    mt(h, &url, &["channel", "create", "tiny", "--private"])
        .await
        .ok();
    let batch = h.join("batch.txt");
    let text: String = (1..=30).map(|i| format!("line {i}\n")).collect();
    std::fs::write(&batch, text).unwrap();
    let mut args = vec!["share", "--channel", "tiny", "--detach", "--batch"];
    args.push(batch.to_str().unwrap());
    args.extend_from_slice(LISTEN);
    mt(h, &url, &args)
        .await
        .fails_with("the private channel is full: 30 items");
    let left = std::fs::read_dir(h.join("channels/tiny/messages"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "a refused share removes its sealed files");
    // Smaller posts still go in.
    post(h, &url, "tiny", "fits").await;
    let left = std::fs::read_dir(h.join("channels/tiny/messages"))
        .unwrap()
        .count();
    assert_eq!(left, 1);
    stop_seeder(h).await;
    server.stop().await;
}
