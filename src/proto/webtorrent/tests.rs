use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::proto::tracker::{AnnounceEvent, PeerId, ScrapeStats};
use crate::proto::InfoHash;

fn bs(b: u8) -> String {
    to_binary_string(&[b; 20])
}

fn sdp_offer(text: &str) -> Value {
    json!({"type": "offer", "sdp": text})
}

#[test]
fn binary_strings_are_bytes_and_reject_wide_chars() {
    let all: Vec<u8> = (0..=255).collect();
    let s = to_binary_string(&all);
    assert_eq!(s.chars().count(), 256);
    assert_eq!(from_binary_string::<256>(&s), Some(all.try_into().unwrap()));
    assert_eq!(from_binary_string::<2>("a\u{100}"), None);
    assert_eq!(from_binary_string::<2>("abc"), None);
    assert_eq!(from_binary_string::<2>("a"), None);
    // JSON escapes survive: \u00ff is the byte 0xff.
    let v: Value = serde_json::from_str(r#""\u00ff\u0000""#).unwrap();
    assert_eq!(
        from_binary_string::<2>(v.as_str().unwrap()),
        Some([0xff, 0])
    );
}

#[test]
fn reference_client_announce_parses() {
    let frame = json!({
        "action": "announce", "info_hash": bs(0xe9), "peer_id": bs(b'-'),
        "numwant": 5, "uploaded": 0, "downloaded": 12.5, "left": null, "event": "started",
        "offers": [{"offer": sdp_offer("v=0"), "offer_id": bs(0x80)}],
        "trackerid": "abc", "extra": true
    })
    .to_string();
    let Ok(Incoming::Announce(a)) = Incoming::parse(&frame) else {
        panic!("announce refused");
    };
    assert_eq!(a.info_hash, InfoHash::from([0xe9; 20]));
    assert_eq!(a.event, AnnounceEvent::Started);
    assert_eq!((a.numwant, a.downloaded, a.left), (Some(5), Some(12), None));
    assert_eq!(a.offers.len(), 1);
    assert_eq!(a.offers[0].offer_id, OfferId::from([0x80; 20]));
    assert_eq!(a.tracker_id.as_deref(), Some("abc"));

    let answer = json!({
        "action": "announce", "info_hash": bs(1), "peer_id": bs(2),
        "answer": {"type": "answer", "sdp": "x"}, "to_peer_id": bs(3), "offer_id": bs(4),
        "event": "update"
    })
    .to_string();
    let Ok(Incoming::Announce(a)) = Incoming::parse(&answer) else {
        panic!("answer refused");
    };
    let ans = a.answer.unwrap();
    assert_eq!(ans.to_peer_id, PeerId::from([3; 20]));
    assert_eq!(a.event, AnnounceEvent::None);
}

#[test]
fn other_actions_are_a_dispatch_point() {
    let frame = r#"{"action":"subscribe","key":"ab"}"#;
    let Ok(Incoming::Other { action, message }) = Incoming::parse(frame) else {
        panic!("not Other");
    };
    assert_eq!(action, "subscribe");
    assert_eq!(message["key"], "ab");
    assert_eq!(
        Incoming::parse(frame).unwrap().to_json(),
        r#"{"action":"subscribe","key":"ab"}"#
    );
}

#[test]
fn bad_messages_have_codes() {
    let base = || {
        json!({"action": "announce", "info_hash": bs(1), "peer_id": bs(2)})
            .as_object()
            .cloned()
            .unwrap()
    };
    let with = |k: &str, v: Value| {
        let mut m = base();
        m.insert(k.into(), v);
        Value::Object(m).to_string()
    };
    let offer = json!({"offer": sdp_offer("x"), "offer_id": bs(9)});
    let cases = [
        ("{".to_string(), "invalid-json"),
        ("[1]".to_string(), "not-an-object"),
        (r#"{"info_hash":"x"}"#.to_string(), "missing-action"),
        (r#"{"action":7}"#.to_string(), "missing-action"),
        (
            r#"{"action":"announce","peer_id":"x"}"#.to_string(),
            "missing-field",
        ),
        (
            with("info_hash", json!("\u{100}".repeat(20))),
            "invalid-field",
        ),
        (with("info_hash", json!(bs(1) + "x")), "invalid-field"),
        (with("event", json!("bogus")), "invalid-field"),
        (with("numwant", json!("5")), "invalid-field"),
        (with("offers", json!(vec![offer; 11])), "too-many"),
        (
            with(
                "offers",
                json!([{"offer": "not an object", "offer_id": bs(9)}]),
            ),
            "invalid-field",
        ),
        (
            with(
                "offers",
                json!([{"offer": sdp_offer(&"s".repeat(MAX_SDP_BYTES)), "offer_id": bs(9)}]),
            ),
            "too-large",
        ),
        (with("answer", sdp_offer("x")), "missing-field"),
        (
            with("trackerid", json!("t".repeat(MAX_TOKEN_CHARS + 1))),
            "too-large",
        ),
        (
            json!({"action": "scrape", "info_hash": vec![bs(1); MAX_SCRAPE_HASHES + 1]})
                .to_string(),
            "too-many",
        ),
        (
            json!({"action": "scrape", "info_hash": 5}).to_string(),
            "invalid-field",
        ),
    ];
    for (frame, code) in cases {
        let err = Incoming::parse(&frame).unwrap_err();
        assert_eq!(err.code(), code, "{frame}: {err}");
    }
    let err = Incoming::parse("{").unwrap_err();
    assert!(err.failure_reason().starts_with("invalid: "));
}

#[test]
fn outgoing_shapes_match_the_reference_tracker() {
    let resp = Outgoing::AnnounceResponse(AnnounceResponse {
        info_hash: InfoHash::from([b'a'; 20]),
        interval: 120,
        complete: 1,
        incomplete: 2,
        tracker_id: None,
        warning_message: None,
    });
    assert_eq!(
        resp.to_value(),
        json!({"action": "announce", "info_hash": "a".repeat(20), "interval": 120,
               "complete": 1, "incomplete": 2})
    );
    let offer = Outgoing::Offer(RelayedOffer {
        info_hash: InfoHash::from([b'a'; 20]),
        peer_id: PeerId::from([b'p'; 20]),
        offer: sdp_offer("v=0"),
        offer_id: OfferId::from([b'o'; 20]),
    });
    assert_eq!(
        offer.to_value(),
        json!({"action": "announce", "info_hash": "a".repeat(20), "peer_id": "p".repeat(20),
               "offer": sdp_offer("v=0"), "offer_id": "o".repeat(20)})
    );
    let fail = Outgoing::Failure(Failure {
        reason: "invalid: info_hash".into(),
        action: Some("announce".into()),
        info_hash: None,
    });
    assert_eq!(
        fail.to_json(),
        r#"{"action":"announce","failure reason":"invalid: info_hash"}"#
    );
}

// ---- property tests ----

fn arb_bytes20() -> impl Strategy<Value = [u8; 20]> {
    any::<[u8; 20]>()
}

fn arb_sdp() -> impl Strategy<Value = Value> {
    (prop::sample::select(vec!["offer", "answer"]), ".{0,200}")
        .prop_map(|(t, s)| json!({"type": t, "sdp": s}))
}

fn arb_event() -> impl Strategy<Value = AnnounceEvent> {
    (0u32..5).prop_map(|c| AnnounceEvent::from_udp_code(c).unwrap_or_default())
}

fn arb_announce() -> impl Strategy<Value = Announce> {
    (
        (arb_bytes20(), arb_bytes20(), arb_event()),
        prop::array::uniform4(any::<Option<u64>>()),
        prop::collection::vec((arb_sdp(), arb_bytes20()), 0..=MAX_OFFERS),
        prop::option::of((arb_sdp(), arb_bytes20(), arb_bytes20())),
        prop::option::of(".{0,20}"),
    )
        .prop_map(
            |((ih, pid, event), [nw, up, down, left], offers, answer, tid)| Announce {
                info_hash: InfoHash::from(ih),
                peer_id: PeerId::from(pid),
                event,
                numwant: nw,
                uploaded: up,
                downloaded: down,
                left,
                offers: offers
                    .into_iter()
                    .map(|(offer, id)| Offer {
                        offer,
                        offer_id: OfferId::from(id),
                    })
                    .collect(),
                answer: answer.map(|(answer, to, id)| Answer {
                    answer,
                    to_peer_id: PeerId::from(to),
                    offer_id: OfferId::from(id),
                }),
                tracker_id: tid,
            },
        )
}

fn arb_stats() -> impl Strategy<Value = ScrapeStats> {
    any::<(u32, u32, u32)>().prop_map(|(complete, downloaded, incomplete)| ScrapeStats {
        complete,
        downloaded,
        incomplete,
    })
}

fn arb_outgoing() -> impl Strategy<Value = Outgoing> {
    prop_oneof![
        (
            arb_bytes20(),
            any::<(u32, u32, u32)>(),
            prop::option::of(".{0,20}"),
            prop::option::of(".{0,20}")
        )
            .prop_map(|(ih, (interval, complete, incomplete), tid, warn)| {
                Outgoing::AnnounceResponse(AnnounceResponse {
                    info_hash: InfoHash::from(ih),
                    interval,
                    complete,
                    incomplete,
                    tracker_id: tid,
                    warning_message: warn,
                })
            }),
        (arb_bytes20(), arb_bytes20(), arb_sdp(), arb_bytes20()).prop_map(|(ih, p, o, id)| {
            Outgoing::Offer(RelayedOffer {
                info_hash: InfoHash::from(ih),
                peer_id: PeerId::from(p),
                offer: o,
                offer_id: OfferId::from(id),
            })
        }),
        (arb_bytes20(), arb_bytes20(), arb_sdp(), arb_bytes20()).prop_map(|(ih, p, a, id)| {
            Outgoing::Answer(RelayedAnswer {
                info_hash: InfoHash::from(ih),
                peer_id: PeerId::from(p),
                answer: a,
                offer_id: OfferId::from(id),
            })
        }),
        prop::collection::btree_map(arb_bytes20(), arb_stats(), 0..20).prop_map(|m| {
            Outgoing::Scrape(ScrapeResponse {
                files: m.into_iter().map(|(k, v)| (InfoHash::from(k), v)).collect(),
            })
        }),
        (
            ".{0,40}",
            prop::option::of("[a-z]{1,10}"),
            prop::option::of(arb_bytes20())
        )
            .prop_map(|(reason, action, ih)| Outgoing::Failure(Failure {
                reason,
                action,
                info_hash: ih.map(InfoHash::from),
            })),
    ]
}

proptest! {
    #[test]
    fn incoming_announce_round_trips(a in arb_announce()) {
        let msg = Incoming::Announce(a);
        prop_assert_eq!(Incoming::parse(&msg.to_json()).unwrap(), msg);
    }

    #[test]
    fn incoming_scrape_round_trips(hashes in prop::collection::btree_set(arb_bytes20(), 0..30)) {
        let msg = Incoming::Scrape(Scrape {
            info_hashes: hashes.into_iter().map(InfoHash::from).collect(),
        });
        prop_assert_eq!(Incoming::parse(&msg.to_json()).unwrap(), msg);
    }

    #[test]
    fn outgoing_round_trips(msg in arb_outgoing()) {
        prop_assert_eq!(Outgoing::parse(&msg.to_json()).unwrap(), msg);
    }

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,300}") {
        let _ = Incoming::parse(&text);
        let _ = Outgoing::parse(&text);
    }

    #[test]
    fn json_shaped_garbage_never_panics(
        action in prop::sample::select(vec!["announce", "scrape", "publish", ""]),
        key in prop::sample::select(vec![
            "info_hash", "peer_id", "offers", "answer", "to_peer_id", "offer_id", "numwant",
            "left", "event", "files", "interval", "offer", "failure reason",
        ]),
        value in prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            ".{0,25}".prop_map(Value::from),
            prop::collection::vec(".{0,25}".prop_map(Value::from), 0..4).prop_map(Value::from),
            Just(json!([{"offer": {}, "offer_id": 1}])),
            Just(json!({"a": {"complete": -1}})),
        ],
    ) {
        let mut m = serde_json::Map::new();
        m.insert("action".into(), action.into());
        m.insert("info_hash".into(), bs(1).into());
        m.insert("peer_id".into(), bs(2).into());
        m.insert(key.into(), value);
        let text = Value::Object(m).to_string();
        let _ = Incoming::parse(&text);
        let _ = Outgoing::parse(&text);
    }
}
