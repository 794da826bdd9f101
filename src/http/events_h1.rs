//! `GET /v1/events` as the first request of an HTTP/1.1 connection, answered straight on the
//! socket rather than through hyper: a node holds 100K idle streams, and hyper keeps two 8 KiB
//! buffers, a cached header map and a write queue for each of them (bench/PROFILE-W1.md). Here
//! an idle stream is its task, its socket's registration and the hub's `Stream`.
//!
//! The server reads a connection's first head and tells with [`parse_head`] whether it is one
//! for this module: only the plain case is, `GET`, HTTP/1.1, no body, no `Origin` (CORS is the
//! router's job), no upgrade. Anything else — and any head that does not parse — goes to hyper
//! with the bytes read so far, where the same route answers it. Authentication, parameters, replay and
//! registration are the route's own [`super::events::open`]; errors are its `ApiError`s.

use std::future::{poll_fn, Future};
use std::io::{self, IoSlice, Write as _};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use axum::response::IntoResponse;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Uri};
use http_body::Body as _;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::error::ApiError;
use super::events::{open, STREAM_HEADERS};
use super::AppState;
use crate::streams::{ConnWatch, Hub, SseBody};

/// A longer head is handed to hyper, which answers it 431 under the same limit.
pub const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 48;

/// What the first bytes of an HTTP/1 connection are.
pub enum ParsedHead {
    /// An incomplete head, still under [`MAX_HEAD`]: more bytes are needed.
    Partial,
    /// A stream request this module answers.
    Stream { uri: Uri, headers: HeaderMap },
    /// Anything else, including a head that does not parse or is too long: hyper reads it.
    Other,
}

/// Classifies the bytes read so far of a connection's first request.
pub fn parse_head(buf: &[u8]) -> ParsedHead {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        // A complete head past the limit is hyper's to refuse (431), however it arrived.
        Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => {
            plain_stream_request(&req).unwrap_or(ParsedHead::Other)
        }
        Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => ParsedHead::Partial,
        _ => ParsedHead::Other,
    }
}

/// The request as the route would see it, if it is one this module takes.
fn plain_stream_request(req: &httparse::Request<'_, '_>) -> Option<ParsedHead> {
    if req.method != Some("GET") || req.version != Some(1) {
        return None;
    }
    let path = req.path?;
    let rest = path.strip_prefix("/v1/events")?;
    if !(rest.is_empty() || rest.starts_with('?')) {
        return None;
    }
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let hands_over = name == header::ORIGIN
            || name == header::TRANSFER_ENCODING
            || name == header::UPGRADE
            || name == header::EXPECT
            || (name == header::CONTENT_LENGTH && h.value != b"0");
        if hands_over {
            return None;
        }
        headers.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    Some(ParsedHead::Stream {
        uri: Uri::try_from(path).ok()?,
        headers,
    })
}

/// A stream opened on its connection, ready to be written by [`hold`].
pub struct Opened {
    tcp: TcpStream,
    body: SseBody,
    watch: Arc<ConnWatch>,
}

/// Opens the stream of a client at `peer`; `None` when the route refused it (its error was
/// written and the connection closed).
pub async fn open_stream(
    mut tcp: TcpStream,
    uri: Uri,
    headers: HeaderMap,
    peer: IpAddr,
    state: &AppState,
) -> Option<Opened> {
    // Boxed: authentication and replay are large futures, needed only while opening.
    let opened = Box::pin(open(state, &headers, &uri, peer)).await;
    drop((uri, headers));
    match opened {
        Ok(stream) => {
            let watch = Arc::new(ConnWatch::default());
            let body = SseBody::new(stream, state.hub.clone(), Some(watch.clone()));
            Some(Opened { tcp, body, watch })
        }
        Err(e) => {
            let _ = write_error(&mut tcp, e).await;
            None
        }
    }
}

/// Writes an opened stream until it ends, then closes the connection; `guard` (what the
/// connection holds: its slot under the cap, the graceful-shutdown watcher) is dropped last.
///
/// An idle stream is mostly this future, so it is kept to what the stream's life needs: an
/// `async move` block that uses its captures in place (an `async fn` would hold a second copy
/// of each argument), with nothing of the opening in it.
// Not an `async fn` on purpose: see above.
#[allow(clippy::manual_async_fn)]
pub fn hold<G: Send + 'static>(
    mut opened: Opened,
    hub: Arc<Hub>,
    guard: G,
) -> impl Future<Output = ()> + Send + 'static {
    async move {
        let clean = tokio::select! {
            clean = pump(&mut opened.tcp, &mut opened.body) => clean,
            // The stream is a slow consumer that stopped reading: drop the connection.
            _ = opened.watch.aborted() => false,
        };
        let Opened { tcp, body, watch } = opened;
        // Unregisters the stream (its unwritten notifications go to FCM), then counts how it
        // ended.
        drop(body);
        watch.finish(clean, &hub);
        drop((tcp, guard));
    }
}

/// What the writer waits for.
enum Next {
    Batch(Bytes),
    /// The server ended the stream and it is drained.
    End,
    /// The client closed its side.
    ClientGone,
}

/// Writes the response head and the stream's batches as chunks. True when it ended in an
/// orderly way (the server ended it, or the client closed).
async fn pump(tcp: &mut TcpStream, body: &mut SseBody) -> bool {
    let mut head = Some(response_head());
    loop {
        let next = match next(tcp, body).await {
            Ok(next) => next,
            Err(_) => return false,
        };
        let batch = match next {
            Next::Batch(batch) => batch,
            Next::ClientGone => return true,
            Next::End => {
                // The head too, if the stream ended before its first write (replaced at once).
                let head = head.take().unwrap_or_default();
                let mut last = [IoSlice::new(&head), IoSlice::new(b"0\r\n\r\n")];
                return write_all(tcp, &mut last).await.is_ok();
            }
        };
        let mut size = [0u8; 20];
        let size_len = {
            let mut w = &mut size[..];
            let _ = write!(w, "{:x}\r\n", batch.len());
            20 - w.len()
        };
        let head_bytes = head.take().unwrap_or_default();
        let mut slices = [
            IoSlice::new(&head_bytes),
            IoSlice::new(&size[..size_len]),
            IoSlice::new(&batch),
            IoSlice::new(b"\r\n"),
        ];
        if write_all(tcp, &mut slices).await.is_err() {
            return false;
        }
    }
}

/// The next batch to write, or how the stream ended. A client of an SSE stream sends nothing
/// after its request, so a readable socket means it closed (or broke); stray bytes are dropped.
/// The socket is checked first: what is queued for a client that left goes to FCM instead.
async fn next(tcp: &TcpStream, body: &mut SseBody) -> io::Result<Next> {
    poll_fn(|cx| {
        while tcp.poll_read_ready(cx)?.is_ready() {
            let mut sink = [0u8; 64];
            match tcp.try_read(&mut sink) {
                Ok(0) => return Poll::Ready(Ok(Next::ClientGone)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Pin::new(&mut *body).poll_frame(cx).map(|frame| {
            Ok(match frame.and_then(|f| f.ok()?.into_data().ok()) {
                Some(batch) => Next::Batch(batch),
                None => Next::End,
            })
        })
    })
    .await
}

async fn write_all(tcp: &mut TcpStream, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        let n = tcp.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

fn response_head() -> Vec<u8> {
    let mut head = Vec::with_capacity(192);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in STREAM_HEADERS {
        push_header(&mut head, name.as_bytes(), value.as_bytes());
    }
    push_header(&mut head, b"transfer-encoding", b"chunked");
    finish_head(&mut head);
    head
}

/// Answers the route's error, as hyper would, and closes.
async fn write_error(tcp: &mut TcpStream, e: ApiError) -> io::Result<()> {
    let (parts, body) = e.into_response().into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    let _ = write!(out, "HTTP/1.1 {}\r\n", parts.status);
    for (name, value) in &parts.headers {
        push_header(&mut out, name.as_str().as_bytes(), value.as_bytes());
    }
    push_header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    finish_head(&mut out);
    out.extend_from_slice(&body);
    tcp.write_all(&out).await?;
    tcp.shutdown().await
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The connection ends with the response: a stream is its connection's last request.
fn finish_head(out: &mut Vec<u8>) {
    push_header(out, b"connection", b"close");
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    push_header(out, b"date", date.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(head: &str) -> ParsedHead {
        parse_head(head.as_bytes())
    }

    #[test]
    fn takes_plain_stream_requests_only() {
        let ParsedHead::Stream { uri, headers } = parse(
            "GET /v1/events?topics=a,b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n",
        ) else {
            panic!("a plain stream request")
        };
        assert_eq!(uri.query(), Some("topics=a,b"));
        assert_eq!(headers["authorization"], "Bearer t");
        assert!(matches!(
            parse("GET /v1/events HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            ParsedHead::Stream { .. }
        ));
        for other in [
            "GET /v1/events HTTP/1.0\r\n\r\n",
            "GET /v1/eventsx HTTP/1.1\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nOrigin: https://a.example\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nContent-Length: 3\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "GET /v1/events HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert!(matches!(parse(other), ParsedHead::Other), "{other}");
        }
    }

    #[test]
    fn a_head_is_partial_until_complete_or_too_long() {
        assert!(matches!(parse("G"), ParsedHead::Partial));
        assert!(matches!(
            parse("GET /v1/events HTTP/1.1\r\nHost: x\r\n"),
            ParsedHead::Partial
        ));
        assert!(matches!(
            parse("POST /v1/notify HTTP/1.1\r\n"),
            ParsedHead::Partial
        ));
        assert!(matches!(
            parse("POST /v1/notify HTTP/1.1\r\nHost: x\r\n\r\n{"),
            ParsedHead::Other
        ));
        let long = format!("GET /v1/events HTTP/1.1\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert!(matches!(parse(&long), ParsedHead::Other));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET /v1/events HTTP/1.1\r\n{many}\r\n");
        assert!(
            matches!(parse(&many), ParsedHead::Other),
            "too many headers: hyper's"
        );
    }

    #[test]
    fn a_complete_stream_head_past_the_limit_goes_to_hyper_for_its_431() {
        let long = format!(
            "GET /v1/events HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert!(matches!(parse(&long), ParsedHead::Other));
        let at_limit = format!(
            "GET /v1/events HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD - 32)
        );
        assert_eq!(at_limit.len(), MAX_HEAD);
        assert!(matches!(parse(&at_limit), ParsedHead::Stream { .. }));
    }

    /// Runs `pump` for a stream the test has ended, and returns what the client read.
    async fn pumped(end: impl FnOnce(&crate::streams::Stream)) -> String {
        use tokio::io::AsyncReadExt;
        let (hub, _fallbacks) = crate::streams::test_hub();
        let stream = hub
            .open(crate::streams::OpenRequest {
                user: "u".into(),
                device_id: None,
                topics: Vec::new(),
                ack: false,
                expires_at: u64::MAX,
                preload: Vec::new(),
            })
            .await
            .unwrap();
        end(&stream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        let (mut client, (mut server, _)) = (client.unwrap(), accepted.unwrap());
        let mut body = SseBody::new(stream, hub, None);
        assert!(pump(&mut server, &mut body).await, "an orderly end");
        drop(server);
        let mut got = String::new();
        client.read_to_string(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn writes_the_queue_as_chunks_then_the_last_chunk() {
        let got = pumped(|s| {
            s.end(
                crate::metrics::DisconnectReason::Shutdown,
                Some(Bytes::from_static(b"event: shutdown\n\n")),
                false,
            );
        })
        .await;
        let body = got.split_once("\r\n\r\n").unwrap().1;
        assert_eq!(
            body, "1e\r\nretry: 1000\n\nevent: shutdown\n\n\r\n0\r\n\r\n",
            "{got}"
        );
    }

    #[tokio::test]
    async fn a_stream_ended_before_its_first_write_still_gets_its_head() {
        let got = pumped(|s| {
            s.end(crate::metrics::DisconnectReason::Replaced, None, true);
        })
        .await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\n0\r\n\r\n"), "{got}");
    }

    #[test]
    fn heads_name_their_framing() {
        let head = String::from_utf8(response_head()).unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
        assert!(head.contains("transfer-encoding: chunked\r\n"));
        assert!(head.contains("connection: close\r\n"));
        assert!(head.ends_with("\r\n\r\n"));
    }
}
