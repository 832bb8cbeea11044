//! The HTTP tracker's byte-level query parser never panics, and what it accepts writes back
//! to a query that parses to the same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatorrent::proto::tracker::AnnounceRequest;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = AnnounceRequest::parse_query(data) {
        let mut out = Vec::new();
        req.write_query(&mut out);
        let again = AnnounceRequest::parse_query(&out).expect("written query parses");
        assert_eq!(again, req);
    }
});
