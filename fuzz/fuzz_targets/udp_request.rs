//! UDP tracker datagrams (BEP 15/41) never panic the parser, and accepted requests
//! round-trip through `write`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatorrent::proto::udp::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::parse(data) {
        let mut out = Vec::new();
        req.write(&mut out);
        let again = Request::parse(&out).expect("written request parses");
        assert_eq!(again, req);
    }
});
