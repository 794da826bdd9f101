//! The node-wide connection cap (`server.max_connections`): each connection holds a slot for
//! its life; past the cap a new one is answered `503` and closed, and open ones are untouched.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// File descriptors kept for what is not a client connection (Redis, the database, FCM, the
/// refusals below), out of the process's limit, when the cap is derived from it.
const HEADROOM: u64 = 1024;

/// Refused connections being answered at once; past it a refused connection is closed at once.
const REFUSALS_IN_FLIGHT: usize = 64;

/// How long a refused connection may take to read its answer. Reading what it sent meanwhile
/// lets the close be a FIN: closing a socket with unread input sends a reset, which may
/// destroy the answer before the client reads it.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 105\r\n\
\r\n\
{\"error\":{\"code\":\"too_many_connections\",\"message\":\"this node is at its connection limit; retry shortly\"}}";

/// Connection slots, counted in `switchboard_connections`.
pub struct Admission {
    max: i64,
    open: Gauge,
    refused: Counter,
    refusing: Arc<Semaphore>,
}

/// A connection's slot, given back when it drops.
pub struct Slot(Gauge);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Admission {
    /// `configured` is `server.max_connections`; 0 derives the cap from the file limit.
    pub fn new(configured: usize, open: Gauge, refused: Counter) -> Admission {
        let limit = file_limit();
        let derived = limit.map(|l| l.saturating_sub(HEADROOM.min(l / 4)));
        let max = match (configured, derived) {
            (0, Some(derived)) => derived,
            (0, None) => 10_000,
            (n, derived) => {
                let n = n as u64;
                if derived.is_some_and(|d| n > d) {
                    tracing::warn!(
                        server.max_connections = n,
                        file_limit = limit,
                        "server.max_connections leaves under {HEADROOM} of the process's file limit for everything else: accepts may fail with EMFILE; raise the limit (ulimit -n, LimitNOFILE) or lower server.max_connections"
                    );
                }
                n
            }
        };
        tracing::info!(max_connections = max, file_limit = limit, "connection cap");
        Admission {
            max: i64::try_from(max).unwrap_or(i64::MAX),
            open,
            refused,
            refusing: Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT)),
        }
    }

    /// A slot for a new connection, or `None` at the cap.
    pub fn admit(&self) -> Option<Slot> {
        if self.open.inc() >= self.max {
            self.open.dec();
            return None;
        }
        Some(Slot(self.open.clone()))
    }

    /// Answers a connection refused at the cap with `503` and `Retry-After`, or closes it at
    /// once when many refusals are already being answered.
    pub fn refuse(&self, mut tcp: TcpStream) {
        self.refused.inc();
        let Ok(permit) = self.refusing.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                tcp.write_all(REFUSAL).await?;
                tcp.shutdown().await?;
                let mut sink = [0u8; 512];
                while tcp.read(&mut sink).await? > 0 {}
                Ok::<_, std::io::Error>(())
            })
            .await;
            drop(permit);
        });
    }
}

/// The process's open-file limit, after raising the soft limit to the hard one (what the
/// administrator allows); `None` when unlimited.
fn file_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the soft file limit to the hard one");
        }
    }
    getrlimit(Resource::Nofile).current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_refusal_is_a_complete_response() {
        let (head, body) = std::str::from_utf8(REFUSAL)
            .unwrap()
            .split_once("\r\n\r\n")
            .unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["error"]["code"], "too_many_connections");
        assert!(
            crate::http::error::documented_codes()
                .iter()
                .any(|c| c == "too_many_connections"),
            "the code is in the OpenAPI document's list"
        );
    }

    #[test]
    fn slots_are_given_back() {
        let open = Gauge::default();
        let admission = Admission::new(2, open.clone(), Counter::default());
        let a = admission.admit().unwrap();
        let b = admission.admit().unwrap();
        assert!(admission.admit().is_none());
        assert_eq!(open.get(), 2);
        drop(a);
        let _c = admission.admit().unwrap();
        drop(b);
        assert_eq!(open.get(), 1);
    }
}
