//! Configuration files: the consortium file, a node file, a local consortium's config.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = toml::from_str::<larder::consortium::ConsortiumConfig>(text) {
        let _ = c.validate();
    }
    // The loaders read files (and resolve paths against their directory).
    let path = std::env::temp_dir().join(format!("larder-fuzz-{}.toml", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = larder::node::config::ClusterConfig::load(&path);
        let _ = larder::node::config::NodeConfig::load(&path);
    }
});
