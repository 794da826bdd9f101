//! Every metric name in one place (docs/API.md), with the label values resolved once so the hot
//! paths only touch atomics.

use std::marker::PhantomData;
use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

/// A label whose values are the variants of an enum, owned by the module that decides them
/// (`backend::Route`, `streams::FallbackReason`, …): metrics does not need to know them, and
/// no label is written out as a string by one module for another to match.
pub trait Label: Copy + 'static {
    /// Every value, each at its [`Label::index`].
    const ALL: &'static [Self];
    fn index(self) -> usize;
    /// The value as the metrics contract spells it.
    fn as_str(self) -> &'static str;
}

/// A counter family with one label, registered under its contract name by [`Metrics::new`];
/// the module that owns the label's enum resolves its [`Counters`] once.
#[derive(Clone)]
pub struct LabelFamily {
    family: Family<Labels, Counter>,
    label: &'static str,
}

impl LabelFamily {
    fn register(r: &mut Registry, name: &str, help: &str, label: &'static str) -> LabelFamily {
        LabelFamily {
            family: family(r, name, help),
            label,
        }
    }

    /// One counter per value of `L`, created now: every series shows from the start, at 0.
    pub fn counters<L: Label>(&self) -> Counters<L> {
        let by_value = L::ALL
            .iter()
            .enumerate()
            .map(|(i, value)| {
                debug_assert_eq!(value.index(), i, "{} is not at its index", value.as_str());
                self.family
                    .get_or_create_owned(&[(self.label, value.as_str())])
            })
            .collect();
        Counters {
            by_value,
            values: PhantomData,
        }
    }
}

/// The counters of a [`LabelFamily`], one per value of `L`: counting is one atomic add.
pub struct Counters<L> {
    by_value: Box<[Counter]>,
    values: PhantomData<fn(L)>,
}

impl<L: Label> Counters<L> {
    pub fn inc(&self, value: L) {
        self.by_value[value.index()].inc();
    }
}

/// Why a stream ended (`switchboard_sse_disconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed its connection in an orderly way.
    ClientClosed,
    /// The server is shutting down and told the client so.
    Shutdown,
    /// The connection broke: a write or read failed (reset, timeout).
    WriteError,
    /// The stream's queue filled up.
    SlowConsumer,
    /// A newer stream of the same user and device took its place.
    Replaced,
    /// The stream's token expired; the client was told to `reauth`.
    TokenExpired,
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 6] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::Shutdown,
        DisconnectReason::WriteError,
        DisconnectReason::SlowConsumer,
        DisconnectReason::Replaced,
        DisconnectReason::TokenExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::WriteError => "write_error",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::Replaced => "replaced",
            DisconnectReason::TokenExpired => "token_expired",
        }
    }
}

/// What `/readyz` checks (`switchboard_readiness_failures_total{component}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Store,
    Broker,
}

impl Dependency {
    pub fn as_str(self) -> &'static str {
        match self {
            Dependency::Store => "store",
            Dependency::Broker => "broker",
        }
    }
}

/// Why the server closed a connection on a timer (`switchboard_connection_timeouts_total{kind}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnTimeout {
    /// The request head (HTTP/2: the preface or the first request) did not arrive in time.
    Header,
    /// Nothing was in flight on it for `server.idle_timeout_secs`.
    Idle,
    /// An HTTP/2 keep-alive PING went unanswered.
    Ping,
    /// A request body did not arrive whole within `server.body_timeout_secs` (answered 408).
    Body,
}

impl ConnTimeout {
    pub const ALL: [ConnTimeout; 4] = [
        ConnTimeout::Header,
        ConnTimeout::Idle,
        ConnTimeout::Ping,
        ConnTimeout::Body,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ConnTimeout::Header => "header",
            ConnTimeout::Idle => "idle",
            ConnTimeout::Ping => "ping",
            ConnTimeout::Body => "body",
        }
    }
}

/// Whose stream opens a per-key limit counts (`scope` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenScope {
    User,
    /// A source address (IPv6: its /64).
    Address,
}

impl OpenScope {
    pub const ALL: [OpenScope; 2] = [OpenScope::User, OpenScope::Address];

    pub fn as_str(self) -> &'static str {
        match self {
            OpenScope::User => "user",
            OpenScope::Address => "ip",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    pub sse_connections: Gauge,
    disconnects: [Counter; 6],
    /// `route`: `backend::Route`, counted by the router.
    pub routes: LabelFamily,
    pub delivery_latency: Histogram,
    /// `result`: `push::fcm::RequestResult`, counted by the FCM provider.
    pub fcm_results: LabelFamily,
    /// `result`: `push::webpush::RequestResult`, counted by the Web Push provider.
    pub webpush_results: LabelFamily,
    pub fcm_latency: Histogram,
    /// `result`: `push::apns::RequestResult`, counted by the APNs provider.
    pub apns_results: LabelFamily,
    pub apns_latency: Histogram,
    /// APNs provider tokens signed (at start, after each `apns.token_refresh_secs`, and once
    /// after `ExpiredProviderToken`).
    pub apns_tokens_signed: Counter,
    pub fcm_accepted: Counter,
    pub fcm_failed: Counter,
    pub fcm_tokens_pruned: Counter,
    pub fcm_queue_depth: Gauge,
    pub push_queue_depth: Gauge,
    pub push_queue_oldest_seconds: Gauge<f64, AtomicU64>,
    /// `reason`: `push::RetryReason`, counted by the push sender.
    pub push_retries: LabelFamily,
    pub push_abandoned: Counter,
    /// Device deliveries made over a stream that a push-everything design would have sent
    /// through FCM (docs/API.md defines it).
    pub fcm_sends_avoided: Counter,
    /// `reason`: `streams::FallbackReason`, counted by the hub.
    pub fallbacks: LabelFamily,
    pub broadcasts: Counter,
    pub broadcast_deliveries: Counter,
    pub broker_errors: Counter,
    pub broker_messages_lost: Counter,
    pub overloaded: Counter,
    /// `result`: `backend::AckResult`, counted by the router.
    pub acks: LabelFamily,
    pub ack_timeouts: Counter,
    replays: [Counter; 2],
    pub replayed: Counter,
    pub idempotent_hits: Counter,
    pub ledger_errors: Counter,
    /// `result`: `inbox::ReadResult`, counted by the inbox.
    pub inbox_reads: LabelFamily,
    /// `result`: `inbox::AppendResult`, counted by the inbox's writer.
    pub inbox_appends: LabelFamily,
    /// 1 when the store and broker answered at start and at the last `/readyz`, else 0.
    pub ready: Gauge,
    readiness_failures: [Counter; 2],
    pub devices_refused: Counter,
    pub idempotency_evictions: Counter,
    pub connections: Gauge,
    pub connections_refused: Counter,
    conn_timeouts: [Counter; 4],
    producer_rate_limited: Family<[(&'static str, String); 1], Counter>,
    stream_opens_limited: [Counter; 2],
    rate_limit_keys: [Gauge; 2],
}

fn family(registry: &mut Registry, name: &str, help: &str) -> Family<Labels, Counter> {
    let f = Family::<Labels, Counter>::default();
    registry.register(name, help, f.clone());
    f
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut r = Registry::default();
        let sse_connections = Gauge::default();
        r.register(
            "switchboard_sse_connections",
            "Open SSE streams on this node",
            sse_connections.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_sse_disconnects",
            "Streams ended, by reason",
        );
        let disconnects =
            DisconnectReason::ALL.map(|d| f.get_or_create_owned(&[("reason", d.as_str())]));
        let routes = LabelFamily::register(
            &mut r,
            "switchboard_notifications",
            "Accepted notifications, by route",
            "route",
        );
        let delivery_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        r.register(
            "switchboard_delivery_latency_seconds",
            "Notification accept to written to a stream",
            delivery_latency.clone(),
        );
        let fcm_results = LabelFamily::register(
            &mut r,
            "switchboard_fcm_requests",
            "FCM send requests, by answer",
            "result",
        );
        let webpush_results = LabelFamily::register(
            &mut r,
            "switchboard_webpush_results",
            "Web Push sends, by the push service's answer",
            "result",
        );
        let apns_results = LabelFamily::register(
            &mut r,
            "switchboard_apns_requests",
            "APNs send requests, by answer",
            "result",
        );
        let apns_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        r.register(
            "switchboard_apns_latency_seconds",
            "APNs send request latency",
            apns_latency.clone(),
        );
        let apns_tokens_signed = Counter::default();
        r.register(
            "switchboard_apns_provider_tokens",
            "APNs provider tokens (ES256 JWTs) signed",
            apns_tokens_signed.clone(),
        );
        let fcm_latency = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        r.register(
            "switchboard_fcm_latency_seconds",
            "FCM send request latency",
            fcm_latency.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_fcm_deliveries",
            "FCM deliveries (one per device) by final status, retries included",
        );
        let fcm_accepted = f.get_or_create_owned(&[("status", "fcm_accepted")]);
        let fcm_failed = f.get_or_create_owned(&[("status", "fcm_failed")]);
        let fcm_tokens_pruned = Counter::default();
        r.register(
            "switchboard_fcm_tokens_pruned",
            "Device tokens deleted after FCM answered UNREGISTERED",
            fcm_tokens_pruned.clone(),
        );
        let fcm_queue_depth = Gauge::default();
        r.register(
            "switchboard_fcm_queue_depth",
            "FCM sends waiting for a slot",
            fcm_queue_depth.clone(),
        );
        let push_queue_depth = Gauge::default();
        r.register(
            "switchboard_push_queue_depth",
            "Sends in the durable push queue (all nodes together in multi-node mode)",
            push_queue_depth.clone(),
        );
        let push_queue_oldest_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "switchboard_push_queue_oldest_seconds",
            "Age of the oldest send in the durable push queue (0 when it is empty)",
            push_queue_oldest_seconds.clone(),
        );
        let push_retries = LabelFamily::register(
            &mut r,
            "switchboard_push_retries",
            "Push sends given back to the queue for a later attempt, by the provider's answer",
            "reason",
        );
        let push_abandoned = Counter::default();
        r.register(
            "switchboard_push_abandoned",
            "Push sends given up at their deadline (ttl_secs or push.max_retry_secs) or attempt cap",
            push_abandoned.clone(),
        );
        let fcm_sends_avoided = Counter::default();
        r.register(
            "switchboard_fcm_sends_avoided",
            "Deliveries over a stream that a push-everything design would have sent through FCM: writes to streams without ack, and acks in time",
            fcm_sends_avoided.clone(),
        );
        let inbox_reads = LabelFamily::register(
            &mut r,
            "switchboard_inbox_reads",
            "GET /v1/inbox and /v1/inbox/{id} answers, by what they cost: page (read), empty (cursor at the head, no read), not_modified (304, no read), item, not_found",
            "result",
        );
        let inbox_appends = LabelFamily::register(
            &mut r,
            "switchboard_inbox_appends",
            "Notifications written to their user's inbox, by result: stored, failed (the engine refused the batch), dropped (the writer's queue was full)",
            "result",
        );
        let fallbacks = LabelFamily::register(
            &mut r,
            "switchboard_fallbacks",
            "Notifications routed to a stream that went to FCM instead, by reason",
            "reason",
        );
        let broadcasts = Counter::default();
        r.register(
            "switchboard_broadcasts",
            "Accepted broadcasts",
            broadcasts.clone(),
        );
        let broadcast_deliveries = Counter::default();
        r.register(
            "switchboard_broadcast_deliveries",
            "Broadcast frames queued to local streams",
            broadcast_deliveries.clone(),
        );
        let broker_errors = Counter::default();
        r.register(
            "switchboard_broker_errors",
            "Broker operations that failed",
            broker_errors.clone(),
        );
        let broker_messages_lost = Counter::default();
        r.register(
            "switchboard_broker_messages_lost",
            "Broker messages dropped because the dispatcher fell behind (should stay 0)",
            broker_messages_lost.clone(),
        );
        let overloaded = Counter::default();
        r.register(
            "switchboard_overloaded",
            "Requests refused with 503 for overload",
            overloaded.clone(),
        );
        let acks = LabelFamily::register(
            &mut r,
            "switchboard_acks",
            "Acknowledged notification ids, by result (late: the ack timeout had already sent it to FCM)",
            "result",
        );
        let ack_timeouts = Counter::default();
        r.register(
            "switchboard_ack_timeouts",
            "Notifications not acked (or not written) before delivery.ack_timeout_ms, sent to FCM",
            ack_timeouts.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_replays",
            "Streams opened with Last-Event-ID, by result (reset: the id was unknown or too old)",
        );
        let replays = ["replayed", "reset"].map(|x| f.get_or_create_owned(&[("result", x)]));
        let replayed = Counter::default();
        r.register(
            "switchboard_replayed_notifications",
            "Notifications written again to a reconnecting stream",
            replayed.clone(),
        );
        let idempotent_hits = Counter::default();
        r.register(
            "switchboard_idempotent_hits",
            "Notify requests answered from an earlier request with the same idempotency_key",
            idempotent_hits.clone(),
        );
        let ledger_errors = Counter::default();
        r.register(
            "switchboard_ledger_errors",
            "Delivery-record updates Redis refused after every retry",
            ledger_errors.clone(),
        );
        let ready = Gauge::default();
        r.register(
            "switchboard_ready",
            "1 when the store and the broker answered at start and at the last /readyz, else 0",
            ready.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_readiness_failures",
            "/readyz checks that failed, by component",
        );
        let readiness_failures = [Dependency::Store, Dependency::Broker]
            .map(|d| f.get_or_create_owned(&[("component", d.as_str())]));
        let devices_refused = Counter::default();
        r.register(
            "switchboard_devices_refused",
            "Device registrations refused at devices.max_per_user",
            devices_refused.clone(),
        );
        let idempotency_evictions = Counter::default();
        r.register(
            "switchboard_idempotency_keys_evicted",
            "Idempotency keys dropped before their 24 h at delivery.max_idempotency_keys (memory broker)",
            idempotency_evictions.clone(),
        );
        let connections = Gauge::default();
        r.register(
            "switchboard_connections",
            "Open TCP connections (streams, producers' and idle keep-alive ones)",
            connections.clone(),
        );
        let connections_refused = Counter::default();
        r.register(
            "switchboard_connections_refused",
            "Connections refused at server.max_connections (503 or closed at once)",
            connections_refused.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_connection_timeouts",
            "Connections the server closed on a timer, by kind (header, idle, ping, body)",
        );
        let conn_timeouts =
            ConnTimeout::ALL.map(|t| f.get_or_create_owned(&[("kind", t.as_str())]));
        let producer_rate_limited = Family::default();
        r.register(
            "switchboard_producer_rate_limited",
            "Producer requests refused with 429 rate_limited, by producer (the key's non-secret name)",
            producer_rate_limited.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_stream_opens_limited",
            "Stream opens refused with 429 too_many_reconnects, by scope (user, ip)",
        );
        let stream_opens_limited =
            OpenScope::ALL.map(|s| f.get_or_create_owned(&[("scope", s.as_str())]));
        let f = Family::<Labels, Gauge>::default();
        r.register(
            "switchboard_rate_limit_keys",
            "Keys whose stream-open buckets are kept, by scope (user, ip)",
            f.clone(),
        );
        let rate_limit_keys =
            OpenScope::ALL.map(|s| f.get_or_create_owned(&[("scope", s.as_str())]));
        Metrics {
            registry: r,
            sse_connections,
            disconnects,
            routes,
            delivery_latency,
            fcm_results,
            webpush_results,
            fcm_latency,
            apns_results,
            apns_latency,
            apns_tokens_signed,
            fcm_accepted,
            fcm_failed,
            fcm_tokens_pruned,
            fcm_queue_depth,
            push_queue_depth,
            push_queue_oldest_seconds,
            fcm_sends_avoided,
            push_retries,
            push_abandoned,
            fallbacks,
            inbox_reads,
            inbox_appends,
            broadcasts,
            broadcast_deliveries,
            broker_errors,
            broker_messages_lost,
            overloaded,
            acks,
            ack_timeouts,
            replays,
            replayed,
            idempotent_hits,
            ledger_errors,
            ready,
            readiness_failures,
            devices_refused,
            idempotency_evictions,
            connections,
            connections_refused,
            conn_timeouts,
            producer_rate_limited,
            stream_opens_limited,
            rate_limit_keys,
        }
    }

    pub fn conn_timeout(&self, kind: ConnTimeout) {
        self.conn_timeouts[kind as usize].inc();
    }

    /// The refusal counter of the producer named `name` (its key's non-secret name).
    pub fn producer_rate_limited(&self, name: &str) -> Counter {
        self.producer_rate_limited
            .get_or_create_owned(&[("producer", name.to_string())])
    }

    pub fn stream_opens_limited(&self, scope: OpenScope) -> Counter {
        self.stream_opens_limited[scope as usize].clone()
    }

    pub fn rate_limit_keys(&self, scope: OpenScope) -> Gauge {
        self.rate_limit_keys[scope as usize].clone()
    }

    pub fn readiness_failure(&self, component: Dependency) {
        self.readiness_failures[component as usize].inc();
    }

    pub fn replay(&self, reset: bool) {
        self.replays[usize::from(reset)].inc();
    }

    pub fn disconnect(&self, reason: DisconnectReason) {
        let i = DisconnectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.disconnects[i].inc();
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8192);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Answer {
        Yes,
        No,
    }

    impl Label for Answer {
        const ALL: &'static [Answer] = &[Answer::Yes, Answer::No];

        fn index(self) -> usize {
            self as usize
        }

        fn as_str(self) -> &'static str {
            match self {
                Answer::Yes => "yes",
                Answer::No => "no",
            }
        }
    }

    #[test]
    fn renders_the_contract_names() {
        let m = Metrics::new();
        m.disconnect(DisconnectReason::Replaced);
        let acks = m.acks.counters::<Answer>();
        acks.inc(Answer::No);
        let text = m.render();
        for needle in [
            "switchboard_sse_connections ",
            "switchboard_sse_disconnects_total{reason=\"replaced\"} 1",
            "switchboard_delivery_latency_seconds_bucket",
            "switchboard_fcm_latency_seconds_count",
            "switchboard_acks_total{result=\"no\"} 1",
            "switchboard_acks_total{result=\"yes\"} 0",
            "switchboard_connections 0",
            "switchboard_connections_refused_total 0",
            "switchboard_connection_timeouts_total{kind=\"idle\"} 0",
            "switchboard_stream_opens_limited_total{scope=\"ip\"} 0",
            "switchboard_rate_limit_keys{scope=\"user\"} 0",
            "switchboard_push_queue_depth 0",
            "switchboard_push_queue_oldest_seconds 0.0",
            "switchboard_fcm_sends_avoided_total 0",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
