//! PROXY v1 headers (the onion listener's first line) never panic the parser, and the
//! streaming reader agrees with the line parser.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatorrent::server::proxy_protocol::{parse_line, read_header};

fuzz_target!(|data: &[u8]| {
    let parsed = parse_line(data).ok();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut input = data;
    let streamed = rt.block_on(read_header(&mut input)).ok();
    if data.ends_with(b"\r\n") && data.iter().filter(|b| **b == b'\n').count() == 1 {
        assert_eq!(parsed, streamed);
    }
});
