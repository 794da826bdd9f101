//! Configuration layering: the embedded defaults, a TOML file's text, then `SWITCHBOARD__*`
//! variables, through `Config::from_layers` (what `Config::load` runs, without the process
//! environment). Input: the TOML text, then a NUL byte, then variables as `NAME=value` lines.
//!
//! Checked: no panic (an overflow in validation is one: fuzz builds check arithmetic); a valid
//! configuration gives its listen address and builds the client-token verifier; a secret given
//! in a variable never shows in an error message (a TOML syntax error quotes no source line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::auth::Auth;
use switchboard::config::Config;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (toml, vars) = text.split_once('\0').unwrap_or((&text, ""));
    let env: Vec<(String, String)> = vars
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let secrets: Vec<&str> = env
        .iter()
        .filter(|(k, _)| {
            let k = k.trim().to_ascii_lowercase();
            k.ends_with("__jwt_secret") || k.ends_with("__producer_keys")
        })
        .map(|(_, v)| v.trim())
        // Short values can show up in any message by chance.
        .filter(|v| v.len() >= 12)
        .collect();
    // A secret's text that is also elsewhere in the input (a key's name, say) may be shown
    // for that reason.
    let elsewhere = |secret: &str| {
        toml.contains(secret)
            || env.iter().any(|(k, _)| k.contains(secret))
            || env.iter().filter(|(_, v)| v.contains(secret)).count() > 1
    };
    let secrets: Vec<&str> = secrets.into_iter().filter(|s| !elsewhere(s)).collect();
    match Config::from_layers(toml, env.clone()) {
        Ok(config) => {
            let _ = config.listen_addr();
            let _ = config.dev_credentials();
            let _ = config.fcm_enabled();
            let _ = Auth::new(&config.auth);
        }
        Err(e) => {
            let shown = e.to_string();
            for secret in secrets {
                assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
            }
        }
    }
});
