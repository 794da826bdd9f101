//! Configuration: one struct tree, layered embedded defaults → file → `SWITCHBOARD__SECTION__KEY`
//! environment variables, then validated with messages an operator can act on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::Figment;
use serde::Deserialize;

use crate::redact::redact_url;

mod apns;
mod apps;
mod layers;
mod webpush;

pub use apns::{ApnsConfig, APNS_PRODUCTION, APNS_TOKEN_MAX_SECS, APNS_TOKEN_MIN_REFRESH_SECS};
pub use apps::{AppConfig, AppFcmConfig, AppProviders, AppWebPushConfig};
pub use layers::{read_capped, EnvLayer, ENV_PREFIX, MAX_FILE_BYTES};
pub use webpush::{VapidKeyError, WebPushConfig, MAX_VAPID_EXPIRY_SECS, MIN_VAPID_EXPIRY_SECS};

/// The repository's `config.toml`, compiled in: the router starts on it with no external service.
pub const EMBEDDED_DEFAULTS: &str = include_str!("../config.toml");
/// The embedded `auth.jwt_secret`: public, so refused on any address but loopback.
pub const DEV_JWT_SECRET: &str = "dev-only-change-me";
/// The embedded producer key: public, so refused on any address but loopback.
pub const DEV_PRODUCER_KEY: &str = "dev-producer-key";
/// Shortest `auth.jwt_secret` accepted on an address other than loopback (HS256's key size).
pub const MIN_JWT_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub auth: AuthConfig,
    pub broker: BrokerConfig,
    pub store: StoreConfig,
    pub sse: SseConfig,
    pub delivery: DeliveryConfig,
    pub devices: DevicesConfig,
    pub fcm: FcmConfig,
    pub webpush: WebPushConfig,
    #[serde(default)]
    pub apns: ApnsConfig,
    /// More apps beside the default one (`[[apps]]`).
    #[serde(default, rename = "apps")]
    pub extra_apps: Vec<AppConfig>,
    pub push: PushConfig,
    pub inbox: InboxConfig,
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
    /// A request body must arrive whole within this, counted from its head.
    pub body_timeout_secs: u64,
    /// 0 = no HTTP/2 keep-alive PINGs.
    pub h2_keepalive_interval_secs: u64,
    pub h2_keepalive_timeout_secs: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: String,
    pub producer_keys: Vec<String>,
    /// When set, client tokens must carry this `iss`; empty: `iss` is not checked.
    pub issuer: String,
    /// When set, client tokens must carry this `aud`; empty: `aud` is not checked.
    pub audience: String,
    /// Keys that open `/console` and `/v1/console/...`; empty: the console is closed.
    pub operator_keys: Vec<String>,
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
    /// Each stream's `retry:` is `retry_ms` plus or minus up to this, at random.
    pub retry_jitter_ms: u64,
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
    pub max_idempotency_keys: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevicesConfig {
    pub max_per_user: usize,
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

/// The durable push queue.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// Most sends queued (all nodes together in multi-node mode); past it a notify that needs
    /// the queue answers 503.
    pub queue_max: u64,
    /// The longest a send is retried, when the notification's `ttl_secs` is not shorter.
    pub max_retry_secs: u64,
    /// How long a node holds a send it claimed before another may take it over.
    pub lease_secs: u64,
    /// Private push for the default app: pushes carry only the notification id.
    #[serde(default)]
    pub private: bool,
}

/// The per-user inbox (`GET /v1/inbox`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxConfig {
    /// How long a notification stays in its user's inbox, counted from its acceptance.
    pub retention_secs: u64,
    /// Most notifications kept per user; the oldest go first.
    pub max_per_user: usize,
}

/// Rate limits; a rate of 0 turns that limit off.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    pub producer_rate_per_sec: u32,
    pub producer_burst: u32,
    /// How long a request refused by the producer rate limit waits for its 429 (at most its
    /// `Retry-After`).
    pub producer_refusal_delay_ms: u64,
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
        let default = Path::new("config.toml");
        let file = match path {
            Some(p) => Some(p),
            None if default.exists() => Some(default),
            None => None,
        };
        let text = match file {
            Some(p) => read_capped(p)
                .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_string()))
                .map_err(|reason| ConfigError::File {
                    path: p.to_path_buf(),
                    reason,
                })?,
            None => String::new(),
        };
        let env = std::env::vars_os().map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        });
        Self::from_layers(&text, env)
    }

    /// The embedded defaults, then `toml` (a config file's text), then `env` (variables as
    /// `SWITCHBOARD__SECTION__KEY=value`; others are ignored), validated. What [`Config::load`]
    /// does with the process environment, without touching it.
    pub fn from_layers(
        toml: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::from_figment(
            Figment::from(Toml::string(EMBEDDED_DEFAULTS))
                .merge(Toml::string(toml))
                .merge(EnvLayer::new(env)),
        )
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

    pub fn webpush_enabled(&self) -> bool {
        self.webpush.enabled()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        if self.server.listen.parse::<SocketAddr>().is_err() {
            errors.push(format!(
                "server.listen = {:?} is not an IP:port address (e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\")",
                self.server.listen
            ));
        }
        let node_id = &self.server.node_id;
        if node_id.len() > 64 || !node_id.bytes().all(|b| b.is_ascii_graphic()) {
            errors.push(
                "server.node_id must be at most 64 printable ASCII characters (no spaces)".into(),
            );
        }
        if self.auth.jwt_secret.is_empty() {
            errors.push("auth.jwt_secret must not be empty".into());
        }
        if self.auth.producer_keys.iter().all(|k| k.is_empty()) {
            errors.push("auth.producer_keys needs at least one non-empty key".into());
        }
        // A producer key must never open the console (it would read every producer's records).
        if self
            .auth
            .operator_keys
            .iter()
            .any(|k| !k.is_empty() && self.auth.producer_keys.contains(k))
        {
            errors.push(
                "auth.operator_keys must not contain a key of auth.producer_keys: give operators keys of their own".into(),
            );
        }
        self.validate_exposure(&mut errors);
        if self.broker.kind == BrokerKind::Redis {
            let url = &self.broker.redis_url;
            if !["redis://", "rediss://", "redis-cluster://"]
                .iter()
                .any(|s| url.starts_with(s))
            {
                errors.push(format!(
                    "broker.redis_url = {:?} must start with redis://, rediss:// or redis-cluster://",
                    redact_url(url)
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
                "store.url = {:?} must be sqlite://PATH or postgres://USER@HOST/DB",
                redact_url(store)
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
            || self.delivery.replay_capacity.saturating_add(2) > self.sse.queue_capacity
        {
            errors.push(format!(
                "delivery.replay_capacity must be 1 to sse.queue_capacity - 2 ({}): a replay must fit in a new stream's queue",
                self.sse.queue_capacity.saturating_sub(2)
            ));
        }
        if self.delivery.max_records_in_memory == 0 {
            errors.push("delivery.max_records_in_memory must be at least 1".into());
        }
        if self.delivery.max_idempotency_keys == 0 {
            errors.push("delivery.max_idempotency_keys must be at least 1".into());
        }
        if self.inbox.retention_secs == 0 {
            errors.push("inbox.retention_secs must be at least 1".into());
        }
        if self.inbox.max_per_user == 0 {
            errors.push("inbox.max_per_user must be at least 1".into());
        }
        if self.devices.max_per_user == 0 {
            errors.push("devices.max_per_user must be at least 1".into());
        }
        if self.delivery.record_retention_secs < self.delivery.replay_window_secs
            || self.delivery.record_retention_secs.saturating_mul(1000)
                <= self.delivery.ack_timeout_ms
        {
            errors.push(
                "delivery.record_retention_secs must cover delivery.replay_window_secs and delivery.ack_timeout_ms"
                    .into(),
            );
        }
        self.validate_fcm(&mut errors);
        self.validate_apps(&mut errors);
        self.webpush.validate("webpush", &mut errors);
        let webpush_used =
            self.webpush_enabled() || self.extra_apps.iter().any(|a| a.webpush.is_some());
        if webpush_used && self.push.lease_secs <= self.webpush.request_timeout_secs {
            errors.push(format!(
                "push.lease_secs ({}) must be longer than webpush.request_timeout_secs ({})",
                self.push.lease_secs, self.webpush.request_timeout_secs
            ));
        }
        self.validate_edge(&mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// The embedded credentials still in use (config keys), which only loopback may keep.
    pub fn dev_credentials(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        if self.auth.jwt_secret == DEV_JWT_SECRET {
            keys.push("auth.jwt_secret");
        }
        if self
            .auth
            .producer_keys
            .iter()
            .any(|k| k == DEV_PRODUCER_KEY)
        {
            keys.push("auth.producer_keys");
        }
        keys
    }

    /// Off loopback, the published development credentials and short secrets are refused:
    /// anyone could mint client tokens or call the producer API.
    fn validate_exposure(&self, errors: &mut Vec<String>) {
        let Ok(addr) = self.server.listen.parse::<SocketAddr>() else {
            return;
        };
        if addr.ip().to_canonical().is_loopback() {
            return;
        }
        let listen = &self.server.listen;
        for key in self.dev_credentials() {
            let what = if key == "auth.jwt_secret" {
                format!("auth.jwt_secret is the embedded development secret {DEV_JWT_SECRET:?}")
            } else {
                format!(
                    "auth.producer_keys contains the embedded development key {DEV_PRODUCER_KEY:?}"
                )
            };
            errors.push(format!(
                "{what}, which anyone can read; server.listen = {listen:?} is not a loopback address: set {key} to a secret of your own"
            ));
        }
        let len = self.auth.jwt_secret.len();
        if len < MIN_JWT_SECRET_BYTES && self.auth.jwt_secret != DEV_JWT_SECRET {
            errors.push(format!(
                "auth.jwt_secret is {len} bytes; server.listen = {listen:?} is not a loopback address, which needs at least {MIN_JWT_SECRET_BYTES} (e.g. openssl rand -base64 48)"
            ));
        }
    }

    fn validate_edge(&self, errors: &mut Vec<String>) {
        let server = &self.server;
        if server.header_timeout_secs == 0
            || server.idle_timeout_secs == 0
            || server.body_timeout_secs == 0
        {
            errors.push(
                "server.header_timeout_secs, server.idle_timeout_secs and server.body_timeout_secs must be at least 1".into(),
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
                redact_url(&fcm.endpoint)
            ));
        }
        if redact_url(&fcm.endpoint) != fcm.endpoint {
            // Its errors print it: the service account is the only credential FCM needs.
            errors.push(
                "fcm.endpoint must not carry credentials (user:password@ or a secret parameter)"
                    .into(),
            );
        }
        if fcm.max_in_flight == 0 || fcm.queue_capacity == 0 {
            errors.push("fcm.max_in_flight and fcm.queue_capacity must be at least 1".into());
        }
        let push = &self.push;
        if push.queue_max == 0 || push.max_retry_secs == 0 {
            errors.push("push.queue_max and push.max_retry_secs must be at least 1".into());
        }
        if push.lease_secs <= fcm.request_timeout_secs {
            // A lease that ends while its send may still be answered lets another node send it
            // too.
            errors.push(format!(
                "push.lease_secs ({}) must be longer than fcm.request_timeout_secs ({})",
                push.lease_secs, fcm.request_timeout_secs
            ));
        }
        if self.fcm_enabled() {
            let path = fcm.service_account.trim();
            match read_capped(Path::new(path)) {
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
/// Secrets (`auth.*`) are not echoed: a mistyped secret is still a secret.
fn explain(e: figment::Error) -> String {
    let mut parts = Vec::new();
    for err in e {
        let key = err.path.join(".");
        let msg = if key == "auth" || key.starts_with("auth.") {
            "not of the expected type (the value is not shown)".to_string()
        } else {
            without_source(&err.kind.to_string())
        };
        if key.is_empty() {
            parts.push(msg);
        } else {
            parts.push(format!("{key}: {msg}"));
        }
    }
    parts.join("; ")
}

/// A TOML syntax error without the lines of source it quotes: the line may be a secret's
/// (`jwt_secret = "...` without its closing quote). The line and column are kept.
fn without_source(msg: &str) -> String {
    let quoted = |line: &str| {
        let line = line.trim_start();
        let digits = line.trim_start_matches(|c: char| c.is_ascii_digit());
        digits.trim_start().starts_with('|')
    };
    let kept: Vec<&str> = msg.lines().filter(|l| !quoted(l)).collect();
    kept.join(" ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_toml_syntax_error_names_its_line_but_does_not_quote_it() {
        let err = with(
            "[auth]
jwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\n",
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

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

    const GOOD_SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn development_credentials_are_refused_off_loopback_only() {
        let exposed = "[server]\nlisten = \"0.0.0.0:8080\"\n";
        let err = with(exposed).unwrap_err().to_string();
        assert!(
            err.contains("auth.jwt_secret is the embedded development secret")
                && err.contains("auth.producer_keys contains the embedded development key"),
            "{err}"
        );
        let keys = format!(
            "{exposed}[auth]\njwt_secret = \"{GOOD_SECRET}\"\nproducer_keys = [\"k\", \"{DEV_PRODUCER_KEY}\"]"
        );
        let err = with(&keys).unwrap_err().to_string();
        assert!(
            err.contains("auth.producer_keys") && !err.contains("auth.jwt_secret"),
            "{err}"
        );
        let short = format!(
            "{exposed}[auth]\njwt_secret = \"{}\"\nproducer_keys = [\"k\"]",
            &GOOD_SECRET[1..]
        );
        let err = with(&short).unwrap_err().to_string();
        assert!(err.contains("auth.jwt_secret is 31 bytes"), "{err}");
        assert!(
            !err.contains(&GOOD_SECRET[1..]),
            "the secret is not echoed: {err}"
        );
        let good =
            format!("{exposed}[auth]\njwt_secret = \"{GOOD_SECRET}\"\nproducer_keys = [\"k\"]");
        assert!(with(&good).is_ok());
        for loopback in [
            "127.0.0.1:8080",
            "127.1.2.3:0",
            "[::1]:8080",
            "[::ffff:127.0.0.1]:8080",
        ] {
            let cfg = with(&format!("[server]\nlisten = \"{loopback}\"")).expect(loopback);
            assert_eq!(
                cfg.dev_credentials(),
                ["auth.jwt_secret", "auth.producer_keys"]
            );
        }
    }

    #[test]
    fn secrets_and_url_passwords_stay_out_of_messages() {
        let err = with("[auth]\njwt_secret = 123456789")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auth.jwt_secret") && !err.contains("123456789"),
            "{err}"
        );
        let err = with("[broker]\nkind = \"redis\"\nredis_url = \"http://:s3cret@h\"\n[store]\nurl = \"mysql://u:s3cret@h/db\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("broker.redis_url")
                && err.contains("store.url")
                && !err.contains("s3cret"),
            "{err}"
        );
        let err = with("[fcm]\nendpoint = \"https://u:s3cret@fcm.example\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fcm.endpoint") && !err.contains("s3cret"),
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
    fn a_webpush_key_that_is_missing_or_a_subject_that_is_not_a_contact_is_explained() {
        let err = with("[webpush]\nvapid_private_key = \"/nonexistent/vapid.pem\"\nsubject = \"ops@example.com\"")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("webpush.vapid_private_key") && err.contains("cannot read"),
            "{err}"
        );
        assert!(err.contains("webpush.subject"), "{err}");
        let err = with("[webpush]\nvapid_expiry_secs = 90000")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webpush.vapid_expiry_secs"), "{err}");
        assert!(!with("").unwrap().webpush_enabled());
    }

    #[test]
    fn unknown_key_is_rejected() {
        let err = with("[server]\nlisten_port = 1").unwrap_err().to_string();
        assert!(err.contains("listen_port"), "{err}");
    }
}
