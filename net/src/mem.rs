//! [`MemRouter`]: an in-memory switchboard between nodes of one process,
//! with fault injection (partitions, isolation, lost messages, delays,
//! nodes taken down and brought back).

use crate::transport::{Handler, Service, SharedTransport, Transport, TransportError};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use respawn_types::NodeId;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Message counters of one [`Service`] on a [`MemRouter`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemStats {
    /// Requests sent (every call).
    pub sent: u64,
    /// Requests handed to the target's handler.
    pub delivered: u64,
    /// Requests lost: target or sender down, partitioned, or dropped at
    /// random.
    pub dropped: u64,
    /// Replies lost after the request was handled.
    pub replies_dropped: u64,
    /// Size of the largest request delivered, in bytes.
    pub largest_delivered: usize,
}

/// An in-memory network between the nodes of one process, for tests.
///
/// Each node registers its [`Handler`] and sends through
/// [`MemRouter::transport`]. Faults:
///
/// - [`unregister`](Self::unregister): the node is down; it can neither
///   receive nor send (calls fail with `Unreachable`) until registered
///   again.
/// - [`partition`](Self::partition) and [`isolate`](Self::isolate): messages
///   between the groups fail with `Unreachable`, in both directions;
///   [`heal`](Self::heal) removes every partition and isolation.
/// - [`set_drop_rate`](Self::set_drop_rate),
///   [`set_reply_drop_rate`](Self::set_reply_drop_rate),
///   [`set_link_drop`](Self::set_link_drop): messages lost at random; the
///   caller then waits out its timeout and gets `Timeout`.
/// - [`set_delay`](Self::set_delay): each message (request and reply) is
///   delayed by a time drawn uniformly from a range.
///
/// Random choices come from one seeded generator
/// ([`with_seed`](Self::with_seed)). Handlers run in their own task: a
/// caller that gives up does not cancel a request already delivered.
/// Every call honours its timeout, delays included.
pub struct MemRouter {
    state: Mutex<RouterState>,
}

struct RouterState {
    handlers: HashMap<NodeId, Arc<dyn Handler>>,
    partitions: Vec<(BTreeSet<NodeId>, BTreeSet<NodeId>)>,
    isolated: BTreeSet<NodeId>,
    delay: (Duration, Duration),
    drop_rate: f64,
    reply_drop_rate: f64,
    link_drop: HashMap<(NodeId, NodeId), f64>,
    rng: StdRng,
    stats: HashMap<Service, MemStats>,
}

fn rate(p: f64) -> f64 {
    if p.is_nan() {
        0.0
    } else {
        p.clamp(0.0, 1.0)
    }
}

impl RouterState {
    fn stats(&mut self, service: Service) -> &mut MemStats {
        self.stats.entry(service).or_default()
    }

    /// Why a message from `from` to `to` cannot travel now, if it cannot.
    fn blocked(&self, from: NodeId, to: NodeId) -> Option<String> {
        if !self.handlers.contains_key(&to) {
            return Some(format!("node {to} is down"));
        }
        if !self.handlers.contains_key(&from) {
            return Some(format!("sender node {from} is down"));
        }
        if from == to {
            return None;
        }
        if self.isolated.contains(&from) || self.isolated.contains(&to) {
            return Some(format!("nodes {from} and {to} are partitioned (isolated)"));
        }
        let cut = self.partitions.iter().any(|(a, b)| {
            (a.contains(&from) && b.contains(&to)) || (a.contains(&to) && b.contains(&from))
        });
        cut.then(|| format!("nodes {from} and {to} are partitioned"))
    }

    /// Draws whether a message from `from` to `to` is lost, given the base
    /// rate for its kind.
    fn lost(&mut self, from: NodeId, to: NodeId, base: f64) -> bool {
        let link = self.link_drop.get(&(from, to)).copied().unwrap_or(0.0);
        let p = 1.0 - (1.0 - base) * (1.0 - link);
        p > 0.0 && self.rng.gen_bool(p.min(1.0))
    }

    fn sample_delay(&mut self) -> Duration {
        let (min, max) = self.delay;
        if max <= min {
            min
        } else {
            self.rng.gen_range(min..=max)
        }
    }
}

/// How the request leg of a call ended.
enum Leg {
    /// Lost on the way: the caller times out.
    Lost,
    /// Refused at once.
    Refused(String),
}

impl MemRouter {
    /// A router with a fixed default seed.
    pub fn new() -> Arc<MemRouter> {
        Self::with_seed(0x5eed)
    }

    /// A router whose random faults are drawn from `seed`.
    pub fn with_seed(seed: u64) -> Arc<MemRouter> {
        Arc::new(MemRouter {
            state: Mutex::new(RouterState {
                handlers: HashMap::new(),
                partitions: Vec::new(),
                isolated: BTreeSet::new(),
                delay: (Duration::ZERO, Duration::ZERO),
                drop_rate: 0.0,
                reply_drop_rate: 0.0,
                link_drop: HashMap::new(),
                rng: StdRng::seed_from_u64(seed),
                stats: HashMap::new(),
            }),
        })
    }

    // Nothing panics while the lock is held; if something did, the state
    // is still consistent (every update is a single assignment).
    fn lock(&self) -> MutexGuard<'_, RouterState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The transport node `from` sends with: every call it makes carries
    /// `from` as the sender.
    pub fn transport(self: &Arc<Self>, from: NodeId) -> SharedTransport {
        Arc::new(MemTransport {
            router: Arc::clone(self),
            from,
        })
    }

    /// Registers (or replaces) the handler of node `id`: the node is up.
    pub fn register(&self, id: NodeId, handler: Arc<dyn Handler>) {
        self.lock().handlers.insert(id, handler);
    }

    /// Takes node `id` down: calls to and from it fail with `Unreachable`
    /// until it is registered again.
    pub fn unregister(&self, id: NodeId) {
        self.lock().handlers.remove(&id);
    }

    /// Cuts every message between a node of `a` and a node of `b`, both
    /// ways. Several partitions may be in force at once.
    pub fn partition(&self, a: &[NodeId], b: &[NodeId]) {
        let a: BTreeSet<NodeId> = a.iter().copied().collect();
        let b: BTreeSet<NodeId> = b.iter().copied().collect();
        self.lock().partitions.push((a, b));
    }

    /// Cuts node `id` off from every other node (registered now or later).
    pub fn isolate(&self, id: NodeId) {
        self.lock().isolated.insert(id);
    }

    /// Removes every partition and isolation. Random loss and delays stay.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.partitions.clear();
        st.isolated.clear();
    }

    /// Delays each message (request and reply) by a time drawn uniformly
    /// from `[min, max]` (`max` below `min` means exactly `min`).
    pub fn set_delay(&self, min: Duration, max: Duration) {
        self.lock().delay = (min, max);
    }

    /// Each request is lost with probability `p` (clamped to `[0, 1]`);
    /// its caller times out.
    pub fn set_drop_rate(&self, p: f64) {
        self.lock().drop_rate = rate(p);
    }

    /// Each reply is lost with probability `p` after its request was
    /// handled; its caller times out.
    pub fn set_reply_drop_rate(&self, p: f64) {
        self.lock().reply_drop_rate = rate(p);
    }

    /// Each message travelling from `from` to `to` (requests of `from`,
    /// replies of `from` to requests of `to`) is also lost with
    /// probability `p`. `0` removes the rule.
    pub fn set_link_drop(&self, from: NodeId, to: NodeId, p: f64) {
        let p = rate(p);
        let mut st = self.lock();
        if p == 0.0 {
            st.link_drop.remove(&(from, to));
        } else {
            st.link_drop.insert((from, to), p);
        }
    }

    /// The message counters of `service`.
    pub fn stats(&self, service: Service) -> MemStats {
        self.lock().stats.get(&service).copied().unwrap_or_default()
    }

    async fn call(
        self: Arc<Self>,
        from: NodeId,
        to: NodeId,
        service: Service,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        let deadline = Instant::now() + timeout;
        let exchange = async {
            // Request leg.
            let delay = {
                let mut st = self.lock();
                st.stats(service).sent += 1;
                if let Some(why) = st.blocked(from, to) {
                    st.stats(service).dropped += 1;
                    return Err(Leg::Refused(why));
                }
                let base = st.drop_rate;
                if st.lost(from, to, base) {
                    st.stats(service).dropped += 1;
                    return Err(Leg::Lost);
                }
                st.sample_delay()
            };
            tokio::time::sleep(delay).await;
            let handler = {
                let mut st = self.lock();
                // Faults that began while the message was in flight apply.
                if let Some(why) = st.blocked(from, to) {
                    st.stats(service).dropped += 1;
                    return Err(Leg::Refused(why));
                }
                let stats = st.stats(service);
                stats.delivered += 1;
                stats.largest_delivered = stats.largest_delivered.max(payload.len());
                st.handlers.get(&to).cloned()
            };
            let Some(handler) = handler else {
                return Err(Leg::Refused(format!("node {to} is down")));
            };
            let reply = tokio::spawn(handler.handle(from, service, payload))
                .await
                .map_err(|e| Leg::Refused(format!("handler of node {to} failed: {e}")))?;

            // Reply leg.
            let delay = {
                let mut st = self.lock();
                let base = st.reply_drop_rate;
                if st.blocked(to, from).is_some() || st.lost(to, from, base) {
                    st.stats(service).replies_dropped += 1;
                    return Err(Leg::Lost);
                }
                st.sample_delay()
            };
            tokio::time::sleep(delay).await;
            let mut st = self.lock();
            if st.blocked(to, from).is_some() {
                st.stats(service).replies_dropped += 1;
                return Err(Leg::Lost);
            }
            Ok(reply)
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(Leg::Refused(why))) => Err(TransportError::Unreachable(to, why)),
            Ok(Err(Leg::Lost)) => {
                tokio::time::sleep_until(deadline).await;
                Err(TransportError::Timeout(to, timeout))
            }
            Err(_) => Err(TransportError::Timeout(to, timeout)),
        }
    }
}

/// The transport of one node on a [`MemRouter`].
struct MemTransport {
    router: Arc<MemRouter>,
    from: NodeId,
}

impl Transport for MemTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        Arc::clone(&self.router)
            .call(self.from, to, service, payload, timeout)
            .boxed()
    }
}
