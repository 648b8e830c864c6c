#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| outpost::fuzz_api::cache_control(data));
