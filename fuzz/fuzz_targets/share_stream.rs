//! Share streams as an engine (or `larder verify` / `larder export`) reads them.
#![no_main]
use larder::material::ShareReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = ShareReader::new(data) {
        while let Ok(Some(_)) = r.next_records(97) {}
    }
});
