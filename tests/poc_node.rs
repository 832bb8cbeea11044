//! Our reproduction of `JSON.stringify` (used to rebuild the proof of concept's signed bytes)
//! against the real thing: Node prints `JSON.stringify` of tricky strings (lone surrogates
//! included), of parsed documents (integer-like keys, escapes) and of the proof of
//! concept's exact signed objects, and every result must equal ours byte for byte.
//! Needs `node` on PATH: missing is a failure under `CI=true` (scripts/test installs it).
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use megatorrent::proto::poc::stringify::{parse_ordered, quote_utf16, stringify, JsValue};
use megatorrent::proto::{PocManifest, PocMessage};
use serde_json::json;

/// What Node computes for each input (the reference side).
const SCRIPT: &str = r#"
let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const cases = JSON.parse(input);
  const out = {
    strings: cases.strings.map((units) => JSON.stringify(String.fromCharCode(...units))),
    docs: cases.docs.map((d) => JSON.stringify(JSON.parse(d))),
    messages: cases.messages.map((d) => {
      const m = JSON.parse(d);
      return JSON.stringify({ content: m.content, timestamp: m.timestamp, publicKey: m.publicKey });
    }),
    manifests: cases.manifests.map((d) => {
      const m = JSON.parse(d);
      return JSON.stringify({ publicKey: m.publicKey, messages: m.messages });
    }),
  };
  process.stdout.write(JSON.stringify(out));
});
"#;

fn node_installed() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Deterministic pseudo-random UTF-16 strings drawn from the interesting ranges.
fn random_strings(n: usize) -> Vec<Vec<u16>> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let pools: [(u16, u16); 8] = [
        (0x00, 0x1f),
        (0x20, 0x7f),
        (0x22, 0x22),
        (0x5c, 0x5c),
        (0x80, 0x7ff),
        (0x2028, 0x2029),
        (0xd800, 0xdbff),
        (0xdc00, 0xdfff),
    ];
    (0..n)
        .map(|_| {
            let len = next() % 12;
            (0..len)
                .map(|_| {
                    let (lo, hi) = pools[(next() % pools.len() as u64) as usize];
                    lo + (next() % u64::from(hi - lo + 1)) as u16
                })
                .collect()
        })
        .collect()
}

fn strings() -> Vec<Vec<u16>> {
    let mut v: Vec<Vec<u16>> = (0u16..0x80).map(|u| vec![u]).collect();
    for s in [
        "",
        "plain",
        "\u{7f}\u{80}\u{a0}\u{2028}\u{2029}\u{feff}\u{fffe}",
        "déjà vu — ✓ 😀 \u{10ffff}",
        "</script>\u{0}\u{1b}[31m",
    ] {
        v.push(s.encode_utf16().collect());
    }
    v.extend([
        vec![0xd800],
        vec![0xdfff],
        vec![0xdbff, 0x41],
        vec![0xdc00, 0xd800],
        vec![0xd83d, 0xde00, 0xd83d],
        vec![0x41, 0xdfff, 0x42],
    ]);
    v.extend(random_strings(500));
    v
}

fn docs() -> Vec<String> {
    [
        r#"{"b":1,"2":"two","a":[1,-2,null,true,false],"10":{"y":0,"0":"zero"},"1":"one"}"#,
        r#"{"01":1,"1":2,"-1":3,"4294967294":4,"4294967295":5,"1.5":6,"":7,"x":8}"#,
        r#"[ "\u00e9\/\b\f\n\r\t\u0001\u001f\"\\" , -9007199254740991 , 9007199254740991 , 0 ]"#,
        r#"{"k\u0000ey":"v","kéy":{"nested":[{"3":3,"a":"a"}]}}"#,
        r#"  {"messages" : [ {"infohash":"AB","timestamp":1700000000000} ] }  "#,
        r#""lone \u2028 line seps \u2029""#,
        "[]",
        "{}",
        "null",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn message_docs() -> Vec<String> {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let mut docs: Vec<String> = ["", "hello", "tab\t\"q\" \\ \u{1} \u{2028} déjà 😀 \u{7f}"]
        .iter()
        .zip([0u64, 1_700_000_000_000, 9_007_199_254_740_991])
        .map(|(c, ts)| {
            let m = PocMessage::sign(&key, c, ts).unwrap();
            String::from_utf8(m.document_bytes().to_vec()).unwrap()
        })
        .collect();
    // Member order and spacing in the file do not change what is signed.
    docs.push(
        json!({"signature": "00", "publicKey": "AB", "timestamp": 3, "content": "x\u{0}y"})
            .to_string(),
    );
    docs
}

fn manifest_docs() -> Vec<String> {
    vec![
        r#"{"publicKey":"ab","messages":[{"infohash":"cd","timestamp":1700000000000},{"z":1,"10":"ten","2":"two","infohash":"EF"},"magnet:?xt=urn:btih:00",7,null,[{"1":1,"0":0}]],"signature":"00"}"#.to_owned(),
        r#"{"signature":"00","messages":[],"publicKey":"Ab"}"#.to_owned(),
    ]
}

/// The same results computed by our code.
fn ours(
    strings: &[Vec<u16>],
    docs: &[String],
    messages: &[String],
    manifests: &[String],
) -> serde_json::Value {
    let member = |v: &JsValue, name: &str| v.get(name).cloned().unwrap();
    let text = |v: JsValue| match v {
        JsValue::String(s) => s,
        other => panic!("not a string: {other:?}"),
    };
    json!({
        "strings": strings.iter().map(|u| quote_utf16(u.as_slice())).collect::<Vec<_>>(),
        "docs": docs.iter().map(|d| stringify(&parse_ordered(d.as_bytes()).unwrap())).collect::<Vec<_>>(),
        "messages": messages.iter().map(|d| {
            let v = parse_ordered(d.as_bytes()).unwrap();
            let JsValue::Int(ts) = member(&v, "timestamp") else { panic!("timestamp") };
            String::from_utf8(PocMessage::signed_bytes(
                &text(member(&v, "content")),
                u64::try_from(ts).unwrap(),
                &text(member(&v, "publicKey")),
            )).unwrap()
        }).collect::<Vec<_>>(),
        "manifests": manifests.iter().map(|d| {
            let v = parse_ordered(d.as_bytes()).unwrap();
            String::from_utf8(PocManifest::signed_bytes(
                &text(member(&v, "publicKey")),
                &member(&v, "messages"),
            )).unwrap()
        }).collect::<Vec<_>>(),
    })
}

#[test]
fn stringify_matches_node_byte_for_byte() {
    if !common::tor::require(node_installed(), "`node` is not installed") {
        return;
    }
    let (strings, docs, messages, manifests) = (strings(), docs(), message_docs(), manifest_docs());
    let input = json!({
        "strings": strings, "docs": docs, "messages": messages, "manifests": manifests,
    });
    let mut child = Command::new("node")
        .args(["-e", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours = ours(&strings, &docs, &messages, &manifests);
    for part in ["strings", "docs", "messages", "manifests"] {
        let (n, o) = (
            node[part].as_array().unwrap(),
            ours[part].as_array().unwrap(),
        );
        assert_eq!(n.len(), o.len(), "{part}");
        for (i, (n, o)) in n.iter().zip(o).enumerate() {
            assert_eq!(
                n.as_str().unwrap().as_bytes(),
                o.as_str().unwrap().as_bytes(),
                "{part}[{i}]: node {n} vs ours {o}"
            );
        }
    }
}
