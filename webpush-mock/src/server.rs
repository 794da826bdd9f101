//! The accept loop: every connection is served by hyper-util's auto builder, so one port speaks
//! HTTP/1.1 and HTTP/2 with prior knowledge (h2c), as push services speak both (over TLS).
//! [`MockHandle`] stops it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::post;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::state::{Config, MockState};
use crate::{control, push};

/// A running mock. Dropping it stops the server as [`MockHandle::shutdown`] does, without waiting.
#[must_use = "the mock stops when its handle is dropped"]
pub struct MockHandle {
    /// Where the mock listens.
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

    /// `http://IP:PORT`, where the mock listens (`/push/...`, `/_mock/...`).
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

/// Serves the mock on an already-bound listener with the default [`Config`] (any VAPID key).
pub async fn spawn(listener: TcpListener) -> anyhow::Result<MockHandle> {
    spawn_with(listener, Config::default()).await
}

/// [`spawn`] with explicit settings.
pub async fn spawn_with(listener: TcpListener, config: Config) -> anyhow::Result<MockHandle> {
    let addr = listener
        .local_addr()
        .context("the listener has no local address")?;
    let base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let state = Arc::new(MockState::new(base_url, config));
    let (stop, stopped) = oneshot::channel();
    let task = tokio::spawn(accept_loop(listener, app(state), stopped));
    Ok(MockHandle {
        addr,
        stop: Some(stop),
        task: Some(task),
    })
}

/// Every route of the mock.
fn app(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/push/{id}", post(push::push))
        .merge(control::routes())
        .with_state(state)
}

async fn accept_loop(listener: TcpListener, app: Router, mut stopped: oneshot::Receiver<()>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    // Owning the connection tasks here means they are aborted when this loop ends.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, app.clone(), builder.clone()));
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
