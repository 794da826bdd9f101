//! Receiving streams: raw TCP connections with a hand-written `GET`, the response head parsed
//! with httparse, then the body decoded incrementally (chunked + SSE). One small task each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::net::{connect, Server, Sources};
use crate::sse::{stamp, Dechunker, SseParser};
use crate::stats::{now_us, Recorder};

const READ_BUF: usize = 4096;
const MAX_HEAD: usize = 16 * 1024;
const CONNECT_ATTEMPTS: u32 = 5;

/// Shared by every stream task of a run.
pub struct StreamSet {
    server: Server,
    sources: Arc<Sources>,
    /// Bounds connection attempts in flight, like a crowd of clients reconnecting at once.
    connecting: Semaphore,
    pub recorder: Arc<Recorder>,
    /// Streams whose `200` head arrived.
    pub established: AtomicU64,
    /// Streams that never opened, by reason (`status_429`, `connect`, …).
    pub failed: Mutex<BTreeMap<String, u64>>,
    /// Established streams that the server closed (or that broke) during the run.
    pub closed: AtomicU64,
    /// Connection attempts repeated after a connect error.
    pub connect_retries: AtomicU64,
    /// `:` comment lines (heartbeats) seen on all streams.
    pub comments: AtomicU64,
    /// Body bytes read on all streams (what the wire carried after the heads).
    pub bytes_in: AtomicU64,
    /// The kernel's listen-queue overflow count when the streams started opening.
    overflows_before: Option<u64>,
    /// Listen-queue overflows while the streams opened (`u64::MAX`: not known).
    overflows_opening: AtomicU64,
}

impl StreamSet {
    pub fn new(
        server: Server,
        sources: Arc<Sources>,
        connect_concurrency: usize,
        recorder: Arc<Recorder>,
    ) -> Arc<StreamSet> {
        Arc::new(StreamSet {
            server,
            sources,
            connecting: Semaphore::new(connect_concurrency.max(1)),
            recorder,
            established: AtomicU64::new(0),
            failed: Mutex::new(BTreeMap::new()),
            closed: AtomicU64::new(0),
            connect_retries: AtomicU64::new(0),
            comments: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            overflows_before: crate::procfs::listen_overflows(),
            overflows_opening: AtomicU64::new(u64::MAX),
        })
    }

    /// Notes how many connections the server's listen queue dropped since the set was made.
    pub fn set_open_overflows(&self) {
        if let (Some(a), Some(b)) = (self.overflows_before, crate::procfs::listen_overflows()) {
            self.overflows_opening
                .store(b.saturating_sub(a), Ordering::Relaxed);
        }
    }

    pub fn open_overflows(&self) -> Option<u64> {
        Some(self.overflows_opening.load(Ordering::Relaxed)).filter(|&v| v != u64::MAX)
    }

    pub fn host(&self) -> &str {
        &self.server.host
    }

    pub fn failed_total(&self) -> u64 {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .sum()
    }

    fn fail(&self, reason: String) {
        *self
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(reason)
            .or_default() += 1;
    }

    /// Opens stream number `index` with the given request head and reads it until it ends.
    pub fn spawn(self: &Arc<Self>, index: usize, request: Vec<u8>) {
        let set = self.clone();
        tokio::spawn(async move { set.run(index, request).await });
    }

    /// Waits until every one of `total` streams opened or failed, or `timeout` passed.
    pub async fn wait_open(&self, total: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let settled = self.established.load(Ordering::Relaxed) + self.failed_total();
            if settled >= total {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn run(&self, index: usize, request: Vec<u8>) {
        let opened = {
            let _permit = self.connecting.acquire().await;
            self.open(&request).await
        };
        let (tcp, leftover, chunked) = match opened {
            Ok(o) => o,
            Err(reason) => return self.fail(reason),
        };
        self.established.fetch_add(1, Ordering::Relaxed);
        self.read_events(index, tcp, leftover, chunked).await;
        self.closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Connects (retrying connect errors) and reads the response head; on success returns the
    /// connection, body bytes read past the head, and whether the body is chunked.
    async fn open(&self, request: &[u8]) -> Result<(TcpStream, Vec<u8>, bool), String> {
        let mut attempt = 0;
        let mut tcp = loop {
            attempt += 1;
            match connect(self.server.addr, self.sources.next()).await {
                Ok(tcp) => break tcp,
                Err(e) if attempt >= CONNECT_ATTEMPTS => return Err(format!("connect: {e}")),
                Err(_) => {
                    self.connect_retries.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
            }
        };
        tcp.write_all(request)
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::with_capacity(READ_BUF);
        let head = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let mut chunk = [0u8; 1024];
                let n = tcp
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("read head: {e}"))?;
                if n == 0 {
                    return Err("closed before the response head".to_string());
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        if status != 200 {
                            return Err(format!("status_{status}"));
                        }
                        let chunked = resp.headers.iter().any(|h| {
                            h.name.eq_ignore_ascii_case("transfer-encoding")
                                && String::from_utf8_lossy(h.value)
                                    .to_ascii_lowercase()
                                    .contains("chunked")
                        });
                        return Ok((len, chunked));
                    }
                    Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
                    Ok(httparse::Status::Partial) => return Err("head too large".to_string()),
                    Err(e) => return Err(format!("bad head: {e}")),
                }
            }
        })
        .await
        .map_err(|_| "timeout waiting for the response head".to_string())??;
        let (len, chunked) = head;
        let leftover = buf.split_off(len);
        Ok((tcp, leftover, chunked))
    }

    /// Reads events until the server ends the stream; a stream never ends well during a run.
    async fn read_events(
        &self,
        index: usize,
        mut tcp: TcpStream,
        leftover: Vec<u8>,
        chunked: bool,
    ) {
        let mut body = Body {
            dechunker: chunked.then(Dechunker::default),
            parser: SseParser::default(),
            decoded: Vec::new(),
            stamps: Vec::new(),
        };
        if !body.take(self, index, &leftover) {
            return;
        }
        let mut buf = vec![0u8; READ_BUF];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if !body.take(self, index, &buf[..n]) {
                        return;
                    }
                }
            }
        }
    }
}

/// The decoding state of one stream's body.
struct Body {
    dechunker: Option<Dechunker>,
    parser: SseParser,
    /// Payload of the chunks just decoded.
    decoded: Vec<u8>,
    /// `(ts, seq)` of the data events in the bytes just read.
    stamps: Vec<(u64, Option<u64>)>,
}

impl Body {
    /// Takes bytes just read; false once the body ended or broke.
    fn take(&mut self, set: &StreamSet, index: usize, bytes: &[u8]) -> bool {
        if bytes.is_empty() {
            return true;
        }
        set.bytes_in
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let at = now_us();
        let payload: &[u8] = match self.dechunker.as_mut() {
            Some(d) => {
                self.decoded.clear();
                if d.feed(bytes, &mut self.decoded).is_err() {
                    return false;
                }
                &self.decoded
            }
            None => bytes,
        };
        let comments_before = self.parser.comments;
        let stamps = &mut self.stamps;
        self.parser.feed(payload, |event| match event.name {
            b"notification" | b"broadcast" | b"message" => match stamp(event.data) {
                (Some(ts), seq) => stamps.push((ts, seq)),
                (None, _) => {
                    set.recorder.unstamped.fetch_add(1, Ordering::Relaxed);
                }
            },
            other => set.recorder.control_event(other),
        });
        let comments = self.parser.comments - comments_before;
        if comments > 0 {
            set.comments.fetch_add(comments, Ordering::Relaxed);
        }
        set.recorder.delivered(index, at, &self.stamps);
        self.stamps.clear();
        !self.dechunker.as_ref().is_some_and(Dechunker::done)
    }
}
