//! The HTTP side of a stream: a response body that writes the stream's queue, and the
//! per-connection watch that tells an orderly client close from a broken connection.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use super::{Hub, Stream};
use crate::metrics::DisconnectReason;

/// Streams of one HTTP/1 connection that ended without the server ending them. hyper drops a
/// response body both when the client closes and when a write fails; the connection's own
/// outcome, known a moment later, says which.
#[derive(Default)]
pub struct ConnWatch {
    deferred: AtomicU32,
    /// Signalled to drop the connection (its stream is a slow consumer that stopped reading:
    /// hyper would otherwise wait forever to flush what it holds).
    abort: tokio::sync::Notify,
}

impl ConnWatch {
    pub fn abort(&self) {
        self.abort.notify_one();
    }

    pub async fn aborted(&self) {
        self.abort.notified().await
    }

    pub fn defer_disconnect(&self) {
        self.deferred.fetch_add(1, Ordering::Relaxed);
    }

    /// The connection ended: `clean` when it closed in an orderly way.
    pub fn finish(&self, clean: bool, hub: &Hub) {
        let n = self.deferred.swap(0, Ordering::Relaxed);
        let reason = if clean {
            DisconnectReason::ClientClosed
        } else {
            DisconnectReason::WriteError
        };
        for _ in 0..n {
            hub.metrics().disconnect(reason);
        }
    }
}

pub struct SseBody {
    stream: Arc<Stream>,
    hub: Arc<Hub>,
    conn: Option<Arc<ConnWatch>>,
}

impl SseBody {
    pub fn new(stream: Arc<Stream>, hub: Arc<Hub>, conn: Option<Arc<ConnWatch>>) -> SseBody {
        if let Some(c) = &conn {
            stream.set_conn(c.clone());
        }
        SseBody { stream, hub, conn }
    }
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let (hub, stream) = (&self.hub, &self.stream);
        stream
            .poll_batch(cx, |n| hub.written(stream, n))
            .map(|batch| batch.map(|b| Ok(Frame::data(b))))
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.hub.close(&self.stream, self.conn.as_deref());
    }
}
