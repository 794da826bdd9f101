//! Inbox pollers (W7): one raw-TCP HTTP/1.1 keep-alive connection per client, each sending
//! `GET /v1/inbox?after=<last>` with its JWT and `If-None-Match: <last ETag>` at its own slot
//! of every interval, as a polling app does. Counts bytes both ways, and the latency of each
//! notification from its publish stamp to the poll that brought it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::net::{connect, Server, Sources};
use crate::stats::{now_us, Recorder};
use crate::target::Target;

const MAX_RESPONSE: usize = 1 << 20;

/// What every poller counts.
#[derive(Default)]
pub struct PollCounts {
    pub polls: AtomicU64,
    pub pages: AtomicU64,
    pub not_modified: AtomicU64,
    pub errors: AtomicU64,
    pub bytes_out: AtomicU64,
    pub bytes_in: AtomicU64,
}

#[derive(Deserialize)]
struct Page {
    items: Vec<Item>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct Item {
    data: Option<std::collections::HashMap<String, String>>,
}

/// One client: its connection, cursor and tag.
pub struct Poller {
    pub index: usize,
    head: String,
    server: Server,
    sources: Arc<Sources>,
    conn: Option<TcpStream>,
    after: Option<String>,
    etag: Option<String>,
}

impl Poller {
    pub fn new(
        index: usize,
        user: usize,
        target: &Target,
        server: &Server,
        sources: &Arc<Sources>,
    ) -> Poller {
        Poller {
            index,
            head: format!(
                "Host: {}\r\nAuthorization: Bearer {}\r\n",
                server.host,
                target.client_token(user)
            ),
            server: server.clone(),
            sources: sources.clone(),
            conn: None,
            after: None,
            etag: None,
        }
    }

    /// One poll; the connection is dropped (and made again next time) after an error.
    pub async fn poll(&mut self, counts: &PollCounts, recorder: &Recorder) {
        counts.polls.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.exchange(counts, recorder).await {
            counts.errors.fetch_add(1, Ordering::Relaxed);
            if counts.errors.load(Ordering::Relaxed) < 5 {
                eprintln!("poll: {e}");
            }
            self.conn = None;
        }
    }

    async fn exchange(&mut self, counts: &PollCounts, recorder: &Recorder) -> Result<(), String> {
        if self.conn.is_none() {
            let c = connect(self.server.addr, self.sources.next())
                .await
                .map_err(|e| format!("connect: {e}"))?;
            self.conn = Some(c);
        }
        let conn = self.conn.as_mut().expect("connected above");
        let mut req = format!(
            "GET /v1/inbox?limit=100{} HTTP/1.1\r\n{}",
            self.after
                .as_deref()
                .map(|a| format!("&after={a}"))
                .unwrap_or_default(),
            self.head
        );
        if let Some(tag) = &self.etag {
            req.push_str(&format!("If-None-Match: {tag}\r\n"));
        }
        req.push_str("\r\n");
        conn.write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        counts
            .bytes_out
            .fetch_add(req.len() as u64, Ordering::Relaxed);
        let mut buf = Vec::with_capacity(1024);
        let mut chunk = [0u8; 4096];
        let (status, head_len, length, etag) = loop {
            let n = conn
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed".into());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 24];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let mut length = 0usize;
                    let mut etag = None;
                    for h in resp.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            length = std::str::from_utf8(h.value)
                                .ok()
                                .and_then(|v| v.trim().parse().ok())
                                .unwrap_or(0);
                        } else if h.name.eq_ignore_ascii_case("etag") {
                            etag = Some(String::from_utf8_lossy(h.value).into_owned());
                        }
                    }
                    break (resp.code.unwrap_or(0), len, length, etag);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE => continue,
                Ok(httparse::Status::Partial) => return Err("head too large".into()),
                Err(e) => return Err(format!("bad response: {e}")),
            }
        };
        while buf.len() < head_len + length {
            let n = conn
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("closed mid-body".into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let at = now_us();
        counts
            .bytes_in
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        match status {
            304 => {
                counts.not_modified.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            200 => {
                counts.pages.fetch_add(1, Ordering::Relaxed);
                let page: Page = serde_json::from_slice(&buf[head_len..head_len + length])
                    .map_err(|e| format!("bad page: {e}"))?;
                let stamps: Vec<(u64, Option<u64>)> = page
                    .items
                    .iter()
                    .filter_map(|i| i.data.as_ref()?.get("ts")?.parse().ok())
                    .map(|ts| (ts, None))
                    .collect();
                recorder.delivered(self.index, at, &stamps);
                self.after = page.next.or(self.after.take());
                self.etag = etag;
                Ok(())
            }
            other => Err(format!("status {other}")),
        }
    }
}

/// Runs `poller` at `first`, then every `interval`, until `end`.
pub async fn run(
    mut poller: Poller,
    first: Instant,
    interval: Duration,
    end: Instant,
    counts: Arc<PollCounts>,
    recorder: Arc<Recorder>,
) {
    let mut at = first;
    while at < end {
        tokio::time::sleep_until(at).await;
        poller.poll(&counts, &recorder).await;
        at += interval;
    }
}
