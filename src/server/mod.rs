//! The accept loop and the connection edge: one task per TCP connection, tracked for graceful
//! shutdown, within the node's connection cap. A connection's first request head (HTTP/2: its
//! preface) is read under `server.header_timeout_secs`; one that opens with a plain
//! `GET /v1/events` is answered by `http::events_h1` on the socket itself (the memory of an idle
//! stream); every other one by hyper (HTTP/1.1, and HTTP/2 with prior knowledge), which also
//! tells how its streams ended. A connection with nothing in flight is closed after
//! `server.idle_timeout_secs`; a stream is in flight for its whole life.

mod admission;
mod h2_idle;
pub mod opening;

use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ServerConfig;
use crate::http::events_h1::{self, MAX_HEAD};
use crate::http::AppState;
use crate::metrics::ConnTimeout;
use crate::streams::ConnWatch;
use admission::{Admission, Slot};
use h2_idle::{Counted, OpenStreams};
use opening::{read_opening, Opening, Rewind};

/// Pending connections the kernel may hold before accept (capped by `net.core.somaxconn`).
/// tokio's default of 128 overflows when thousands of clients reconnect at once (a node
/// restart), and each dropped SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

/// How long an idle HTTP/2 connection told to go away may take to finish before it is dropped
/// (its peer may never answer the GOAWAY's PING).
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

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
    let cfg = &state.config.server;
    let admission = Admission::new(
        cfg.max_connections,
        state.metrics.connections.clone(),
        state.metrics.connections_refused.clone(),
    );
    let shared = Arc::new(Shared {
        h1: h1_builder(cfg),
        h2: h2_builder(cfg),
        header_timeout: Duration::from_secs(cfg.header_timeout_secs),
        idle_timeout: Duration::from_secs(cfg.idle_timeout_secs),
        app,
        state,
    });
    loop {
        let (tcp, peer) = tokio::select! {
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
        let Some(slot) = admission.admit() else {
            admission.refuse(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let conn = Conn {
            tcp,
            peer,
            _slot: slot,
        };
        tokio::spawn(serve_connection(
            conn,
            shared.clone(),
            graceful.watcher(),
            stop.clone(),
        ));
    }
}

/// HTTP/1: hyper's header-read timer starts when a connection goes idle after a response and
/// runs until the next head is complete, so it is the keep-alive idle timeout (the first head
/// was read under the header timeout before hyper got the connection).
fn h1_builder(cfg: &ServerConfig) -> http1::Builder {
    let mut h1 = http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.idle_timeout_secs))
        .max_header_size(MAX_HEAD)
        .keep_alive(true);
    h1
}

fn h2_builder(cfg: &ServerConfig) -> http2::Builder<TokioExecutor> {
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(1024)
        .max_header_list_size(MAX_HEAD as u32);
    if cfg.h2_keepalive_interval_secs > 0 {
        h2.keep_alive_interval(Duration::from_secs(cfg.h2_keepalive_interval_secs))
            .keep_alive_timeout(Duration::from_secs(cfg.h2_keepalive_timeout_secs));
    }
    h2
}

/// What every connection needs.
struct Shared {
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    header_timeout: Duration,
    idle_timeout: Duration,
    app: Router,
    state: AppState,
}

/// An accepted connection, holding its slot under the cap until it drops.
struct Conn {
    tcp: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
}

/// The share of `server.header_timeout_secs` a connection's head deadline may fall short of it.
const HEAD_DEADLINE_SPREAD: f64 = 0.25;

/// A connection's deadline for its first head: drawn between 75 % and 100 % of the header
/// timeout, so that connections opened in one burst (a flood, a reconnect storm behind a NAT)
/// are not all closed in the same instant, and their peers do not all reconnect in the next.
fn head_deadline(header_timeout: Duration) -> Duration {
    header_timeout.mul_f64(1.0 - rand::random_range(0.0..HEAD_DEADLINE_SPREAD))
}

/// Serves one connection to its end. Its task is kept small for a stream (the reader and the
/// hyper paths are boxed): what an idle stream costs is mostly this task.
async fn serve_connection(
    mut conn: Conn,
    shared: Arc<Shared>,
    watcher: Watcher,
    stop: CancellationToken,
) {
    let opened = tokio::select! {
        _ = stop.cancelled() => return,
        opened = tokio::time::timeout(head_deadline(shared.header_timeout), Box::pin(read_opening(&mut conn.tcp))) => opened,
    };
    let opening = match opened {
        Ok(Ok(opening)) => opening,
        // Closed or broken before its head.
        Ok(Err(_)) => return,
        Err(_) => {
            shared.state.metrics.conn_timeout(ConnTimeout::Header);
            return;
        }
    };
    match opening {
        Opening::Stream { uri, headers } => {
            let Conn {
                tcp,
                peer,
                _slot: slot,
            } = conn;
            let opening = events_h1::open_stream(tcp, uri, headers, peer.ip(), &shared.state);
            let Some(opened) = Box::pin(opening).await else {
                return;
            };
            // The stream lives on in a task of its own, sized for the stream alone (this one
            // is sized for reading any opening and serving any connection): an idle stream's
            // memory is mostly its task. The slot and the watcher go with it: the stream
            // counts under the cap, and a graceful shutdown waits for it.
            let hub = shared.state.hub.clone();
            tokio::spawn(events_h1::hold(opened, hub, (slot, watcher)));
        }
        Opening::Http1(read) => Box::pin(serve_h1(conn, read, shared, watcher)).await,
        Opening::Http2(read) => Box::pin(serve_h2(conn, read, shared, watcher, stop)).await,
    }
}

/// Serves an HTTP/1 connection with hyper, `read` first. hyper's HTTP/1 server is used directly
/// rather than its auto-detecting one, whose version probe leaves each connection a 16 KiB read
/// buffer.
async fn serve_h1(conn: Conn, read: bytes::Bytes, shared: Arc<Shared>, watcher: Watcher) {
    let watch = Arc::new(ConnWatch::default());
    let service = {
        let (watch, app, peer) = (watch.clone(), shared.app.clone(), conn.peer);
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(watch.clone());
            req.extensions_mut().insert(ConnectInfo(peer));
            app.clone().oneshot(req)
        })
    };
    let io = Rewind::new(read, conn.tcp);
    let serving = watcher.watch(shared.h1.serve_connection(io, service));
    let hub = &shared.state.hub;
    let outcome = tokio::select! {
        r = serving => r,
        // A stream on it was a slow consumer that stopped reading: drop the connection.
        _ = watch.aborted() => {
            watch.finish(false, hub);
            return;
        }
    };
    watch.finish(ended_cleanly(outcome, &shared, ConnTimeout::Idle), hub);
}

/// Serves an HTTP/2 connection with hyper, `read` (the preface and what followed) first. A
/// connection with no open stream goes away after the header timeout if it never opened one,
/// after the idle timeout otherwise.
async fn serve_h2(
    conn: Conn,
    read: bytes::Bytes,
    shared: Arc<Shared>,
    watcher: Watcher,
    stop: CancellationToken,
) {
    let streams = Arc::new(OpenStreams::default());
    let service = {
        let (streams, app, peer) = (streams.clone(), shared.app.clone(), conn.peer);
        hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
            let open = streams.open();
            req.extensions_mut().insert(ConnectInfo(peer));
            let response = app.clone().oneshot(req);
            async move {
                Ok::<_, std::convert::Infallible>(
                    response.await?.map(|body| Counted::new(body, open)),
                )
            }
        })
    };
    let io = Rewind::new(read, conn.tcp);
    let mut serving = pin!(shared.h2.serve_connection(io, service));
    let idle = streams.idle(head_deadline(shared.header_timeout), shared.idle_timeout);
    let outcome = tokio::select! {
        r = serving.as_mut() => r,
        _ = stop.cancelled() => {
            serving.as_mut().graceful_shutdown();
            serving.await
        }
        kind = idle => {
            shared.state.metrics.conn_timeout(kind);
            serving.as_mut().graceful_shutdown();
            tokio::time::timeout(GOAWAY_GRACE, serving).await.unwrap_or(Ok(()))
        }
    };
    // HTTP/2 streams tell their own ends; what is left to count is a PING timeout.
    ended_cleanly(outcome, &shared, ConnTimeout::Ping);
    // Held until here: a graceful shutdown waits for the connection.
    drop(watcher);
}

/// True when the connection ended in an orderly way; counts a timeout hyper enforced as `kind`.
fn ended_cleanly(outcome: Result<(), hyper::Error>, shared: &Shared, kind: ConnTimeout) -> bool {
    match outcome {
        Ok(()) => true,
        // The client closed its side while a response (a stream) was still going:
        // that is how an SSE client leaves.
        Err(e) if e.is_incomplete_message() => true,
        Err(e) if e.is_timeout() => {
            shared.state.metrics.conn_timeout(kind);
            true
        }
        Err(e) => {
            tracing::debug!(error = %e, "connection broke");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_deadlines_spread_over_the_last_quarter_of_the_header_timeout() {
        let timeout = Duration::from_secs(10);
        let drawn: Vec<Duration> = (0..1000).map(|_| head_deadline(timeout)).collect();
        assert!(drawn
            .iter()
            .all(|d| *d > timeout.mul_f64(0.75) && *d <= timeout));
        let (min, max) = (drawn.iter().min().unwrap(), drawn.iter().max().unwrap());
        assert!(
            *max - *min > Duration::from_secs(2),
            "spread {min:?}..{max:?}"
        );
    }
}
