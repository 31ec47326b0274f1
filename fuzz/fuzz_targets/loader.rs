//! Arbitrary bytes into the loader, then (when they load) into the engine.
//! Run with `cargo +nightly fuzz run loader` from `fuzz/`. The loader must never
//! panic: it returns a model or located errors.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(loaded) = weir_manifest::load_str("fuzz.yaml", &text, Default::default()) {
        let engine = weir_engine::Engine::new(&loaded.cluster);
        let _ = engine.flows();
    }
});
