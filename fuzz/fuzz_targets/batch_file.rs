//! Batch files as a node reads them from its disk or from the dealer's staging request.
#![no_main]
use larder::material::BatchHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::decode(data);
    let _ = BatchHeader::verify_file(data);
});
