//! Request coalescing: one origin fetch per key at a time, streamed to every waiting client.
//!
//! The first miss for a key becomes the [`Join::Leader`] and starts a fill task that belongs to
//! no client; concurrent misses are [`Join::Follower`]s. Every client — leader included — is a
//! [`Subscriber`] of the [`Fill`], so a client that disconnects cancels nothing.
//!
//! Outcomes a subscriber can see ([`Outcome`]):
//! - `Stream`: response headers, then body chunks as they arrive from the origin;
//! - `Entry`: a complete stored entry (a revalidation answered 304);
//! - `Failed`: the fill failed; every subscriber learns it at once, nobody hangs;
//! - `Released`: the response may not be shared (uncacheable): the leader — the client whose
//!   request it answers — gets it, the others must fetch on their own.
//!
//! Memory: while a fill may be stored, chunks are kept whole (they become the entry's body).
//! Once it is known not to be stored (too large, or exclusive), the buffer is *trimmed*: chunks
//! every live reader has passed are dropped, and the fill waits when readers lag more than a
//! window behind, so a slow client bounds the buffer instead of growing it.

use crate::locks::lock;
use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, watch};

use super::entry::Entry;
use crate::error::ProxyError;

/// Shards of the in-flight map: misses on different keys rarely contend for one lock, and
/// no lock is held across an await.
const SHARDS: usize = 64;

type Shard<H> = Mutex<HashMap<String, Arc<Fill<H>>>>;

pub(crate) struct Inflight<H> {
    shards: Box<[Shard<H>]>,
    hasher: RandomState,
}

pub(crate) enum Join<H> {
    /// The caller must start the fill task with a [`Publisher`] for this fill. It already holds
    /// the leader's subscription, taken before any other request could see the fill.
    Leader(Arc<Fill<H>>, Option<Subscriber<H>>),
    Follower(Arc<Fill<H>>),
}

impl<H> Default for Inflight<H> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        }
    }
}

impl<H> Inflight<H> {
    fn shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Arc<Fill<H>>>> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        lock(&self.shards[index])
    }

    /// Join the fill in flight for `key`, or register a new one and lead it. A fill that has
    /// already ended (its task died before leaving the map) is replaced, never joined.
    pub(crate) fn join(&self, key: &str) -> Join<H> {
        let mut shard = self.shard(key);
        if let Some(fill) = shard.get(key).filter(|f| !f.has_ended()) {
            return Join::Follower(fill.clone());
        }
        let fill = Arc::new(Fill::new());
        // The leader's place is taken while the fill is still invisible to other requests: a
        // follower subscribing first would otherwise count as the leader and could be handed
        // a response fetched with another client's cookies.
        let leader = fill.subscribe();
        shard.insert(key.to_owned(), fill.clone());
        Join::Leader(fill, leader)
    }

    /// Unregister `fill` (and only that fill: a newer one may have taken the key since).
    pub(crate) fn leave(&self, key: &str, fill: &Arc<Fill<H>>) {
        let mut shard = self.shard(key);
        if shard.get(key).is_some_and(|f| Arc::ptr_eq(f, fill)) {
            shard.remove(key);
        }
    }

    /// A purge or an unsafe method changed `key`: the fill in flight (if any) must not store
    /// what it fetched, and later requests must not join it.
    pub(crate) fn invalidate(&self, key: &str) {
        if let Some(fill) = self.shard(key).remove(key) {
            fill.discarded.store(true, Ordering::Release);
        }
    }
}

/// Who may use a fill's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// Every subscriber (a storable response).
    All,
    /// Exactly one subscriber; the others are released to fetch on their own.
    One,
}

enum Head<H> {
    Pending,
    Ready(Arc<H>, Share),
    Entry(Arc<Entry>, Share),
    Failed(ProxyError),
}

struct Inner<H> {
    head: Head<H>,
    subscribers: usize,
    chunks: VecDeque<Bytes>,
    /// Index (since the start of the body) of `chunks[0]`.
    first: usize,
    buffered: usize,
    end: Option<Result<(), ProxyError>>,
    trimming: bool,
    readers: Vec<Weak<AtomicUsize>>,
}

/// One fetch in flight, shared by its subscribers. `H` is the response head the proxy
/// publishes (status, headers and what it knows about storing).
pub(crate) struct Fill<H> {
    inner: Mutex<Inner<H>>,
    /// Bumped on every change a subscriber may wait for.
    changed: watch::Sender<u64>,
    /// Signalled by readers as they advance or leave, for the publisher's backpressure.
    progress: Notify,
    /// Set by a purge while in flight: the result is served but not stored.
    discarded: AtomicBool,
}

pub(crate) enum Outcome<H> {
    Stream(Arc<H>, Subscriber<H>),
    Entry(Arc<Entry>),
    Failed(ProxyError),
    Released,
}

impl<H> Fill<H> {
    fn new() -> Self {
        Self {
            inner: Mutex::new(Inner {
                head: Head::Pending,
                subscribers: 0,
                chunks: VecDeque::new(),
                first: 0,
                buffered: 0,
                end: None,
                trimming: false,
                readers: Vec::new(),
            }),
            changed: watch::channel(0).0,
            progress: Notify::new(),
            discarded: AtomicBool::new(false),
        }
    }

    /// Whether a purge invalidated the key while this fill was in flight.
    pub(crate) fn discarded(&self) -> bool {
        self.discarded.load(Ordering::Acquire)
    }

    fn has_ended(&self) -> bool {
        let inner = lock(&self.inner);
        matches!(inner.head, Head::Failed(_)) || inner.end.is_some()
    }

    /// A fill for one client only, not registered for others to join.
    pub(crate) fn detached() -> Arc<Self> {
        Arc::new(Self::new())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Subscribe to this fill. `None` when it is too late to read it from the start (the
    /// buffer is already being trimmed): the caller fetches on its own.
    pub(crate) fn subscribe(self: &Arc<Self>) -> Option<Subscriber<H>> {
        let mut inner = lock(&self.inner);
        if inner.trimming || inner.first > 0 {
            return None;
        }
        let cursor = Arc::new(AtomicUsize::new(0));
        inner.readers.push(Arc::downgrade(&cursor));
        // The first subscriber is the client whose request the fill sends: only it may take a
        // response that must not be shared.
        let leader = inner.subscribers == 0;
        inner.subscribers += 1;
        Some(Subscriber {
            fill: self.clone(),
            changed: self.changed.subscribe(),
            cursor: Some(cursor),
            leader,
        })
    }
}

/// A client's view of a fill: first the outcome, then (for `Stream`) the body.
pub(crate) struct Subscriber<H> {
    fill: Arc<Fill<H>>,
    changed: watch::Receiver<u64>,
    /// `None` only while dropping (released before waking the publisher).
    cursor: Option<Arc<AtomicUsize>>,
    leader: bool,
}

impl<H> Subscriber<H> {
    /// Whether this is the client whose request the fill sends.
    pub(crate) fn is_leader(&self) -> bool {
        self.leader
    }

    /// Wait for the response head (or the failure) of the fill.
    pub(crate) async fn outcome(mut self) -> Outcome<H> {
        loop {
            self.changed.borrow_and_update();
            {
                let inner = lock(&self.fill.inner);
                match &inner.head {
                    Head::Pending => {}
                    Head::Failed(e) => return Outcome::Failed(e.clone()),
                    Head::Entry(_, Share::One) | Head::Ready(_, Share::One) if !self.leader => {
                        return Outcome::Released;
                    }
                    Head::Entry(e, _) => return Outcome::Entry(e.clone()),
                    Head::Ready(head, _) => {
                        let head = head.clone();
                        drop(inner);
                        return Outcome::Stream(head, self);
                    }
                }
            }
            // The sender lives in the fill we hold, so `changed` cannot fail; the publisher's
            // drop guard guarantees a final state is always published.
            if self.changed.changed().await.is_err() {
                return Outcome::Failed(ProxyError::Internal("fill vanished"));
            }
        }
    }

    /// Next body chunk; `None` at the end, `Some(Err)` if the origin body failed.
    pub(crate) async fn next_chunk(&mut self) -> Option<Result<Bytes, ProxyError>> {
        let cursor = self.cursor.clone()?;
        loop {
            self.changed.borrow_and_update();
            {
                let inner = lock(&self.fill.inner);
                let pos = cursor.load(Ordering::Acquire);
                if pos < inner.first {
                    return Some(Err(ProxyError::Internal(
                        "reader fell behind trimmed buffer",
                    )));
                }
                if let Some(chunk) = inner.chunks.get(pos - inner.first) {
                    let chunk = chunk.clone();
                    cursor.store(pos + 1, Ordering::Release);
                    let trimming = inner.trimming;
                    drop(inner);
                    if trimming {
                        self.fill.progress.notify_waiters();
                    }
                    return Some(Ok(chunk));
                }
                match &inner.end {
                    Some(Ok(())) => return None,
                    Some(Err(e)) => return Some(Err(e.clone())),
                    None => {}
                }
            }
            if self.changed.changed().await.is_err() {
                return Some(Err(ProxyError::Internal("fill vanished")));
            }
        }
    }
}

impl<H> Drop for Subscriber<H> {
    fn drop(&mut self) {
        // Release the cursor first: the publisher woken below must already see this reader
        // gone, or it could wait again for a notification that never comes.
        drop(self.cursor.take());
        // A reader leaving may unblock (or end) a trimming publisher.
        self.fill.progress.notify_waiters();
    }
}

/// The fill task's handle. Dropping it without finishing fails the fill, so no subscriber can
/// wait forever even if the task dies.
pub(crate) struct Publisher<H> {
    fill: Arc<Fill<H>>,
    finished: bool,
}

impl<H> Publisher<H> {
    pub(crate) fn new(fill: Arc<Fill<H>>) -> Self {
        Self {
            fill,
            finished: false,
        }
    }

    pub(crate) fn fill(&self) -> &Arc<Fill<H>> {
        &self.fill
    }

    pub(crate) fn head(&self, head: H, share: Share) {
        let mut inner = lock(&self.fill.inner);
        inner.head = Head::Ready(Arc::new(head), share);
        if share == Share::One {
            inner.trimming = true;
        }
        drop(inner);
        self.fill.bump();
    }

    pub(crate) fn push(&self, chunk: Bytes) {
        let mut inner = lock(&self.fill.inner);
        inner.buffered += chunk.len();
        inner.chunks.push_back(chunk);
        drop(inner);
        self.fill.bump();
    }

    /// From now on the body will not be stored: drop what every reader has read.
    pub(crate) fn start_trimming(&self) {
        lock(&self.fill.inner).trimming = true;
    }

    /// Trimming mode backpressure: wait until readers are within `window` bytes of the
    /// newest chunk. Returns false when no reader is left, or none made progress for `stall`
    /// (a client that stopped reading must not hold the fill and its origin connection).
    pub(crate) async fn wait_for_readers(&self, window: usize, stall: Duration) -> bool {
        loop {
            let notified = self.fill.progress.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut inner = lock(&self.fill.inner);
                let live = trim(&mut inner);
                if live == 0 {
                    return false;
                }
                if inner.buffered <= window {
                    return true;
                }
            }
            if tokio::time::timeout(stall, notified).await.is_err() {
                return false;
            }
        }
    }

    /// The fill produced a complete entry (revalidated): subscribers serve it as a hit
    /// (only the leader when `share` is `One`).
    pub(crate) fn entry(mut self, entry: Arc<Entry>, share: Share) {
        self.publish_final(Head::Entry(entry, share), Ok(()));
    }

    /// The body was stored as `body`: serve the chunks still buffered from it, so the origin
    /// connection's read buffers they are slices of can be freed now rather than when the
    /// slowest reader finishes.
    pub(crate) fn rebase(&self, body: &Bytes) {
        let mut inner = lock(&self.fill.inner);
        if inner.first != 0 {
            return;
        }
        let mut offset = 0;
        for chunk in inner.chunks.iter_mut() {
            let end = offset + chunk.len();
            if end > body.len() {
                return;
            }
            *chunk = body.slice(offset..end);
            offset = end;
        }
    }

    pub(crate) fn fail(mut self, error: ProxyError) {
        self.publish_final(Head::Failed(error.clone()), Err(error));
    }

    /// End of body (after `head`).
    pub(crate) fn finish(mut self, result: Result<(), ProxyError>) {
        let mut inner = lock(&self.fill.inner);
        inner.end = Some(result);
        drop(inner);
        self.finished = true;
        self.fill.bump();
    }

    fn publish_final(&mut self, head: Head<H>, end: Result<(), ProxyError>) {
        let mut inner = lock(&self.fill.inner);
        if matches!(inner.head, Head::Pending) {
            inner.head = head;
        }
        inner.end.get_or_insert(end);
        drop(inner);
        self.finished = true;
        self.fill.bump();
    }
}

/// Drop chunks every live reader has passed; returns the number of live readers.
fn trim<H>(inner: &mut Inner<H>) -> usize {
    inner.readers.retain(|r| r.strong_count() > 0);
    let min = inner
        .readers
        .iter()
        .filter_map(Weak::upgrade)
        .map(|c| c.load(Ordering::Acquire))
        .min();
    let Some(min) = min else { return 0 };
    while inner.first < min {
        match inner.chunks.pop_front() {
            Some(c) => {
                inner.buffered -= c.len();
                inner.first += 1;
            }
            None => break,
        }
    }
    inner.readers.len()
}

impl<H> Drop for Publisher<H> {
    fn drop(&mut self) {
        if !self.finished {
            self.publish_final(
                Head::Failed(ProxyError::Internal("fill task ended early")),
                Err(ProxyError::Internal("fill task ended early")),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        // Building a current-thread runtime only fails if the OS refuses basic resources.
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// The client whose request starts a fill is its leader from the moment the fill can be
    /// seen: a follower that subscribes "before" it never becomes the leader, so a response
    /// that may go to one client only reaches the right one.
    #[test]
    fn the_leader_is_fixed_before_anyone_can_join() {
        runtime().block_on(async {
            let inflight = Inflight::<String>::default();
            let Join::Leader(fill, leader) = inflight.join("k") else {
                panic!("first join leads");
            };
            let Join::Follower(joined) = inflight.join("k") else {
                panic!("second join follows");
            };
            let follower = joined.subscribe().expect("subscribe");
            assert!(!follower.is_leader());
            let leader = leader.expect("leader subscription");
            assert!(leader.is_leader());
            let publisher = Publisher::new(fill);
            publisher.head("private".to_owned(), Share::One);
            assert!(matches!(follower.outcome().await, Outcome::Released));
            assert!(matches!(leader.outcome().await, Outcome::Stream(..)));
            publisher.finish(Ok(()));
        });
    }
}
