//! The accept loop: HTTP/2 only (h2c with prior knowledge), as APNs speaks nothing else; an
//! HTTP/1.1 client fails at the connection preface. Each connection gets its own
//! [`Connection`] (its provider token). [`MockHandle`] stops the loop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::any;
use axum::{Extension, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::control;
use crate::push::{self, Connection};
use crate::state::{Config, MockState};

/// A running mock. Dropping it stops the server as [`MockHandle::shutdown`] does, without waiting.
#[must_use = "the mock stops when its handle is dropped"]
pub struct MockHandle {
    addr: SocketAddr,
    /// Tells the accept loop to stop; dropping it does too.
    stop: Option<oneshot::Sender<()>>,
    /// The accept loop, which owns every connection task.
    task: Option<JoinHandle<()>>,
}

impl MockHandle {
    /// The address the mock listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://IP:PORT`, the base URL for both `/3/device/...` and `/_mock/...` (HTTP/2 only).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, closes every connection, and waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves the mock on an already-bound listener.
pub async fn spawn(listener: TcpListener, config: Config) -> anyhow::Result<MockHandle> {
    anyhow::ensure!(
        !config.bundle_ids.is_empty(),
        "at least one bundle id (apns-topic) is required"
    );
    let addr = listener
        .local_addr()
        .context("the listener has no local address")?;
    let state = Arc::new(MockState::new(config));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, state, stopped));
    Ok(MockHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Every route of the mock; the per-connection state is layered on in [`serve`].
fn app(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/3/device/{device_token}", any(push::push))
        .route("/3/device", any(push::push_without_token))
        .route("/3/device/", any(push::push_without_token))
        .merge(control::routes())
        .fallback(push::bad_path)
        .with_state(state)
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<MockState>,
    mut stopped: oneshot::Receiver<()>,
) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()).http2_only());
    let app = app(state.clone());
    // Owning the connection tasks here means they are aborted when this loop ends.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let connection = Arc::new(Connection {
                        id: state.next_connection(),
                        token: Default::default(),
                    });
                    let app = app.clone().layer(Extension(connection));
                    connections.spawn(serve(stream, app, builder.clone()));
                }
                Err(error) => {
                    // Typically EMFILE under load; back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

async fn serve(stream: TcpStream, app: Router, builder: Arc<auto::Builder<TokioExecutor>>) {
    let _ = stream.set_nodelay(true);
    let service = TowerToHyperService::new(app);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%error, "connection ended with an error");
    }
}
