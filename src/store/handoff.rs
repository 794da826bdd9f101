//! How writes reach the writer thread: a queue under a lock, and a condition the thread sleeps
//! on. Unlike a channel, handing over a write wakes the thread only when it waits for one:
//! while it lingers over lazy writes, more lazy writes join the queue and wake nobody (at a
//! low rate, that wake-up was most of what a lazy write cost), and the first write somebody
//! waits for still ends the lingering at once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::writer::{Reply, WRITE_BATCH};
use super::Write;

/// What the writer thread is doing, as far as a caller handing over a write cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// Sleeping until any write comes.
    Waiting,
    /// Sleeping until the linger ends or a write somebody waits for comes.
    Lingering,
    /// Applying a batch: it looks at the queue again when done.
    Working,
    /// Gone: nothing more is taken.
    Stopped,
}

struct Queue {
    writes: VecDeque<(Write, Reply)>,
    writer: Writer,
    senders: usize,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

/// The callers' side; the thread stops once every clone is dropped and the queue is empty.
pub(super) struct Sender(Arc<Shared>);

/// The writer thread's side.
pub(super) struct Receiver(Arc<Shared>);

pub(super) fn handoff() -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue {
            writes: VecDeque::new(),
            writer: Writer::Working,
            senders: 1,
        }),
        wake: Condvar::new(),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Clone for Sender {
    fn clone(&self) -> Sender {
        self.0.queue.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        let last = {
            let mut q = self.0.queue.lock();
            q.senders -= 1;
            q.senders == 0
        };
        if last {
            self.0.wake.notify_one();
        }
    }
}

impl Sender {
    /// Queues `write`; gives the reply back when the thread is gone.
    pub(super) fn send(&self, write: Write, reply: Reply) -> Result<(), Reply> {
        let wake = {
            let mut q = self.0.queue.lock();
            let wake = match q.writer {
                Writer::Stopped => return Err(reply),
                Writer::Waiting => true,
                Writer::Lingering => !write.is_lazy(),
                Writer::Working => false,
            };
            q.writes.push_back((write, reply));
            wake
        };
        if wake {
            self.0.wake.notify_one();
        }
        Ok(())
    }
}

impl Receiver {
    /// The next batch, in call order: what waits, up to `WRITE_BATCH`. When all of it is lazy,
    /// it waits up to `linger` for company, and no longer than the first write that is not.
    /// False once every sender is gone and nothing is left.
    pub(super) fn next_batch(
        &self,
        linger: std::time::Duration,
        batch: &mut Vec<(Write, Reply)>,
    ) -> bool {
        let mut q = self.0.queue.lock();
        while q.writes.is_empty() {
            if q.senders == 0 {
                return false;
            }
            q.writer = Writer::Waiting;
            self.0.wake.wait(&mut q);
        }
        let mut lazy = take(&mut q.writes, batch);
        if lazy {
            let until = Instant::now() + linger;
            q.writer = Writer::Lingering;
            while lazy && batch.len() < WRITE_BATCH && q.senders > 0 {
                let timed_out = self.0.wake.wait_until(&mut q, until).timed_out();
                lazy = take(&mut q.writes, batch);
                if timed_out {
                    break;
                }
            }
        }
        q.writer = Writer::Working;
        true
    }
}

/// Moves what waits into `batch`, up to `WRITE_BATCH`; true when all it moved is lazy.
fn take(writes: &mut VecDeque<(Write, Reply)>, batch: &mut Vec<(Write, Reply)>) -> bool {
    let (start, room) = (batch.len(), WRITE_BATCH.saturating_sub(batch.len()));
    batch.extend(writes.drain(..room.min(writes.len())));
    batch[start..].iter().all(|(w, _)| w.is_lazy())
}

impl Drop for Receiver {
    /// Whatever is still queued hears that the writer stopped (the thread ended or panicked).
    fn drop(&mut self) {
        let left = {
            let mut q = self.0.queue.lock();
            q.writer = Writer::Stopped;
            std::mem::take(&mut q.writes)
        };
        for (_, reply) in left {
            reply.send(Err(super::StoreError::WriterStopped));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;
    use crate::store::StoreError;

    fn keep(lazy: bool) -> Write {
        Write::Keep {
            rows: Vec::new(),
            max_per_user: 1,
            lazy,
        }
    }

    fn ignored() -> Reply {
        Reply::Then(Box::new(|_| {}))
    }

    fn lazy_flags(batch: &[(Write, Reply)]) -> Vec<bool> {
        batch.iter().map(|(w, _)| w.is_lazy()).collect()
    }

    #[test]
    fn lazy_writes_wait_for_company_until_one_somebody_waits_for_comes() {
        let (tx, rx) = handoff();
        tx.send(keep(true), ignored()).map_err(drop).unwrap();
        let writer = std::thread::spawn(move || {
            let mut batch = Vec::new();
            let started = Instant::now();
            assert!(rx.next_batch(Duration::from_secs(30), &mut batch));
            (lazy_flags(&batch), started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        tx.send(keep(true), ignored()).map_err(drop).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        tx.send(keep(false), ignored()).map_err(drop).unwrap();
        let (flags, waited) = writer.join().unwrap();
        assert_eq!(
            flags,
            [true, true, false],
            "in call order, all in one batch"
        );
        assert!(
            waited < Duration::from_secs(10),
            "the eager write ended the linger: {waited:?}"
        );
    }

    #[test]
    fn a_lazy_batch_goes_once_its_linger_is_over() {
        let (tx, rx) = handoff();
        tx.send(keep(true), ignored()).map_err(drop).unwrap();
        let mut batch = Vec::new();
        let started = Instant::now();
        assert!(rx.next_batch(Duration::from_millis(50), &mut batch));
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(lazy_flags(&batch), [true]);
        drop(tx);
        batch.clear();
        assert!(!rx.next_batch(Duration::from_millis(50), &mut batch));
    }

    #[test]
    fn writes_after_the_writer_is_gone_hear_that_it_stopped() {
        let (tx, rx) = handoff();
        let stopped = std::sync::Arc::new(AtomicUsize::new(0));
        let count = |stopped: &std::sync::Arc<AtomicUsize>| {
            let stopped = stopped.clone();
            Reply::Then(Box::new(move |r| {
                if matches!(r, Err(StoreError::WriterStopped)) {
                    stopped.fetch_add(1, Ordering::Relaxed);
                }
            }))
        };
        tx.send(keep(false), count(&stopped)).map_err(drop).unwrap();
        drop(rx);
        assert_eq!(stopped.load(Ordering::Relaxed), 1, "the queued write");
        let Err(reply) = tx.send(keep(false), count(&stopped)) else {
            panic!("a write after the writer stopped is refused");
        };
        reply.send(Err(StoreError::WriterStopped));
        assert_eq!(stopped.load(Ordering::Relaxed), 2);
    }
}
