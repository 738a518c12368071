//! The MP-SPDZ exporter on any share stream.
#![no_main]
use larder::interop::mp_spdz::{write, Layout};
use larder::material::ShareReader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for montgomery in [true, false] {
        let Ok(mut r) = ShareReader::new(data) else {
            return;
        };
        if let Ok(layout) = Layout::of_stream(&r.header, montgomery) {
            let _ = write(&mut r, &layout, &mut std::io::sink());
        }
    }
});
