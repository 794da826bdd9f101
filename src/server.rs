//! The accept loop: one task per TCP connection, tracked for graceful shutdown. A connection
//! that opens with `GET /v1/events` is answered by `http::events_h1` on the socket itself (the
//! memory of an idle stream); every other one by hyper (HTTP/1.1, and HTTP/2 with prior
//! knowledge), which also tells how its streams ended.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::http::events_h1::{self, Head, REQUEST_LINE_START};
use crate::http::AppState;
use crate::streams::ConnWatch;

/// Pending connections the kernel may hold before accept (capped by `net.core.somaxconn`).
/// tokio's default of 128 overflows when thousands of clients reconnect at once (a node
/// restart), and each dropped SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// How long a client may take to send its request head (for HTTP/2, its preface).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Binds the listening socket, with `SO_REUSEADDR` so a restarted node can bind again while
/// its previous connections are in TIME_WAIT.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Accepts connections until `stop` fires; connections go on under `graceful`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: AppState,
    stop: CancellationToken,
    graceful: &GracefulShutdown,
) {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new()).max_concurrent_streams(1024);
    let shared = Arc::new(Shared { h1, h2, app, state });
    loop {
        let (tcp, _peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, usually: wait a little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            shared.clone(),
            graceful.watcher(),
            stop.clone(),
        ));
    }
}

/// What every connection needs.
struct Shared {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    app: Router,
    state: AppState,
}

/// How a connection opens.
enum Opening {
    /// The HTTP/2 preface (prior knowledge).
    Http2,
    /// `GET /v1/events`: possibly a stream request for `events_h1`.
    Events,
    /// Anything else: HTTP/1 for hyper.
    Http1,
}

/// Serves one connection to its end. Its task is kept small for a stream (the hyper paths are
/// boxed): what an idle stream costs is mostly this task.
async fn serve_connection(
    mut tcp: TcpStream,
    shared: Arc<Shared>,
    watcher: Watcher,
    stop: CancellationToken,
) {
    let opening = tokio::select! {
        _ = stop.cancelled() => return,
        probe = tokio::time::timeout(HEADER_READ_TIMEOUT, opening(&tcp)) => match probe {
            Ok(Ok(Some(opening))) => opening,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
        }
    };
    let read = match opening {
        Opening::Http2 => None,
        Opening::Http1 => Some(Bytes::new()),
        Opening::Events => {
            let head = tokio::select! {
                _ = stop.cancelled() => return,
                head = tokio::time::timeout(
                    HEADER_READ_TIMEOUT,
                    Box::pin(events_h1::read_head(&mut tcp)),
                ) => head,
            };
            match head {
                Ok(Ok(Some(Head::Stream { uri, headers }))) => {
                    // Held until the stream ends: a graceful shutdown waits for it.
                    let _watcher = watcher;
                    events_h1::serve(tcp, uri, headers, &shared.state).await;
                    return;
                }
                Ok(Ok(Some(Head::Other(read)))) => Some(read),
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    Box::pin(serve_hyper(tcp, read, shared, watcher)).await
}

/// Serves a connection with hyper: HTTP/1 when `read` holds what was already read of it
/// (possibly nothing), HTTP/2 otherwise. hyper's HTTP/1 server is used directly rather than its
/// auto-detecting one, whose version probe leaves each connection a 16 KiB read buffer.
async fn serve_hyper(tcp: TcpStream, read: Option<Bytes>, shared: Arc<Shared>, watcher: Watcher) {
    let watch = Arc::new(ConnWatch::default());
    let service = {
        let watch = watch.clone();
        let app = shared.app.clone();
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(watch.clone());
            app.clone().oneshot(req)
        })
    };
    let http2 = read.is_none();
    let io = Rewind {
        read: read.filter(|r| !r.is_empty()),
        io: TokioIo::new(tcp),
    };
    let serving = async {
        if http2 {
            watcher.watch(shared.h2.serve_connection(io, service)).await
        } else {
            watcher.watch(shared.h1.serve_connection(io, service)).await
        }
    };
    let hub = &shared.state.hub;
    let outcome = tokio::select! {
        r = serving => r,
        // A stream on it was a slow consumer that stopped reading: drop the connection.
        _ = watch.aborted() => {
            watch.finish(false, hub);
            return;
        }
    };
    let clean = match outcome {
        Ok(()) => true,
        // The client closed its side while a response (a stream) was still going:
        // that is how an SSE client leaves.
        Err(e) if e.is_incomplete_message() => true,
        Err(e) => {
            tracing::debug!(error = %e, "connection broke");
            false
        }
    };
    watch.finish(clean, hub);
}

/// Tells how a connection opens from its first bytes, reading nothing off the socket; `None`
/// when it closed first.
async fn opening(tcp: &TcpStream) -> io::Result<Option<Opening>> {
    let mut buf = [0; H2_PREFACE.len()];
    loop {
        let n = tcp.peek(&mut buf).await?;
        let seen = &buf[..n];
        if n == 0 {
            return Ok(None);
        }
        if seen == H2_PREFACE {
            return Ok(Some(Opening::Http2));
        }
        let line = REQUEST_LINE_START.len();
        if n > line && seen.starts_with(REQUEST_LINE_START) {
            return Ok(Some(if matches!(seen[line], b' ' | b'?') {
                Opening::Events
            } else {
                Opening::Http1
            }));
        }
        if !H2_PREFACE.starts_with(seen) && !REQUEST_LINE_START.starts_with(seen) {
            return Ok(Some(Opening::Http1));
        }
        // Only the start has arrived: the socket stays readable, so wait a little.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A connection whose first bytes were already read: hyper reads those first.
struct Rewind {
    read: Option<Bytes>,
    io: TokioIo<TcpStream>,
}

impl Read for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut read) = self.read.take() {
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read.split_to(n));
            if !read.is_empty() {
                self.read = Some(read);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
