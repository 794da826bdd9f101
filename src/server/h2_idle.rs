//! What hyper's HTTP/2 server does not do itself: closing a connection that has no open
//! stream. A request counts as open from its arrival until its response body is done or
//! dropped (an SSE stream stays open for its whole life).

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

use crate::metrics::ConnTimeout;

/// The open streams of one connection.
#[derive(Default)]
pub struct OpenStreams {
    open: AtomicUsize,
    /// Signalled on every open and close; a signal while nobody waits is kept for the next wait.
    changed: Notify,
}

/// One open stream; it closes when this drops.
pub struct StreamGuard(Arc<OpenStreams>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_one();
    }
}

impl OpenStreams {
    pub fn open(self: &Arc<Self>) -> StreamGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.changed.notify_one();
        StreamGuard(self.clone())
    }

    /// Resolves once the connection has had no open stream for `first` (from now, before its
    /// first stream: a `Header` timeout) or for `then` (after a stream closed: `Idle`).
    pub async fn idle(&self, first: Duration, then: Duration) -> ConnTimeout {
        let (mut wait, mut kind) = (first, ConnTimeout::Header);
        loop {
            if self.open.load(Ordering::Relaxed) == 0 {
                let quiet = tokio::time::timeout(wait, self.changed.notified()).await;
                if quiet.is_err() && self.open.load(Ordering::Relaxed) == 0 {
                    return kind;
                }
            } else {
                self.changed.notified().await;
            }
            (wait, kind) = (then, ConnTimeout::Idle);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its stream open until it is done or dropped.
    pub struct Counted<B> {
        #[pin]
        body: B,
        guard: Option<StreamGuard>,
    }
}

impl<B> Counted<B> {
    pub fn new(body: B, guard: StreamGuard) -> Counted<B> {
        Counted {
            body,
            guard: Some(guard),
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Counted<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let frame = this.body.poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            this.guard.take();
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_is_idle_only_while_no_stream_is_open() {
        let streams = Arc::new(OpenStreams::default());
        let first = Duration::from_millis(100);
        let then = Duration::from_millis(300);
        let started = tokio::time::Instant::now();
        assert_eq!(streams.idle(first, then).await, ConnTimeout::Header);
        let took = started.elapsed();
        assert!(
            took >= first && took < then,
            "never used: the first deadline ({took:?})"
        );

        let guard = streams.open();
        let idle = tokio::spawn({
            let streams = streams.clone();
            async move { streams.idle(first, then).await }
        });
        tokio::time::sleep(3 * then).await;
        assert!(!idle.is_finished(), "a stream is open");
        let closed = tokio::time::Instant::now();
        drop(guard);
        assert_eq!(idle.await.unwrap(), ConnTimeout::Idle);
        let took = closed.elapsed();
        assert!(
            took >= then && took < 2 * then,
            "idle from the last close ({took:?})"
        );
    }
}
