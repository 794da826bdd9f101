//! The accept loop: one hyper connection task per TCP connection (HTTP/1.1, and HTTP/2 with
//! prior knowledge), each tracked for graceful shutdown and for telling how its streams ended.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::streams::{ConnWatch, Hub};

/// Pending connections the kernel may hold before accept (capped by `net.core.somaxconn`).
/// tokio's default of 128 overflows when thousands of clients reconnect at once (a node
/// restart), and each dropped SYN costs its client a one-second retransmit.
const LISTEN_BACKLOG: u32 = 4096;

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
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1024);
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
        let watch = Arc::new(ConnWatch::default());
        let service = {
            let app = app.clone();
            let watch = watch.clone();
            hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(watch.clone());
                app.clone().oneshot(req)
            })
        };
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn.into_owned());
        let hub = hub.clone();
        tokio::spawn(async move {
            let clean = match conn.await {
                Ok(()) => true,
                // The client closed its side while a response (a stream) was still going:
                // that is how an SSE client leaves.
                Err(e)
                    if e.downcast_ref::<hyper::Error>()
                        .is_some_and(|h| h.is_incomplete_message()) =>
                {
                    true
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connection broke");
                    false
                }
            };
            watch.finish(clean, &hub);
        });
    }
}
