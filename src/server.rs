//! The accept loop: one hyper connection task per TCP connection (HTTP/1.1, and HTTP/2 with
//! prior knowledge), each tracked for graceful shutdown and for telling how its streams ended.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::streams::{ConnWatch, Hub};

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
            let outcome = tokio::select! {
                r = conn => r,
                _ = watch.aborted() => {
                    watch.finish(false, &hub);
                    return;
                }
            };
            let clean = match outcome {
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
