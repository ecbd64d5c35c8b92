//! Node↔node links over QUIC: [`QuicTransport`] (the calling side) and
//! [`serve_node_link`] (the serving side).
//!
//! Wire format, on one bidirectional stream per call: one request frame
//! [`NodeEnvelope`] `{ service, payload }` answered by one reply frame
//! holding the handler's reply bytes (a bincode byte string, see
//! [`Blob`]). Frames on node links may be up to [`MAX_NODE_FRAME_LEN`].
//!
//! Identity: a node's certificate is of kind [`PeerKind::Node`] and named
//! [`node_name`]`(id)` = `node-<id>`. The caller checks that the node it
//! dialled presents the name of the node it meant to reach; the server
//! takes the caller's node id from its certificate, so `from` is
//! authenticated.

use crate::frame::{Blob, MAX_NODE_FRAME_LEN};
use crate::link::{serve_requests, Endpoint, Link};
use crate::pki::PeerKind;
use crate::transport::{Handler, Service, Transport, TransportError};
use crate::NetError;
use bytes::Bytes;
use futures::future::{BoxFuture, Shared};
use futures::FutureExt;
use respawn_types::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// Default time limit of one connection attempt by [`QuicTransport`].
pub const DEFAULT_NODE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A cached link is dropped (and the next call reconnects) after this many
/// calls in a row on it timed out: a peer that restarted without closing
/// its connections is only noticed that way before the idle timeout.
const TIMEOUTS_BEFORE_RECONNECT: u32 = 3;

/// Prefix of node certificate names.
const NODE_NAME_PREFIX: &str = "node-";

/// The certificate common name of node `id`: `node-<id>`.
pub fn node_name(id: NodeId) -> String {
    format!("{NODE_NAME_PREFIX}{id}")
}

/// The node id in a certificate name made by [`node_name`]; `None` for
/// anything else (no prefix, not a decimal number, a leading zero, out of
/// range).
pub fn parse_node_name(name: &str) -> Option<NodeId> {
    let digits = name.strip_prefix(NODE_NAME_PREFIX)?;
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'));
    if !canonical {
        return None;
    }
    digits.parse().ok()
}

/// The request frame of node links.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEnvelope {
    /// Which service of the receiving node handles it.
    pub service: Service,
    /// The service's request bytes.
    pub payload: Blob,
}

/// Serves the requests another node sends on `link` until the link closes,
/// calling `handler.handle(from, service, payload)` for each, concurrently
/// (see [`serve_requests`]).
///
/// Call it from the node's accept loop for links whose peer kind is
/// [`PeerKind::Node`]. `from` is the node id in the peer's certificate
/// name; a peer that is not a node or whose name is not `node-<id>` has its
/// link closed with [`crate::link::CLOSE_WRONG_PEER_KIND`] and is refused
/// with an error. Frames may be up to [`MAX_NODE_FRAME_LEN`].
pub async fn serve_node_link(link: Link, handler: Arc<dyn Handler>) -> Result<(), NetError> {
    let peer = link.peer().clone();
    if peer.kind != PeerKind::Node {
        link.close_wrong_peer("node links are for nodes only");
        return Err(NetError::UnexpectedPeerKind {
            expected: PeerKind::Node,
            got: peer.kind,
        });
    }
    let Some(from) = parse_node_name(&peer.name) else {
        link.close_wrong_peer("node certificate name must be node-<id>");
        return Err(NetError::PeerIdentity(format!(
            "node certificate name {:?} is not node-<id>",
            peer.name
        )));
    };
    let link = link.with_max_frame_len(MAX_NODE_FRAME_LEN);
    serve_requests(link, move |env: NodeEnvelope| {
        let reply = handler.handle(from, env.service, Bytes::from(env.payload.0));
        async move { Blob(Vec::from(reply.await)) }
    })
    .await
}

/// A connection attempt in progress, awaited by every caller that needs
/// the link meanwhile.
type Attempt = Shared<BoxFuture<'static, Result<Link, TransportError>>>;

/// What is known about one peer: its address and the cached link to it.
struct Peer {
    /// `host:port` as given to [`Transport::set_address`].
    addr: String,
    link: Mutex<Option<Link>>,
    /// The connection attempt in progress, shared by every caller waiting.
    connecting: Mutex<Option<Attempt>>,
    /// Calls in a row that timed out on the cached link.
    timeouts: AtomicU32,
    /// The peer closed our link because it was shutting down, and no
    /// connection to it has succeeded since: calls fail at once instead of
    /// waiting out a connection attempt to a node that is not there.
    gone: AtomicBool,
}

// Nothing panics while these locks are held; a poisoned lock still holds
// a consistent value (single assignments).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Peer {
    fn cached(&self) -> Option<Link> {
        let mut link = lock(&self.link);
        if let Some(closed) = link.as_ref().filter(|l| l.close_reason().is_some()) {
            self.note_gone(closed);
            *link = None;
        }
        link.clone()
    }

    /// Forgets the cached link if it is `id`.
    fn invalidate(&self, link: &Link) {
        let mut cached = lock(&self.link);
        if cached.as_ref().is_some_and(|l| l.id() == link.id()) {
            *cached = None;
        }
        drop(cached);
        self.note_gone(link);
    }

    /// Remembers that the peer shut down if it closed `link` saying so.
    fn note_gone(&self, link: &Link) {
        if link.peer_went_away() && !self.gone.swap(true, Ordering::Relaxed) {
            tracing::debug!(peer = %self.addr, "peer shut down; calls fail fast until it is back");
        }
    }
}

/// [`Transport`] over QUIC links with mutual TLS.
///
/// Keeps one link per peer, opened on demand (one attempt at a time per
/// peer, within the connect timeout; the attempt runs in its own task, so
/// it completes even when the call that started it gives up) and dropped
/// when it fails, when the peer's address changes, or after
/// three calls in a row on it time out. Addresses are `host:port`;
/// host names are resolved at each connection attempt.
///
/// A peer that closed its link because it was shutting down (see
/// [`crate::link::CLOSE_GOING_AWAY`]) is not waited for: until a
/// connection to it succeeds again, calls fail at once with `Unreachable`
/// while one connection attempt at a time runs in the background (a
/// forward to a stopped leader does not cost a connect timeout).
///
/// [`Transport::close`] closes the links, forgets the peers and shuts the
/// endpoint down (its socket released); the transport is unusable after.
pub struct QuicTransport {
    inner: Arc<QuicInner>,
}

struct QuicInner {
    self_id: NodeId,
    /// `None` once the transport is closed.
    endpoint: Mutex<Option<Endpoint>>,
    connect_timeout: Duration,
    peers: Mutex<HashMap<NodeId, Arc<Peer>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuicTransport")
            .field("self_id", &self.inner.self_id)
            .field("connect_timeout", &self.inner.connect_timeout)
            .finish_non_exhaustive()
    }
}

impl QuicTransport {
    /// A transport for node `self_id` that dials from `endpoint` (whose
    /// identity must be this node's certificate, `node-<self_id>`).
    pub fn new(self_id: NodeId, endpoint: Endpoint) -> Arc<QuicTransport> {
        Self::with_connect_timeout(self_id, endpoint, DEFAULT_NODE_CONNECT_TIMEOUT)
    }

    /// [`QuicTransport::new`] with another limit per connection attempt.
    pub fn with_connect_timeout(
        self_id: NodeId,
        endpoint: Endpoint,
        connect_timeout: Duration,
    ) -> Arc<QuicTransport> {
        Arc::new(QuicTransport {
            inner: Arc::new(QuicInner {
                self_id,
                endpoint: Mutex::new(Some(endpoint)),
                connect_timeout,
                peers: Mutex::new(HashMap::new()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// This node's id.
    pub fn self_id(&self) -> NodeId {
        self.inner.self_id
    }

    /// The address recorded for `node`, if any.
    pub fn address(&self, node: NodeId) -> Option<String> {
        lock(&self.inner.peers).get(&node).map(|p| p.addr.clone())
    }

    /// Closes the cached links (the next calls reconnect).
    pub fn disconnect_all(&self) {
        for peer in lock(&self.inner.peers).values() {
            if let Some(link) = lock(&peer.link).take() {
                link.close("disconnect");
            }
        }
    }
}

impl QuicInner {
    fn peer(&self, node: NodeId) -> Option<Arc<Peer>> {
        lock(&self.peers).get(&node).cloned()
    }

    /// The cached link to `to`, or a new one.
    async fn link(&self, to: NodeId, peer: &Arc<Peer>) -> Result<Link, TransportError> {
        if let Some(link) = peer.cached() {
            return Ok(link);
        }
        let gone = peer.gone.load(Ordering::Relaxed);
        let attempt = {
            let mut connecting = lock(&peer.connecting);
            match connecting.as_ref() {
                Some(attempt) => attempt.clone(),
                None => {
                    let Some(endpoint) = lock(&self.endpoint).clone() else {
                        return Err(TransportError::Unreachable(to, "transport closed".into()));
                    };
                    let task = tokio::spawn(connect(
                        endpoint,
                        Arc::clone(peer),
                        to,
                        self.connect_timeout,
                    ));
                    let attempt = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(TransportError::Unreachable(
                                to,
                                format!("connect task failed: {e}"),
                            ))
                        })
                    }
                    .boxed()
                    .shared();
                    *connecting = Some(attempt.clone());
                    attempt
                }
            }
        };
        if gone {
            // The attempt goes on in its own task; it clears `gone` if the
            // node is back.
            return Err(TransportError::Unreachable(
                to,
                format!("node {to} shut down (reconnecting in the background)"),
            ));
        }
        attempt.await
    }

    async fn call_inner(
        &self,
        to: NodeId,
        service: Service,
        payload: Bytes,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Bytes, TransportError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Unreachable(to, "transport closed".into()));
        }
        let peer = self.peer(to).ok_or(TransportError::UnknownNode(to))?;
        let link = self.link(to, &peer).await?;
        let envelope = NodeEnvelope {
            service,
            payload: Blob(Vec::from(payload)),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        match link.request::<_, Blob>(&envelope, left).await {
            Ok(reply) => {
                peer.timeouts.store(0, Ordering::Relaxed);
                Ok(Bytes::from(reply.0))
            }
            Err(NetError::Timeout { .. }) => {
                let n = peer.timeouts.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= TIMEOUTS_BEFORE_RECONNECT {
                    tracing::debug!(peer = to, "calls keep timing out; reconnecting");
                    peer.timeouts.store(0, Ordering::Relaxed);
                    peer.invalidate(&link);
                }
                Err(TransportError::Timeout(to, timeout))
            }
            Err(e @ NetError::FrameTooLarge { .. }) | Err(e @ NetError::Encode(_)) => {
                // A local refusal: the link is fine.
                Err(TransportError::Unreachable(to, e.to_string()))
            }
            Err(e) => {
                if link.close_reason().is_some() {
                    peer.invalidate(&link);
                }
                Err(TransportError::Unreachable(to, e.to_string()))
            }
        }
    }
}

/// Resolves `peer.addr` and connects to the first address that answers as
/// node `to`; caches the link on success. Clears `peer.connecting` when
/// done.
async fn connect(
    endpoint: Endpoint,
    peer: Arc<Peer>,
    to: NodeId,
    timeout: Duration,
) -> Result<Link, TransportError> {
    let result = tokio::time::timeout(timeout, dial(&endpoint, &peer.addr, to))
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::Unreachable(
                to,
                format!("connect to {} timed out after {timeout:?}", peer.addr),
            ))
        });
    if let Ok(link) = &result {
        *lock(&peer.link) = Some(link.clone());
        peer.timeouts.store(0, Ordering::Relaxed);
        peer.gone.store(false, Ordering::Relaxed);
    }
    *lock(&peer.connecting) = None;
    result
}

async fn dial(endpoint: &Endpoint, addr: &str, to: NodeId) -> Result<Link, TransportError> {
    let unreachable = |why: String| TransportError::Unreachable(to, why);
    let mut addrs: Vec<SocketAddr> = match addr.parse::<SocketAddr>() {
        Ok(a) => vec![a],
        Err(_) => tokio::net::lookup_host(addr)
            .await
            .map_err(|e| unreachable(format!("cannot resolve {addr}: {e}")))?
            .collect(),
    };
    // IPv4 first: the common client endpoint is bound to an IPv4 socket.
    addrs.sort_by_key(|a| a.is_ipv6());
    let mut last = format!("{addr} resolves to no address");
    for sock in addrs {
        match endpoint.connect(sock).await {
            Ok(link) => {
                let want = node_name(to);
                if link.peer().name != want {
                    let why = format!(
                        "{sock} presented certificate {:?}, expected {want:?}",
                        link.peer().name
                    );
                    link.close_wrong_peer("unexpected node name");
                    tracing::warn!(peer = to, %sock, reason = %why, "node refused");
                    last = why;
                    continue;
                }
                return Ok(link.with_max_frame_len(MAX_NODE_FRAME_LEN));
            }
            Err(e) => last = format!("connect to {sock}: {e}"),
        }
    }
    Err(unreachable(last))
}

impl Transport for QuicTransport {
    fn call(
        &self,
        to: NodeId,
        service: Service,
        payload: Bytes,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Bytes, TransportError>> {
        let inner = Arc::clone(&self.inner);
        async move {
            let deadline = Instant::now() + timeout;
            let call = inner.call_inner(to, service, payload, deadline, timeout);
            match tokio::time::timeout_at(deadline, call).await {
                Ok(result) => result,
                Err(_) => Err(TransportError::Timeout(to, timeout)),
            }
        }
        .boxed()
    }

    fn set_address(&self, node: NodeId, addr: &str) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        let mut peers = lock(&self.inner.peers);
        if peers.get(&node).is_some_and(|p| p.addr == addr) {
            return;
        }
        peers.insert(
            node,
            Arc::new(Peer {
                addr: addr.to_string(),
                link: Mutex::new(None),
                connecting: Mutex::new(None),
                timeouts: AtomicU32::new(0),
                gone: AtomicBool::new(false),
            }),
        );
    }

    fn forget(&self, node: NodeId) {
        let peer = lock(&self.inner.peers).remove(&node);
        if let Some(link) = peer.and_then(|p| lock(&p.link).take()) {
            link.close("forgotten");
        }
    }

    fn silence(&self) {
        self.inner.closed.store(true, Ordering::Release);
        if let Some(endpoint) = lock(&self.inner.endpoint).as_ref() {
            endpoint.silence();
        }
    }

    fn close(&self, within: Duration) -> BoxFuture<'static, ()> {
        let inner = Arc::clone(&self.inner);
        async move {
            inner.closed.store(true, Ordering::Release);
            let endpoint = lock(&inner.endpoint).take();
            // Forget every peer: cached links and attempts in progress
            // hold connections, and so the endpoint's socket.
            let peers: Vec<Arc<Peer>> = lock(&inner.peers).drain().map(|(_, p)| p).collect();
            for peer in peers {
                if let Some(link) = lock(&peer.link).take() {
                    link.close("node shutting down");
                }
                lock(&peer.connecting).take();
            }
            if let Some(endpoint) = endpoint {
                if let Err(e) = endpoint.shutdown(within).await {
                    tracing::warn!(node = inner.self_id, error = %e, "node transport not released");
                }
            }
        }
        .boxed()
    }
}
