//! `megatorrent publish`: add items to a collection of one's manifest and publish it, over
//! HTTP or the WebSocket, retrying after conflicts.

use std::time::Duration;

use super::api::{PutResult, SignalingClient};
use super::cli::{connector_and_base, note, shorten, warn_loose_permissions, Cli, CliError};
use super::identity::Home;
use super::subscribe::{self as live, WsPublish};
use crate::proto::{Collection, Manifest, UnsignedManifest};

/// How many times `publish` refetches and retries after a `409 Conflict`.
pub const MAX_CONFLICT_RETRIES: u32 = 3;

/// Check `publish` arguments, warning about items that are not magnet links.
fn check_publish_args(title: &str, items: &[String]) -> Result<(), CliError> {
    check_title(title)?;
    for item in items {
        check_item(item)?;
        if !item.to_ascii_lowercase().starts_with("magnet:?") {
            note(&format!(
                "warning: {:?} is not a magnet link; publishing it anyway",
                shorten(item)
            ));
        }
    }
    Ok(())
}

/// `publish --ws`: as [`publish`], over one WebSocket.
pub(crate) async fn publish_ws(
    cli: &Cli,
    home: &Home,
    title: &str,
    items: &[String],
    replace: bool,
) -> Result<u64, CliError> {
    check_publish_args(title, items)?;
    let id = home.load_identity()?;
    warn_loose_permissions(home);
    let pk = id.public_key();
    let mut state = home.load_state()?;
    let (connector, base) = connector_and_base(cli, home).await?;
    let timeout = Duration::from_secs(cli.timeout);
    let (mut conn, mut current) = live::open_for_publish(&connector, &base, &pk, timeout).await?;
    let mut conflict_floor = 0u64;
    for _ in 0..=MAX_CONFLICT_RETRIES {
        let server_seq = current.as_ref().map_or(0, |m| m.sequence());
        let mut collections = match (&current, replace) {
            (Some(m), false) => m.collections().to_vec(),
            _ => Vec::new(),
        };
        merge_items(&mut collections, title, items);
        let sequence = 1 + state.highest_for(&pk).max(server_seq).max(conflict_floor);
        let manifest = UnsignedManifest {
            sequence,
            timestamp: u64::try_from(crate::now_ms()).unwrap_or(0),
            collections,
        }
        .sign(id.signing_key())
        .map_err(CliError::Sign)?;
        match live::publish_over(&mut conn, &manifest, &mut current, timeout).await? {
            WsPublish::Stored(published) => {
                state.record(&pk, published);
                if let Err(e) = home.save_state(&state) {
                    note(&format!("warning: published, but {e}"));
                }
                note(&format!("published sequence {published} over WebSocket"));
                conn.close().await;
                return Ok(published);
            }
            WsPublish::Conflict(cur) => {
                conflict_floor = conflict_floor.max(cur.unwrap_or(sequence));
                note("the server holds a newer manifest; retrying");
            }
        }
    }
    conn.close().await;
    Err(CliError::TooManyConflicts {
        attempts: MAX_CONFLICT_RETRIES + 1,
    })
}

/// The `publish` command; returns the published sequence.
pub(crate) async fn publish(
    home: &Home,
    client: &SignalingClient,
    title: &str,
    items: &[String],
    replace: bool,
) -> Result<u64, CliError> {
    check_publish_args(title, items)?;
    publish_edit(home, client, &mut |current| {
        let mut collections = match (current, replace) {
            (Some(m), false) => m.collections().to_vec(),
            _ => Vec::new(),
        };
        merge_items(&mut collections, title, items);
        Ok(collections)
    })
    .await
}

/// Computes the collections to publish from the server's current manifest (`None` if it
/// has none); see [`publish_edit`].
pub(crate) type EditFn<'a> =
    dyn FnMut(Option<&Manifest>) -> Result<Vec<Collection>, CliError> + Send + 'a;

/// Publish the next sequence of our manifest, its collections computed by `edit` from the
/// server's current manifest (`None` if it has none); after a `409 Conflict` the current
/// manifest is refetched and `edit` called again. Returns the published sequence.
pub(crate) async fn publish_edit(
    home: &Home,
    client: &SignalingClient,
    edit: &mut EditFn<'_>,
) -> Result<u64, CliError> {
    let id = home.load_identity()?;
    warn_loose_permissions(home);
    let pk = id.public_key();
    let mut state = home.load_state()?;
    // Highest sequence a conflict told us about (it may exceed what GET shows, e.g. after
    // the stored record was deleted but its high-water mark kept).
    let mut conflict_floor = 0u64;

    for attempt in 0..=MAX_CONFLICT_RETRIES {
        let current = client.get_manifest(&pk).await?;
        let server_seq = current.as_ref().map_or(0, |m| m.sequence());
        let collections = edit(current.as_ref())?;
        let sequence = 1 + state.highest_for(&pk).max(server_seq).max(conflict_floor);
        let manifest = UnsignedManifest {
            sequence,
            timestamp: u64::try_from(crate::now_ms()).unwrap_or(0),
            collections,
        }
        .sign(id.signing_key())
        .map_err(CliError::Sign)?;

        match client.put_manifest(&manifest).await {
            Ok(result) => {
                let published = result.sequence().max(sequence);
                state.record(&pk, published);
                if let Err(e) = home.save_state(&state) {
                    note(&format!("warning: published, but {e}"));
                }
                let how = match result {
                    PutResult::Created { .. } => "created",
                    PutResult::Updated { .. } => "updated",
                };
                note(&format!("published sequence {published} ({how})"));
                return Ok(published);
            }
            Err(e) => match e.conflict() {
                Some(current) => {
                    conflict_floor = conflict_floor.max(current.unwrap_or(sequence));
                    if attempt < MAX_CONFLICT_RETRIES {
                        note("the server holds a newer manifest; refetching and retrying");
                    }
                }
                None => return Err(e.into()),
            },
        }
    }
    Err(CliError::TooManyConflicts {
        attempts: MAX_CONFLICT_RETRIES + 1,
    })
}

/// Add `items` to the collection titled `title` (appending it if missing), skipping items
/// already there.
pub fn merge_items(collections: &mut Vec<Collection>, title: &str, items: &[String]) {
    let idx = match collections.iter().position(|c| c.title == title) {
        Some(i) => i,
        None => {
            collections.push(Collection {
                title: title.to_owned(),
                items: Vec::new(),
            });
            collections.len() - 1
        }
    };
    let target = &mut collections[idx].items;
    for item in items {
        if !target.contains(item) {
            target.push(item.clone());
        }
    }
}

fn check_title(title: &str) -> Result<(), CliError> {
    let bad = |reason| CliError::InvalidArg {
        what: "title",
        value: shorten(title),
        reason,
    };
    if title.trim().is_empty() {
        return Err(bad("must not be empty"));
    }
    if title.chars().any(char::is_control) {
        return Err(bad("must not contain control characters"));
    }
    Ok(())
}

fn check_item(item: &str) -> Result<(), CliError> {
    let bad = |reason| CliError::InvalidArg {
        what: "item",
        value: shorten(item),
        reason,
    };
    if item.is_empty() {
        return Err(bad("must not be empty"));
    }
    if item.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("must not contain whitespace or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::http::{BaseUrl, HttpClient};
    use crate::net::Connector;

    #[test]
    fn merge_adds_missing_items_once_and_creates_collections() {
        let mut cols = vec![Collection {
            title: "a".into(),
            items: vec!["m1".into()],
        }];
        merge_items(&mut cols, "a", &["m1".into(), "m2".into(), "m2".into()]);
        assert_eq!(cols[0].items, vec!["m1", "m2"]);
        merge_items(&mut cols, "b", &["m3".into()]);
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[1].title, "b");
        assert_eq!(cols[1].items, vec!["m3"]);
    }

    #[test]
    fn validates_titles_and_items() {
        assert!(check_title("Season 1").is_ok());
        assert!(check_title("  ").is_err());
        assert!(check_title("a\nb").is_err());
        assert!(check_item("magnet:?xt=urn:btih:aa").is_ok());
        assert!(check_item("").is_err());
        assert!(check_item("two words").is_err());
    }

    /// A 409 whose `currentSequence` is above what GET shows (a kept high-water mark) moves
    /// the next attempt past it.
    #[tokio::test]
    async fn publish_retries_past_a_conflicts_current_sequence() {
        use crate::client::testutil::{json_response, serve_many};
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::new(tmp.path());
        home.create_identity(false).unwrap();
        let not_found = json_response("404 Not Found", r#"{"error":"not-found","message":"x"}"#);
        let (url, requests) = serve_many(vec![
            not_found.clone(),
            json_response(
                "409 Conflict",
                r#"{"error":"conflict","message":"stale","currentSequence":7}"#,
            ),
            not_found,
            json_response("201 Created", r#"{"sequence":8}"#),
        ])
        .await;
        let client = SignalingClient::new(HttpClient::new(
            Connector::direct(),
            BaseUrl::parse(&url).unwrap(),
        ));
        let items = vec!["magnet:?xt=urn:btih:aa".to_owned()];
        let seq = publish(&home, &client, "t", &items, false).await.unwrap();
        assert_eq!(seq, 8);
        let pk = home.load_identity().unwrap().public_key();
        assert_eq!(home.load_state().unwrap().highest_for(&pk), 8);
        let sent = String::from_utf8(requests.await.unwrap()).unwrap();
        assert_eq!(sent.matches("PUT /v1/manifests/").count(), 2);
        assert!(sent.contains("\"sequence\":1,"), "{sent}");
        assert!(sent.contains("\"sequence\":8,"), "{sent}");
    }
}
