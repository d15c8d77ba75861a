//! Any `master.toml`: the config check returns a config or problems with lines and keys, never a panic; and a
//! config that passes is checked the same the second time.
#![no_main]

use kiln_master::config::MasterConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match MasterConfig::from_str(text, "master.toml") {
        Ok(config) => {
            let again = MasterConfig::from_str(text, "master.toml").expect("a config that passed passes again");
            assert_eq!(config, again);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
