//! Manifest parsing and signature verification never panic, and whatever verifies
//! re-verifies from its canonical bytes to the same manifest.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatorrent::proto::{Manifest, ManifestLimits};

fuzz_target!(|data: &[u8]| {
    let limits = ManifestLimits::default();
    if let Ok(m) = Manifest::verify(data, &limits) {
        let again =
            Manifest::verify(m.canonical_bytes(), &limits).expect("canonical form verifies");
        assert_eq!(again, m);
    }
});
