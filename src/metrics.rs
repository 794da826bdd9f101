//! Every metric name in one place (docs/API.md), with the label values resolved once so the hot
//! paths only touch atomics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = [(&'static str, &'static str); 1];

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
}

impl DisconnectReason {
    pub const ALL: [DisconnectReason; 5] = [
        DisconnectReason::ClientClosed,
        DisconnectReason::Shutdown,
        DisconnectReason::WriteError,
        DisconnectReason::SlowConsumer,
        DisconnectReason::Replaced,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::ClientClosed => "client_closed",
            DisconnectReason::Shutdown => "shutdown",
            DisconnectReason::WriteError => "write_error",
            DisconnectReason::SlowConsumer => "slow_consumer",
            DisconnectReason::Replaced => "replaced",
        }
    }
}

/// The routing decision reported to producers: `sse` (a live stream on some node), `fcm` (no
/// stream: sent to the user's registered devices) or `none` (no stream, no device).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    Sse,
    Fcm,
    None,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Sse => "sse",
            Route::Fcm => "fcm",
            Route::None => "none",
        }
    }
}

/// FCM answers, as `switchboard_fcm_requests_total{result}` labels.
pub const FCM_RESULTS: [&str; 11] = [
    "ok",
    "unregistered",
    "invalid_argument",
    "sender_id_mismatch",
    "quota_exceeded",
    "unavailable",
    "internal",
    "third_party_auth_error",
    "unauthenticated",
    "transport_error",
    "other",
];

/// `switchboard_acks_total{result}` labels.
pub const ACK_RESULTS: [&str; 4] = ["acked", "late", "unknown", "foreign"];

/// Why a notification bound for a stream went to FCM instead.
pub const FALLBACK_REASONS: [&str; 3] = ["stream_gone", "stream_closed", "broker_unavailable"];

pub struct Metrics {
    registry: Registry,
    pub sse_connections: Gauge,
    disconnects: [Counter; 5],
    routes: [Counter; 3],
    pub delivery_latency: Histogram,
    fcm_results: Vec<Counter>,
    pub fcm_latency: Histogram,
    pub fcm_accepted: Counter,
    pub fcm_failed: Counter,
    pub fcm_tokens_pruned: Counter,
    pub fcm_queue_depth: Gauge,
    fallbacks: Vec<Counter>,
    pub broadcasts: Counter,
    pub broadcast_deliveries: Counter,
    pub broker_errors: Counter,
    pub broker_messages_lost: Counter,
    pub overloaded: Counter,
    acks: [Counter; 4],
    pub ack_timeouts: Counter,
    replays: [Counter; 2],
    pub replayed: Counter,
    pub idempotent_hits: Counter,
    pub ledger_errors: Counter,
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
        let f = family(
            &mut r,
            "switchboard_notifications",
            "Accepted notifications, by route",
        );
        let routes = [Route::Sse, Route::Fcm, Route::None]
            .map(|x| f.get_or_create_owned(&[("route", x.as_str())]));
        let delivery_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        r.register(
            "switchboard_delivery_latency_seconds",
            "Notification accept to written to a stream",
            delivery_latency.clone(),
        );
        let f = family(
            &mut r,
            "switchboard_fcm_requests",
            "FCM send requests, by answer",
        );
        let fcm_results = FCM_RESULTS
            .iter()
            .map(|x| f.get_or_create_owned(&[("result", x)]))
            .collect();
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
        let f = family(
            &mut r,
            "switchboard_fallbacks",
            "Notifications routed to a stream that went to FCM instead, by reason",
        );
        let fallbacks = FALLBACK_REASONS
            .iter()
            .map(|x| f.get_or_create_owned(&[("reason", x)]))
            .collect();
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
        let f = family(
            &mut r,
            "switchboard_acks",
            "Acknowledged notification ids, by result (late: the ack timeout had already sent it to FCM)",
        );
        let acks = ACK_RESULTS.map(|x| f.get_or_create_owned(&[("result", x)]));
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
        Metrics {
            registry: r,
            sse_connections,
            disconnects,
            routes,
            delivery_latency,
            fcm_results,
            fcm_latency,
            fcm_accepted,
            fcm_failed,
            fcm_tokens_pruned,
            fcm_queue_depth,
            fallbacks,
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
        }
    }

    pub fn ack(&self, result: &str) {
        if let Some(i) = ACK_RESULTS.iter().position(|r| *r == result) {
            self.acks[i].inc();
        }
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

    pub fn route(&self, route: Route) {
        self.routes[route as usize].inc();
    }

    /// Counts one FCM answer; unknown codes count as `other`.
    pub fn fcm_result(&self, result: &str) {
        let i = FCM_RESULTS
            .iter()
            .position(|r| *r == result)
            .unwrap_or(FCM_RESULTS.len() - 1);
        self.fcm_results[i].inc();
    }

    pub fn fallback(&self, reason: &str) {
        if let Some(i) = FALLBACK_REASONS.iter().position(|r| *r == reason) {
            self.fallbacks[i].inc();
        }
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

    #[test]
    fn renders_the_contract_names() {
        let m = Metrics::new();
        m.disconnect(DisconnectReason::Replaced);
        m.route(Route::Fcm);
        m.fcm_result("unregistered");
        m.fcm_result("something_new");
        let text = m.render();
        for needle in [
            "switchboard_sse_connections ",
            "switchboard_sse_disconnects_total{reason=\"replaced\"} 1",
            "switchboard_notifications_total{route=\"fcm\"} 1",
            "switchboard_delivery_latency_seconds_bucket",
            "switchboard_fcm_requests_total{result=\"unregistered\"} 1",
            "switchboard_fcm_requests_total{result=\"other\"} 1",
            "switchboard_fcm_latency_seconds_count",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
