//! WebSocket tracker/signaling text frames never panic the parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatorrent::proto::webtorrent::Incoming;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(msg) = Incoming::parse(text) {
            // Serialising what was accepted never panics either.
            let _ = msg.to_json();
        }
    }
});
