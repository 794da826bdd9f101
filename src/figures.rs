//! A node's figures for the operator console: every `switchboard_*` series of its own metrics,
//! captured once a second, published to the other nodes through the broker (a [`Board`] keeps
//! the latest of each), and summed across the cluster with the figures the console derives
//! (FCM sends avoided and their share, delivery latency quantiles).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// A node that has not published for this long is left out (it stopped, or lost the broker).
pub const FRESH: Duration = Duration::from_secs(5);

/// The derived figure of FCM sends avoided (the same count as
/// `switchboard_fcm_sends_avoided_total`), and its share of all device deliveries.
pub const AVOIDED: &str = "fcm_sends_avoided";
pub const AVOIDED_SHARE: &str = "fcm_sends_avoided_share";
const AVOIDED_SERIES: &str = "switchboard_fcm_sends_avoided_total";
const LATENCY: &str = "switchboard_delivery_latency_seconds";
/// The quantiles of delivery latency the console shows.
const QUANTILES: [(f64, &str); 2] = [(0.5, "0.5"), (0.99, "0.99")];

/// One node's figures at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Figures {
    pub node_id: String,
    /// When they were captured (unix ms).
    pub at_ms: u64,
    /// Each series by its name in `/metrics`, labels included
    /// (`switchboard_notifications_total{route="sse"}`), plus the derived figures.
    pub series: BTreeMap<String, f64>,
}

impl Figures {
    /// This node's figures now, read from what `/metrics` would answer.
    pub fn capture(node_id: &str, metrics: &Metrics) -> Figures {
        let mut series = parse(&metrics.render());
        derive(&mut series);
        Figures {
            node_id: node_id.to_string(),
            at_ms: crate::time::unix_millis(),
            series,
        }
    }
}

/// Every node's latest figures and their sum: what each tick of the console's stream carries.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ClusterFigures {
    /// When this tick was sent (unix ms).
    pub at_ms: u64,
    /// One entry per node that published within the last 5 s, by node id.
    pub nodes: Vec<Figures>,
    /// Each series summed over `nodes` (gauges too: streams open in the cluster), the
    /// derived figures computed from the sums.
    pub total: BTreeMap<String, f64>,
}

impl ClusterFigures {
    pub fn sum(nodes: Vec<Arc<Figures>>) -> ClusterFigures {
        let mut total: BTreeMap<String, f64> = BTreeMap::new();
        for n in &nodes {
            for (name, value) in &n.series {
                if !is_derived(name) {
                    *total.entry(name.clone()).or_default() += value;
                }
            }
        }
        derive(&mut total);
        ClusterFigures {
            at_ms: crate::time::unix_millis(),
            nodes: nodes.iter().map(|n| Figures::clone(n)).collect(),
            total,
        }
    }
}

/// The latest figures of each node, as the broker received them.
#[derive(Default)]
pub struct Board {
    nodes: Mutex<HashMap<String, (Instant, Arc<Figures>)>>,
}

impl Board {
    pub fn put(&self, figures: Arc<Figures>) {
        self.nodes
            .lock()
            .insert(figures.node_id.clone(), (Instant::now(), figures));
    }

    /// Every node's latest figures, received within [`FRESH`], by node id; older ones go.
    pub fn fresh(&self) -> Vec<Arc<Figures>> {
        let mut nodes = self.nodes.lock();
        nodes.retain(|_, (at, _)| at.elapsed() <= FRESH);
        let mut all: Vec<Arc<Figures>> = nodes.values().map(|(_, f)| f.clone()).collect();
        all.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        all
    }
}

/// The `switchboard_*` samples of a Prometheus text exposition, by series name. The
/// `_created` samples are left out (timestamps, not figures).
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| l.starts_with("switchboard_"))
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let metric = name.split('{').next().unwrap_or(name);
            (!metric.ends_with("_created") && value.is_finite()).then(|| (name.to_string(), value))
        })
        .collect()
}

fn is_derived(name: &str) -> bool {
    name == AVOIDED || name == AVOIDED_SHARE || name.starts_with(&format!("{LATENCY}{{quantile="))
}

/// Adds the derived figures to `series`. The share is of device deliveries: those over a
/// stream that avoided FCM, plus those FCM made (accepted or failed).
fn derive(series: &mut BTreeMap<String, f64>) {
    let avoided = series.get(AVOIDED_SERIES).copied().unwrap_or(0.0);
    let pushed: f64 = series
        .iter()
        .filter(|(k, _)| k.starts_with("switchboard_fcm_deliveries_total{"))
        .map(|(_, v)| v)
        .sum();
    series.insert(AVOIDED.into(), avoided);
    let share = if avoided + pushed > 0.0 {
        avoided / (avoided + pushed)
    } else {
        0.0
    };
    series.insert(AVOIDED_SHARE.into(), share);
    let buckets = buckets(series, LATENCY);
    for (q, label) in QUANTILES {
        if let Some(v) = quantile(q, &buckets) {
            series.insert(format!("{LATENCY}{{quantile=\"{label}\"}}"), v);
        }
    }
}

/// The cumulative buckets of histogram `name`: (upper bound, count), by bound.
fn buckets(series: &BTreeMap<String, f64>, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut b: Vec<(f64, f64)> = series
        .iter()
        .filter_map(|(k, v)| {
            let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, *v))
        })
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    b
}

/// The `q` quantile of cumulative buckets, interpolated within its bucket as Prometheus's
/// `histogram_quantile` does; `None` without observations. Past the last finite bound, that
/// bound.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let count = buckets.last()?.1;
    if count <= 0.0 {
        return None;
    }
    let rank = q * count;
    let mut lower = (0.0, 0.0);
    for &(le, c) in buckets {
        if c >= rank {
            if le.is_infinite() {
                return Some(lower.0);
            }
            let within = if c > lower.1 {
                (rank - lower.1) / (c - lower.1)
            } else {
                1.0
            };
            return Some(lower.0 + (le - lower.0) * within);
        }
        lower = (le, c);
    }
    Some(lower.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_read_by_their_exposition_names() {
        let m = Metrics::new();
        m.sse_connections.set(3);
        m.fcm_sends_avoided.inc_by(3);
        m.fcm_accepted.inc();
        let f = Figures::capture("n1", &m);
        assert_eq!(f.series["switchboard_sse_connections"], 3.0);
        assert_eq!(
            f.series["switchboard_sse_disconnects_total{reason=\"replaced\"}"],
            0.0
        );
        assert_eq!(f.series[AVOIDED], 3.0);
        assert_eq!(f.series[AVOIDED_SHARE], 0.75);
        assert!(!f.series.keys().any(|k| k.contains("_created")));
    }

    #[test]
    fn latency_quantiles_come_from_the_buckets() {
        let m = Metrics::new();
        for _ in 0..99 {
            m.delivery_latency.observe(0.001);
        }
        m.delivery_latency.observe(1.0);
        let f = Figures::capture("n1", &m);
        let p50 = f.series["switchboard_delivery_latency_seconds{quantile=\"0.5\"}"];
        let p99 = f.series["switchboard_delivery_latency_seconds{quantile=\"0.99\"}"];
        assert!(p50 > 0.0005 && p50 <= 0.0016, "{p50}");
        assert!(p99 <= 0.0016, "{p99}");
        let empty = Figures::capture("n2", &Metrics::new());
        assert!(!empty.series.keys().any(|k| k.contains("quantile")));
    }

    #[test]
    fn the_cluster_sums_nodes_and_derives_from_the_sums() {
        let a = Metrics::new();
        a.sse_connections.set(2);
        a.fcm_sends_avoided.inc();
        let b = Metrics::new();
        b.sse_connections.set(1);
        b.fcm_failed.inc();
        let c = ClusterFigures::sum(vec![
            Arc::new(Figures::capture("a", &a)),
            Arc::new(Figures::capture("b", &b)),
        ]);
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.total["switchboard_sse_connections"], 3.0);
        assert_eq!(c.total[AVOIDED], 1.0);
        assert_eq!(c.total[AVOIDED_SHARE], 0.5);
    }

    #[test]
    fn the_board_keeps_the_latest_of_each_node() {
        let board = Board::default();
        let f = |node: &str, at_ms| {
            Arc::new(Figures {
                node_id: node.into(),
                at_ms,
                series: BTreeMap::new(),
            })
        };
        board.put(f("b", 1));
        board.put(f("a", 1));
        board.put(f("b", 2));
        let nodes = board.fresh();
        assert_eq!(
            nodes
                .iter()
                .map(|n| (n.node_id.as_str(), n.at_ms))
                .collect::<Vec<_>>(),
            [("a", 1), ("b", 2)]
        );
    }
}
