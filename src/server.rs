//! The accept loop: one hyper connection task per TCP connection (HTTP/1.1, and HTTP/2 with
//! prior knowledge), each tracked for graceful shutdown and for telling how its streams ended.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::streams::{ConnWatch, Hub};

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
    hub: Arc<Hub>,
    stop: CancellationToken,
    graceful: &GracefulShutdown,
) {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new()).max_concurrent_streams(1024);
    let protocols = Arc::new(Protocols { h1, h2 });
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
            protocols.clone(),
            app.clone(),
            hub.clone(),
            graceful.watcher(),
            stop.clone(),
        ));
    }
}

/// The connection settings, shared by every connection.
struct Protocols {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
}

/// Serves one connection to its end. The HTTP/1 connection is served by hyper's HTTP/1 server
/// directly rather than its auto-detecting one, whose version probe leaves each connection a
/// 16 KiB read buffer (hyper's is 8 KiB) and whose connection future has room for an HTTP/2
/// connection: an idle stream costs several KiB less.
async fn serve_connection(
    tcp: TcpStream,
    protocols: Arc<Protocols>,
    app: Router,
    hub: Arc<Hub>,
    watcher: Watcher,
    stop: CancellationToken,
) {
    let http2 = tokio::select! {
        _ = stop.cancelled() => return,
        probe = tokio::time::timeout(HEADER_READ_TIMEOUT, opens_with_h2_preface(&tcp)) => {
            match probe {
                Ok(Ok(http2)) => http2,
                Ok(Err(_)) | Err(_) => return,
            }
        }
    };
    let watch = Arc::new(ConnWatch::default());
    let service = {
        let watch = watch.clone();
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(watch.clone());
            app.clone().oneshot(req)
        })
    };
    let io = TokioIo::new(tcp);
    let serving = async {
        if http2 {
            // Rare here: boxed, so that its larger state does not size every connection's task.
            Box::pin(watcher.watch(protocols.h2.serve_connection(io, service))).await
        } else {
            watcher
                .watch(protocols.h1.serve_connection(io, service))
                .await
        }
    };
    let outcome = tokio::select! {
        r = serving => r,
        // A stream on it was a slow consumer that stopped reading: drop the connection.
        _ = watch.aborted() => {
            watch.finish(false, &hub);
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
    watch.finish(clean, &hub);
}

/// Whether the client's first bytes are the HTTP/2 preface (HTTP/2 with prior knowledge);
/// reads nothing off the socket.
async fn opens_with_h2_preface(tcp: &TcpStream) -> io::Result<bool> {
    let mut buf = [0; H2_PREFACE.len()];
    loop {
        let n = tcp.peek(&mut buf).await?;
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        // Only part of the preface has arrived: the socket stays readable, so wait a little.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
