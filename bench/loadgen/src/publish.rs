//! Publishers (and pollers): hyper 1 HTTP/1.1 keep-alive client connections, each a task that
//! sends its workload's requests back to back, or on a schedule when a total rate is given.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;
use tokio::time::{Instant, MissedTickBehavior};

use crate::net::{connect, Server, Sources};
use crate::stats::{histogram, Answers};

pub type Body = Full<Bytes>;

/// One request of a workload, with what it carries.
pub struct Outgoing {
    pub request: Request<Body>,
    /// Notifications (or messages) carried: a batch request carries many.
    pub items: u64,
}

/// What a set of connections sends, and what it makes of the answers.
pub trait Workload: Send + Sync + 'static {
    /// The next request, or `None` when the workload is complete.
    fn next(&self, host: &str) -> Option<Outgoing>;
    /// The answer to a request that carried `items`.
    fn answered(&self, items: u64, status: u16, body: &[u8]);
}

/// How to run a set of connections.
pub struct Plan {
    pub connections: usize,
    /// Total requests per second over all connections; `None` = as fast as answers come.
    pub rate: Option<f64>,
    /// Stop starting requests after this long; `None` = until the workload is complete.
    pub window: Option<Duration>,
    pub connect_concurrency: usize,
}

/// When the sending actually ran.
pub struct Ran {
    pub started: Instant,
    /// When the last request was started (the end of the publish window).
    pub last_send: Instant,
    /// When the last answer arrived.
    pub finished: Instant,
}

/// Runs connections opened by [`open_all`] from one common start.
pub async fn run(
    senders: Vec<SendRequest<Body>>,
    server: &Server,
    sources: &Arc<Sources>,
    plan: &Plan,
    workload: Arc<dyn Workload>,
    answers: Arc<Answers>,
) -> Ran {
    let started = Instant::now() + Duration::from_millis(20);
    let end = plan.window.map(|w| started + w);
    let period = plan
        .rate
        .map(|r| Duration::from_secs_f64(plan.connections as f64 / r.max(1e-9)));
    let mut tasks = Vec::with_capacity(senders.len());
    for (i, sender) in senders.into_iter().enumerate() {
        let offset = plan
            .rate
            .map(|r| Duration::from_secs_f64(i as f64 / r.max(1e-9)))
            .unwrap_or_default();
        let conn = Connection {
            sender,
            server: server.clone(),
            sources: sources.clone(),
            workload: workload.clone(),
            answers: answers.clone(),
        };
        tasks.push(tokio::spawn(conn.drive(started + offset, period, end)));
    }
    let mut last_send = started;
    for t in tasks {
        if let Ok(Some(at)) = t.await {
            last_send = last_send.max(at);
        }
    }
    Ran {
        started,
        last_send,
        finished: Instant::now(),
    }
}

/// Opens the plan's connections (all of them, or an error).
pub async fn open_all(
    server: &Server,
    sources: &Arc<Sources>,
    plan: &Plan,
) -> anyhow::Result<Vec<SendRequest<Body>>> {
    let gate = Arc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let opening: Vec<_> = (0..plan.connections)
        .map(|_| {
            let (gate, server, sources) = (gate.clone(), server.clone(), sources.clone());
            tokio::spawn(async move {
                let _permit = gate.acquire().await;
                let mut last = None;
                for attempt in 1..=5u64 {
                    match handshake(&server, &sources).await {
                        Ok(s) => return Ok(s),
                        Err(e) => last = Some(e),
                    }
                    tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
                }
                Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
            })
        })
        .collect();
    let mut senders = Vec::with_capacity(plan.connections);
    for o in opening {
        senders.push(o.await??);
    }
    Ok(senders)
}

/// A fresh HTTP/1.1 client connection.
pub async fn handshake(server: &Server, sources: &Sources) -> anyhow::Result<SendRequest<Body>> {
    let tcp = connect(server.addr, sources.next()).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

struct Connection {
    sender: SendRequest<Body>,
    server: Server,
    sources: Arc<Sources>,
    workload: Arc<dyn Workload>,
    answers: Arc<Answers>,
}

impl Connection {
    /// Sends until `end` or the workload is complete; returns when the last request started.
    async fn drive(
        mut self,
        first: Instant,
        period: Option<Duration>,
        end: Option<Instant>,
    ) -> Option<Instant> {
        let mut latency = histogram();
        let mut ticks = period.map(|p| {
            let mut t = tokio::time::interval_at(first, p);
            t.set_missed_tick_behavior(MissedTickBehavior::Burst);
            t
        });
        if ticks.is_none() {
            tokio::time::sleep_until(first).await;
        }
        let mut last_send = None;
        loop {
            if let Some(t) = ticks.as_mut() {
                t.tick().await;
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                break;
            }
            if self.sender.ready().await.is_err() && !self.reconnect(end).await {
                break;
            }
            let Some(out) = self.workload.next(&self.server.host) else {
                break;
            };
            let sent = Instant::now();
            last_send = Some(sent);
            match self.exchange(out.request).await {
                Ok((status, retry_after, body)) => {
                    latency.saturating_record(sent.elapsed().as_micros() as u64);
                    self.answers.status(status);
                    if retry_after {
                        self.answers.retry_after.fetch_add(1, Ordering::Relaxed);
                    }
                    self.workload.answered(out.items, status, &body);
                }
                Err(_) => {
                    self.answers
                        .transport_errors
                        .fetch_add(1, Ordering::Relaxed);
                    if !self.reconnect(end).await {
                        break;
                    }
                }
            }
        }
        self.answers.merge_latency(&latency);
        last_send
    }

    /// Sends one request: its status, whether it carried `Retry-After`, and its body.
    async fn exchange(&mut self, request: Request<Body>) -> anyhow::Result<(u16, bool, Bytes)> {
        let resp = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = self.sender.send_request(request).await?;
            let status = resp.status().as_u16();
            let retry_after = resp.headers().contains_key(header::RETRY_AFTER);
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, retry_after, body))
        })
        .await??;
        Ok(resp)
    }

    /// Replaces a broken connection; false when the window ended first.
    async fn reconnect(&mut self, end: Option<Instant>) -> bool {
        loop {
            if end.is_some_and(|e| Instant::now() >= e) {
                return false;
            }
            match handshake(&self.server, &self.sources).await {
                Ok(s) => {
                    self.sender = s;
                    return true;
                }
                Err(_) => {
                    self.answers
                        .transport_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}

/// A request with the usual headers; `auth` is a bearer token.
pub fn request(
    method: Method,
    host: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<(&str, String)>,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host);
    if let Some(token) = auth {
        b = b.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match body {
        Some((content_type, text)) => {
            b = b.header(header::CONTENT_TYPE, content_type);
            Full::new(Bytes::from(text))
        }
        None => Full::new(Bytes::new()),
    };
    b.body(body).expect("a request of valid parts")
}

/// A one-off GET or DELETE (control endpoints: fcm-mock stats), on a fresh connection.
pub async fn once(server: &Server, method: Method, path: &str) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = handshake(server, &Sources::parse("")?).await?;
    let resp = sender
        .send_request(request(method, &server.host, path, None, None))
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.into_body().collect().await?.to_bytes()))
}
