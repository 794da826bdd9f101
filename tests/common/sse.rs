//! A small SSE client for tests: reads a `text/event-stream` response and parses events.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub retry: Option<u64>,
    /// A comment line (`: ping`), reported as an event of its own.
    pub comment: Option<String>,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }
}

pub struct SseStream {
    pub status: reqwest::StatusCode,
    pub headers: reqwest::header::HeaderMap,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buf: String,
}

impl SseStream {
    /// Opens the stream and, on 200, reads up to the `retry:` preamble.
    pub async fn open(url: &str, token: &str) -> SseStream {
        let client = reqwest::Client::new();
        let resp = client.get(url).bearer_auth(token).send().await.unwrap();
        let mut s = SseStream::from_response(resp);
        if s.status == reqwest::StatusCode::OK {
            let first = s
                .next(Duration::from_secs(5))
                .await
                .expect("the stream starts with retry:");
            assert!(first.retry.is_some(), "first event is not retry: {first:?}");
        }
        s
    }

    pub fn from_response(resp: reqwest::Response) -> SseStream {
        SseStream {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: Some(resp.bytes_stream().boxed()),
            buf: String::new(),
        }
    }

    /// The next event (or comment), or `None` at the end of the stream or after `within`.
    pub async fn next(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(ev) = self.parse_one() {
                return Some(ev);
            }
            let body = self.body.as_mut()?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(Ok(chunk))) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(_) => {
                    self.body = None;
                    return None;
                }
                Err(_) => return None,
            }
        }
    }

    /// The next event that is not a comment.
    pub async fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let ev = self.next(left).await?;
            if ev.comment.is_none() {
                return Some(ev);
            }
        }
    }

    /// True once the server has ended the stream.
    pub fn ended(&self) -> bool {
        self.body.is_none()
    }

    fn parse_one(&mut self) -> Option<SseEvent> {
        let end = self.buf.find("\n\n")?;
        let block: String = self.buf.drain(..end + 2).collect();
        let mut ev = SseEvent::default();
        for line in block.lines() {
            if let Some(c) = line.strip_prefix(':') {
                ev.comment = Some(c.trim().to_string());
            } else if let Some((field, value)) = line.split_once(':') {
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => ev.id = Some(value.to_string()),
                    "event" => ev.event = Some(value.to_string()),
                    "data" => {
                        if !ev.data.is_empty() {
                            ev.data.push('\n');
                        }
                        ev.data.push_str(value);
                    }
                    "retry" => ev.retry = value.trim().parse().ok(),
                    _ => {}
                }
            }
        }
        Some(ev)
    }

    /// Drops the connection (the client goes away).
    pub fn close(mut self) {
        self.body = None;
    }
}
