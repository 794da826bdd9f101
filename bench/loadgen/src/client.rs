//! Reconnecting SSE clients (the `storm` workload). Each behaves as an EventSource does: after
//! its stream ends, or an attempt fails, it waits the `retry:` its server last sent (a default
//! when none did; longer when a refusal asks so with `Retry-After`), then reconnects with
//! `Last-Event-ID`. With acks on, every notification is confirmed with `POST /v1/ack`.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Semaphore};

use crate::net::{connect, Server, Sources};
use crate::sse::{stamp, Dechunker, SseParser};
use crate::stats::{histogram, now_us, Percentiles, Recorder};
use crate::target::Target;

const READ_BUF: usize = 4096;
const MAX_HEAD: usize = 16 * 1024;
const ID_SHARDS: usize = 64;

/// Why an attempt did not give a stream, and how long the server asked to wait.
struct Refusal {
    reason: String,
    retry_after_ms: u64,
}

/// A crowd of reconnecting clients, one per user, and what they saw.
pub struct Crowd {
    server: Server,
    sources: Arc<Sources>,
    pub target: Target,
    connecting: Semaphore,
    default_retry_ms: u64,
    ack: bool,
    acks: mpsc::UnboundedSender<(usize, String)>,
    pub recorder: Arc<Recorder>,
    /// Notification ids received, with how many times each arrived.
    ids: Vec<Mutex<HashMap<String, u32>>>,
    /// Streams open for the first time.
    pub first_opens: AtomicU64,
    /// Streams open again after their first one ended.
    pub reopened: AtomicU64,
    /// Unix µs of each stream's first reopening.
    reopen_at: Mutex<Vec<u64>>,
    /// Unix µs when the first established stream ended.
    pub first_end_us: AtomicU64,
    /// Established streams that ended.
    pub ended: AtomicU64,
    /// Attempts that did not give a stream, by reason.
    pub refused: Mutex<BTreeMap<String, u64>>,
    /// The `retry:` values streams were given, ms.
    retries: Mutex<Histogram<u64>>,
}

impl Crowd {
    /// The crowd and the receiving end of its acks (`(user, notification id)`).
    pub fn new(
        server: Server,
        sources: Arc<Sources>,
        target: Target,
        connect_concurrency: usize,
        default_retry_ms: u64,
        ack: bool,
    ) -> (Arc<Crowd>, mpsc::UnboundedReceiver<(usize, String)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let crowd = Crowd {
            server,
            sources,
            target,
            connecting: Semaphore::new(connect_concurrency.max(1)),
            default_retry_ms,
            ack,
            acks: tx,
            recorder: Arc::new(Recorder::new(None)),
            ids: (0..ID_SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            first_opens: AtomicU64::new(0),
            reopened: AtomicU64::new(0),
            reopen_at: Mutex::new(Vec::new()),
            first_end_us: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            refused: Mutex::new(BTreeMap::new()),
            retries: Mutex::new(histogram()),
        };
        (Arc::new(crowd), rx)
    }

    pub fn spawn(self: &Arc<Self>, pos: usize, user: usize) {
        let crowd = self.clone();
        tokio::spawn(async move { crowd.run(pos, user).await });
    }

    /// How many times notification `id` arrived.
    pub fn times_received(&self, id: &str) -> u32 {
        self.shard(id)
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// The reopening times, µs since the unix epoch, sorted.
    pub fn reopen_times(&self) -> Vec<u64> {
        let mut v = self
            .reopen_at
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        v.sort_unstable();
        v
    }

    pub fn refusals(&self) -> BTreeMap<String, u64> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn retry_values(&self) -> Percentiles {
        Percentiles::of(&self.retries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn shard(&self, id: &str) -> &Mutex<HashMap<String, u32>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        id.hash(&mut h);
        &self.ids[(h.finish() as usize) % ID_SHARDS]
    }

    async fn run(&self, pos: usize, user: usize) {
        let mut last_id: Option<String> = None;
        let mut retry_ms = self.default_retry_ms;
        let mut opened_once = false;
        let mut reopened = false;
        loop {
            let head =
                self.target
                    .resume_request(&self.server.host, user, self.ack, last_id.as_deref());
            let attempt = {
                let _permit = self.connecting.acquire().await;
                self.open(&head).await
            };
            let mut wait = retry_ms;
            match attempt {
                Ok((tcp, leftover, chunked)) => {
                    if !opened_once {
                        opened_once = true;
                        self.first_opens.fetch_add(1, Ordering::Relaxed);
                    } else if !reopened {
                        reopened = true;
                        self.reopen_at
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(now_us());
                        self.reopened.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut parser = SseParser::default();
                    self.read(pos, user, tcp, leftover, chunked, &mut parser, &mut last_id)
                        .await;
                    let _ = self.first_end_us.compare_exchange(
                        0,
                        now_us(),
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    );
                    self.ended.fetch_add(1, Ordering::Relaxed);
                    if let Some(ms) = parser.retry_ms {
                        retry_ms = ms;
                        wait = ms;
                    }
                }
                Err(refusal) => {
                    *self
                        .refused
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(refusal.reason)
                        .or_default() += 1;
                    wait = wait.max(refusal.retry_after_ms);
                }
            }
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Connects and reads the response head: the connection, body bytes past the head, and
    /// whether the body is chunked.
    async fn open(&self, request: &[u8]) -> Result<(TcpStream, Vec<u8>, bool), Refusal> {
        let refuse = |reason: String| Refusal {
            reason,
            retry_after_ms: 0,
        };
        let mut tcp = connect(self.server.addr, self.sources.next())
            .await
            .map_err(|e| refuse(format!("connect: {}", e.kind())))?;
        tcp.write_all(request)
            .await
            .map_err(|e| refuse(format!("write: {}", e.kind())))?;
        let mut buf = Vec::with_capacity(READ_BUF);
        let outcome = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut chunk = [0u8; 1024];
                let n = tcp
                    .read(&mut chunk)
                    .await
                    .map_err(|e| refuse(format!("read head: {}", e.kind())))?;
                if n == 0 {
                    return Err(refuse("closed before the response head".into()));
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let header = |name: &str| {
                            resp.headers
                                .iter()
                                .find(|h| h.name.eq_ignore_ascii_case(name))
                                .map(|h| String::from_utf8_lossy(h.value).to_ascii_lowercase())
                        };
                        let status = resp.code.unwrap_or(0);
                        if status != 200 {
                            let retry_after_ms = header("retry-after")
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map_or(0, |s| s * 1000);
                            return Err(Refusal {
                                reason: format!("status_{status}"),
                                retry_after_ms,
                            });
                        }
                        let chunked =
                            header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                        return Ok((len, chunked));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                    Ok(httparse::Status::Partial) => return Err(refuse("head too large".into())),
                    Err(e) => return Err(refuse(format!("bad head: {e}"))),
                }
            }
        })
        .await
        .map_err(|_| refuse("timeout waiting for the response head".into()))??;
        let (len, chunked) = outcome;
        let leftover = buf.split_off(len);
        Ok((tcp, leftover, chunked))
    }

    /// Reads one stream until it ends, keeping the last event id and the retry time.
    #[allow(clippy::too_many_arguments)]
    async fn read(
        &self,
        pos: usize,
        user: usize,
        mut tcp: TcpStream,
        leftover: Vec<u8>,
        chunked: bool,
        parser: &mut SseParser,
        last_id: &mut Option<String>,
    ) {
        let mut dechunker = chunked.then(Dechunker::default);
        let mut decoded = Vec::new();
        let mut retry_noted = false;
        let mut pending: Vec<u8> = leftover;
        let mut buf = vec![0u8; READ_BUF];
        loop {
            if !pending.is_empty() {
                let at = now_us();
                let payload: &[u8] = match dechunker.as_mut() {
                    Some(d) => {
                        decoded.clear();
                        if d.feed(&pending, &mut decoded).is_err() {
                            return;
                        }
                        &decoded
                    }
                    None => &pending,
                };
                let mut stamps = Vec::new();
                parser.feed(payload, |event| {
                    if let Some(id) = event.id {
                        *last_id = Some(String::from_utf8_lossy(id).into_owned());
                    }
                    match event.name {
                        b"notification" | b"message" => {
                            if let (Some(ts), seq) = stamp(event.data) {
                                stamps.push((ts, seq));
                            }
                            if event.name == b"notification" {
                                if let Some(id) = event.id {
                                    let id = String::from_utf8_lossy(id).into_owned();
                                    *self
                                        .shard(&id)
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner())
                                        .entry(id.clone())
                                        .or_default() += 1;
                                    if self.ack {
                                        let _ = self.acks.send((user, id));
                                    }
                                }
                            }
                        }
                        other => self.recorder.control_event(other),
                    }
                });
                self.recorder.delivered(pos, at, &stamps);
                if !retry_noted {
                    if let Some(ms) = parser.retry_ms {
                        retry_noted = true;
                        self.retries
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .saturating_record(ms.max(1));
                    }
                }
                if dechunker.as_ref().is_some_and(Dechunker::done) {
                    return;
                }
                pending.clear();
            }
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
    }
}

/// What the ack senders did.
#[derive(Default)]
pub struct AckCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// Sends the crowd's acks on `connections` keep-alive connections, each with its user's token.
pub fn spawn_ackers(
    rx: mpsc::UnboundedReceiver<(usize, String)>,
    target: Target,
    server: Server,
    sources: Arc<Sources>,
    connections: usize,
) -> Arc<AckCounts> {
    let counts = Arc::new(AckCounts::default());
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    for _ in 0..connections.max(1) {
        let (rx, target, server, sources, counts) = (
            rx.clone(),
            target.clone(),
            server.clone(),
            sources.clone(),
            counts.clone(),
        );
        tokio::spawn(async move {
            let mut sender = None;
            loop {
                let Some((user, id)) = rx.lock().await.recv().await else {
                    return;
                };
                // An ack that fails is retried: a client keeps its acks until they are confirmed.
                for attempt in 0..5u64 {
                    if sender.is_none() {
                        sender = crate::publish::handshake(&server, &sources).await.ok();
                    }
                    let Some(s) = sender.as_mut() else {
                        tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                        continue;
                    };
                    let answered = async {
                        s.ready().await?;
                        let resp = s.send_request(target.ack(&server.host, user, &id)).await?;
                        let status = resp.status().as_u16();
                        http_body_util::BodyExt::collect(resp.into_body()).await?;
                        anyhow::Ok(status)
                    }
                    .await;
                    match answered {
                        Ok(204) => {
                            counts.ok.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        Ok(_) | Err(_) => {
                            sender = None;
                            if attempt == 4 {
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                            }
                            tokio::time::sleep(Duration::from_millis(200 * (attempt + 1))).await;
                        }
                    }
                }
            }
        });
    }
    counts
}
