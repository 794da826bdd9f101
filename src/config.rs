//! Configuration: one struct tree, layered embedded defaults → file → `SWITCHBOARD__SECTION__KEY`
//! environment variables, then validated with messages an operator can act on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The repository's `config.toml`, compiled in: the router starts on it with no external service.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../config.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub broker: BrokerConfig,
    pub store: StoreConfig,
    pub sse: SseConfig,
    pub delivery: DeliveryConfig,
    pub fcm: FcmConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub cors_origins: Vec<String>,
    pub node_id: String,
    pub shutdown_grace_secs: u64,
    /// Open connections at most; 0 = derived from the process's file limit.
    pub max_connections: usize,
    pub header_timeout_secs: u64,
    pub idle_timeout_secs: u64,
    /// 0 = no HTTP/2 keep-alive PINGs.
    pub h2_keepalive_interval_secs: u64,
    pub h2_keepalive_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: String,
    pub producer_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    Memory,
    Redis,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    pub redis_url: String,
    pub presence_ttl_secs: u64,
    pub namespace: String,
    pub command_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SseConfig {
    pub heartbeat_secs: u64,
    pub retry_ms: u64,
    pub max_connections_per_user: usize,
    pub queue_capacity: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    pub ack_timeout_ms: u64,
    pub replay_window_secs: u64,
    pub replay_capacity: usize,
    pub record_retention_secs: u64,
    pub max_records_in_memory: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmConfig {
    pub project_id: String,
    pub service_account: String,
    pub endpoint: String,
    pub max_in_flight: usize,
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub request_timeout_secs: u64,
    pub queue_capacity: usize,
}

/// Rate limits; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub producer_rate_per_sec: u32,
    pub producer_burst: u32,
    pub stream_opens_per_user_per_min: u32,
    pub stream_opens_per_user_burst: u32,
    pub stream_opens_per_ip_per_sec: u32,
    pub stream_opens_per_ip_burst: u32,
    /// Users (and, apart, addresses) whose stream-open buckets are kept at most.
    pub max_tracked_keys: usize,
}

/// The largest `POST /v1/notify/batch`: a batch costs one token per item, so the producer
/// burst must hold one.
pub const MAX_BATCH: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration: {0}")]
    Parse(String),
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads the embedded defaults, then `path` (if given it must exist; `./config.toml` is
    /// used when present), then the environment, and validates the result.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Toml::string(EMBEDDED_DEFAULTS));
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    path: p.to_path_buf(),
                    reason: e.to_string(),
                })?;
                figment = figment.merge(Toml::string(&text));
            }
            None if Path::new("config.toml").exists() => {
                figment = figment.merge(Toml::file("config.toml"));
            }
            None => {}
        }
        Self::from_figment(figment.merge(Env::prefixed("SWITCHBOARD__").split("__")))
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let config: Config = figment
            .extract()
            .map_err(|e| ConfigError::Parse(explain(e)))?;
        config.validate()?;
        Ok(config)
    }

    /// The listen address, already checked by `validate`.
    pub fn listen_addr(&self) -> SocketAddr {
        self.server
            .listen
            .parse()
            .expect("validated at load: server.listen is a socket address")
    }

    pub fn fcm_enabled(&self) -> bool {
        !self.fcm.service_account.trim().is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!(
                "server.listen = {:?} is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\")",
                self.server.listen
            ));
        }
        if self.server.node_id.len() > 64 {
            errors.push("server.node_id must be at most 64 characters".into());
        }
        if self.auth.jwt_secret.is_empty() {
            errors.push("auth.jwt_secret must not be empty".into());
        }
        if self.auth.producer_keys.iter().all(|k| k.is_empty()) {
            errors.push("auth.producer_keys needs at least one non-empty key".into());
        }
        if self.broker.kind == BrokerKind::Redis {
            let url = &self.broker.redis_url;
            if !["redis://", "rediss://", "redis-cluster://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                errors.push(format!(
                    "broker.redis_url = {url:?} must start with redis://, rediss:// or redis-cluster://"
                ));
            }
        }
        let ns = &self.broker.namespace;
        if ns.is_empty()
            || ns.len() > 32
            || !ns
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            errors.push(format!(
                "broker.namespace = {ns:?} must be 1-32 characters of A-Z a-z 0-9 _ -"
            ));
        }
        if self.broker.command_timeout_ms == 0 {
            errors.push("broker.command_timeout_ms must be at least 1".into());
        }
        if self.broker.presence_ttl_secs < 3 {
            errors.push("broker.presence_ttl_secs must be at least 3".into());
        }
        let store = &self.store.url;
        if !store.starts_with("sqlite:")
            && !store.starts_with("postgres://")
            && !store.starts_with("postgresql://")
        {
            errors.push(format!(
                "store.url = {store:?} must be sqlite://PATH or postgres://USER@HOST/DB"
            ));
        }
        if self.sse.heartbeat_secs == 0 {
            errors.push("sse.heartbeat_secs must be at least 1".into());
        }
        if self.sse.max_connections_per_user == 0 {
            errors.push("sse.max_connections_per_user must be at least 1".into());
        }
        if self.sse.queue_capacity < 4 {
            errors.push("sse.queue_capacity must be at least 4".into());
        }
        if self.delivery.ack_timeout_ms == 0 {
            errors.push("delivery.ack_timeout_ms must be at least 1".into());
        }
        if self.delivery.replay_capacity == 0
            || self.delivery.replay_capacity + 2 > self.sse.queue_capacity
        {
            errors.push(format!(
                "delivery.replay_capacity must be 1 to sse.queue_capacity - 2 ({}): a replay must fit in a new stream's queue",
                self.sse.queue_capacity.saturating_sub(2)
            ));
        }
        if self.delivery.max_records_in_memory == 0 {
            errors.push("delivery.max_records_in_memory must be at least 1".into());
        }
        if self.delivery.record_retention_secs < self.delivery.replay_window_secs
            || self.delivery.record_retention_secs * 1000 <= self.delivery.ack_timeout_ms
        {
            errors.push(
                "delivery.record_retention_secs must cover delivery.replay_window_secs and delivery.ack_timeout_ms"
                    .into(),
            );
        }
        self.validate_fcm(&mut errors);
        self.validate_edge(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    fn validate_edge(&self, errors: &mut Vec<String>) {
        let server = &self.server;
        if server.header_timeout_secs == 0 || server.idle_timeout_secs == 0 {
            errors.push(
                "server.header_timeout_secs and server.idle_timeout_secs must be at least 1".into(),
            );
        }
        if server.h2_keepalive_interval_secs > 0 && server.h2_keepalive_timeout_secs == 0 {
            errors.push("server.h2_keepalive_timeout_secs must be at least 1".into());
        }
        let limits = &self.limits;
        if limits.producer_rate_per_sec > 0 && limits.producer_burst < MAX_BATCH {
            errors.push(format!(
                "limits.producer_burst must be at least {MAX_BATCH}: a batch of {MAX_BATCH} costs that many tokens"
            ));
        }
        if limits.stream_opens_per_user_burst == 0 || limits.stream_opens_per_ip_burst == 0 {
            errors.push(
                "limits.stream_opens_per_user_burst and limits.stream_opens_per_ip_burst must be at least 1"
                    .into(),
            );
        }
        if limits.max_tracked_keys < 1000 {
            errors.push("limits.max_tracked_keys must be at least 1000".into());
        }
    }

    fn validate_fcm(&self, errors: &mut Vec<String>) {
        let fcm = &self.fcm;
        if fcm.project_id.is_empty() {
            errors.push("fcm.project_id must not be empty".into());
        }
        if !(fcm.endpoint.starts_with("https://") || fcm.endpoint.starts_with("http://")) {
            errors.push(format!(
                "fcm.endpoint = {:?} must be an http:// or https:// base URL",
                fcm.endpoint
            ));
        }
        if fcm.max_in_flight == 0 || fcm.max_attempts == 0 || fcm.queue_capacity == 0 {
            errors.push(
                "fcm.max_in_flight, fcm.max_attempts and fcm.queue_capacity must be at least 1"
                    .into(),
            );
        }
        if self.fcm_enabled() {
            let path = fcm.service_account.trim();
            match std::fs::read(path) {
                Err(e) => errors.push(format!(
                    "fcm.service_account: cannot read {path:?}: {e} (set it to a Google service-account JSON key, or to \"\" to disable FCM)"
                )),
                Ok(bytes) => {
                    if let Err(e) = yup_oauth2::parse_service_account_key(&bytes) {
                        errors.push(format!(
                            "fcm.service_account: {path:?} is not a service-account JSON key: {e}"
                        ));
                    }
                }
            }
        }
    }
}

/// Figment's errors name the key; make the most common one (an unknown broker kind) plainer.
fn explain(e: figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e {
        let key = err.path.join(".");
        let msg = err.kind.to_string();
        if key.is_empty() {
            parts.push(msg);
        } else {
            parts.push(format!("{key}: {msg}"));
        }
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(toml: &str) -> Result<Config, ConfigError> {
        Config::from_figment(
            Figment::from(Toml::string(EMBEDDED_DEFAULTS)).merge(Toml::string(toml)),
        )
    }

    #[test]
    fn embedded_defaults_are_valid() {
        let cfg = with("").expect("defaults load");
        assert_eq!(cfg.broker.kind, BrokerKind::Memory);
        assert!(!cfg.fcm_enabled());
        assert_eq!(cfg.listen_addr().port(), 8080);
    }

    #[test]
    fn bad_listen_address_is_explained() {
        let err = with("[server]\nlisten = \"localhost\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server.listen"), "{err}");
    }

    #[test]
    fn unknown_broker_kind_names_the_key() {
        let err = with("[broker]\nkind = \"kafka\"").unwrap_err().to_string();
        assert!(
            err.contains("broker.kind") && err.contains("kafka"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_service_account_is_explained() {
        let err = with("[fcm]\nservice_account = \"/nonexistent/key.json\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fcm.service_account") && err.contains("cannot read"),
            "{err}"
        );
    }

    #[test]
    fn a_producer_burst_smaller_than_a_batch_is_explained() {
        let err = with("[limits]\nproducer_burst = 10")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.producer_burst"), "{err}");
        assert!(with("[limits]\nproducer_rate_per_sec = 0\nproducer_burst = 10").is_ok());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = with("[server]\nlisten_port = 1").unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }
}
