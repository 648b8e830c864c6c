//! Where stored bodies are compressed: a few threads of their own, one fewer than the cores
//! (at least one), so compressions never take every core from the request threads. A
//! compression that finds every thread busy is not queued behind another object's: the
//! request is answered with the identity body at once, and the object is compressed by a
//! later request. Each compression also holds its working memory (the output, at most the
//! input, and the coder's state) against the node's fill budget, so a burst of large bodies
//! cannot grow the process past its memory: beyond it, identity too.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub(crate) struct Pool {
    jobs: mpsc::SyncSender<Job>,
    threads: usize,
    /// Compressions running or handed to a thread.
    busy: Arc<AtomicUsize>,
}

impl Pool {
    /// A pool sized for this machine: one thread fewer than its cores, at least one.
    pub(crate) fn for_this_machine() -> Arc<Self> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores.saturating_sub(1).max(1))
    }

    pub(crate) fn new(threads: usize) -> Arc<Self> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(std::sync::Mutex::new(queue));
        for i in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("outpost-compress-{i}"))
                .spawn(move || {
                    loop {
                        // The lock is held only to take the next job.
                        let job = crate::locks::lock(&queue).recv();
                        let Ok(job) = job else { return };
                        // A coder that panics on some input costs that one answer (its
                        // request gets identity), not the thread.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                            tracing::warn!(
                                "a compression panicked; its response is sent uncompressed"
                            );
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "a compression thread could not be started");
            }
        }
        Arc::new(Self {
            jobs,
            threads,
            busy: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Run `work` on a pool thread, unless every one is busy (`None`: answer without it).
    pub(crate) fn try_run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Option<oneshot::Receiver<T>> {
        let taken = self
            .busy
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |busy| {
                (busy < self.threads).then_some(busy + 1)
            })
            .is_ok();
        if !taken {
            return None;
        }
        let (done, result) = oneshot::channel();
        let held = Held(self.busy.clone());
        let job: Job = Box::new(move || {
            let out = work();
            // Free before the result is seen: the request that waited may compress the next
            // form at once. (Dropped on a panic too.)
            drop(held);
            let _ = done.send(out);
        });
        if self.jobs.try_send(job).is_err() {
            // No thread (none could be started): as busy. The job's `Held` is dropped with it.
            return None;
        }
        Some(result)
    }

    /// How many compressions run now.
    #[cfg(test)]
    fn busy(&self) -> usize {
        self.busy.load(Ordering::Acquire)
    }
}

/// One compression's place among the threads, given back when dropped.
struct Held(Arc<AtomicUsize>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_beyond_the_threads_is_refused_not_queued() {
        let pool = Pool::new(1);
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let first = pool.try_run(move || {
            let _ = hold.recv();
            1
        });
        assert!(first.is_some());
        assert!(pool.try_run(|| 2).is_none(), "the one thread is busy");
        release.send(()).expect("release");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        assert_eq!(runtime.block_on(first.expect("first")).ok(), Some(1));
        // Free again as soon as the first's result is seen.
        let again = pool.try_run(|| 3).expect("free again");
        assert_eq!(runtime.block_on(again).ok(), Some(3));
        assert_eq!(pool.busy(), 0);
    }

    #[test]
    fn a_panicking_job_gives_its_place_and_its_thread_back() {
        let pool = Pool::new(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let failed = pool
            .try_run(|| -> u32 { panic!("a coder failed") })
            .expect("a thread");
        assert!(runtime.block_on(failed).is_err(), "no result");
        assert_eq!(pool.busy(), 0);
        let again = pool.try_run(|| 4).expect("the thread is still there");
        assert_eq!(runtime.block_on(again).ok(), Some(4));
    }
}
