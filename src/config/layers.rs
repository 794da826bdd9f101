//! The layers under the configuration: `SWITCHBOARD__SECTION__KEY` variables as a figment
//! provider over any list of pairs (the process environment at start, a given list in tests and
//! the fuzz target), and files read with a size cap.

use std::io::Read;
use std::path::Path;

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// The prefix of configuration variables; `__` separates a section from its key.
pub const ENV_PREFIX: &str = "SWITCHBOARD__";

/// Largest file the configuration reads (a config file, a service-account key): a path to a
/// device or a huge file is refused rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// `SWITCHBOARD__*` variables, read as figment's `Env::prefixed(ENV_PREFIX).split("__")` reads
/// the process environment: the prefix matched without regard to case, keys lowercased, values
/// parsed as figment values (`8080` a number, `[a, b]` a list, `true` a boolean).
pub struct EnvLayer {
    pairs: Vec<(String, String)>,
}

impl EnvLayer {
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> EnvLayer {
        let pairs = pairs
            .into_iter()
            .filter_map(|(key, value)| Some((config_key(&key)?, value)))
            .collect();
        EnvLayer { pairs }
    }
}

/// `SWITCHBOARD__SERVER__LISTEN` → `server.listen`; `None` for other variables.
fn config_key(var: &str) -> Option<String> {
    let var = var.trim();
    let prefix = var.get(..ENV_PREFIX.len())?;
    if !prefix.eq_ignore_ascii_case(ENV_PREFIX) {
        return None;
    }
    let key = var[ENV_PREFIX.len()..].replace("__", ".");
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return None;
    }
    Some(key.to_ascii_lowercase())
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("`{ENV_PREFIX}` environment variable(s)"))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for (key, value) in &self.pairs {
            let value: Value = value
                .parse()
                .expect("parsing a figment value is infallible");
            let path: Vec<&str> = key.split('.').collect();
            insert(&mut dict, &path, value);
        }
        Ok(Profile::Default.collect(dict))
    }
}

/// Sets `path` in `dict` as figment's merge of a later layer does: a later value replaces an
/// earlier one, and a key with sub-keys becomes a table.
fn insert(dict: &mut Dict, path: &[&str], value: Value) {
    match path {
        [] => {}
        [last] => {
            dict.insert((*last).to_string(), value);
        }
        [first, rest @ ..] => {
            let entry = dict
                .entry((*first).to_string())
                .or_insert_with(|| Dict::new().into());
            if entry.as_dict().is_none() {
                *entry = Dict::new().into();
            }
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The file at `path`, at most [`MAX_FILE_BYTES`].
pub fn read_capped(path: &Path) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn variables_override_the_file_as_figments_env_provider_does() {
        let toml = "[server]\nlisten = \"127.0.0.1:9000\"\n[sse]\nheartbeat_secs = 7\n";
        let cfg = Config::from_layers(
            toml,
            vars(&[
                ("SWITCHBOARD__SERVER__LISTEN", "127.0.0.1:9001"),
                ("switchboard__auth__producer_keys", "[a, b]"),
                ("SWITCHBOARD__SSE__RETRY_MS", "1234"),
                ("SWITCHBOARDX__SSE__RETRY_MS", "1"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(cfg.listen_addr().port(), 9001);
        assert_eq!(cfg.auth.producer_keys, ["a", "b"]);
        assert_eq!(cfg.sse.retry_ms, 1234);
        assert_eq!(
            cfg.sse.heartbeat_secs, 7,
            "the file's value where no variable says"
        );
        let err = Config::from_layers("", vars(&[("SWITCHBOARD__SSE__NOPE", "1")]));
        assert!(err.unwrap_err().to_string().contains("nope"));
        assert!(Config::from_layers("", vars(&[("SWITCHBOARD__", "1")])).is_ok());
    }

    /// Validation's sums and products saturate: the largest values get a message, not an
    /// overflow (a panic in a debug or fuzz build).
    #[test]
    fn the_largest_numbers_are_refused_with_a_message_not_an_overflow() {
        let max = u64::MAX.to_string();
        let err = Config::from_layers(
            "",
            vars(&[
                ("SWITCHBOARD__DELIVERY__REPLAY_CAPACITY", &max),
                ("SWITCHBOARD__DELIVERY__RECORD_RETENTION_SECS", &max),
                ("SWITCHBOARD__DELIVERY__ACK_TIMEOUT_MS", &max),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("delivery.replay_capacity"), "{err}");
        assert!(err.contains("delivery.record_retention_secs"), "{err}");
    }

    #[test]
    fn a_service_account_path_to_an_endless_file_is_refused_after_a_mebibyte() {
        let started = std::time::Instant::now();
        let err = Config::from_layers("[fcm]\nservice_account = \"/dev/zero\"\n", [])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fcm.service_account") && err.contains("larger than 1048576 bytes"),
            "{err}"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.toml");
        std::fs::write(&big, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let err = Config::load(Some(&big)).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
    }
}
