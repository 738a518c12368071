//! JSON bodies and path ids the node API parses.
#![no_main]
use larder::material::{BatchId, PoolSpec};
use larder::math::Domain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<larder::wire::CheckoutRequest>(data);
    let _ = serde_json::from_slice::<larder::store::Reservation>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = s.parse::<PoolSpec>();
        let _ = s.parse::<Domain>();
        let _ = s.parse::<BatchId>();
    }
});
