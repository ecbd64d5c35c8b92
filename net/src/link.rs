//! Endpoints and links: request/response over QUIC bidirectional streams.
//!
//! A [`Link`] is one mutually authenticated QUIC connection. Either side may
//! send requests: each request opens its own bidirectional stream, writes one
//! frame, finishes its half, and reads one reply frame, so any number of
//! requests (up to [`tls::MAX_CONCURRENT_REQUESTS`]) are in flight at once
//! without head-of-line blocking.
//!
//! A peer that sends a malformed frame (see [`NetError::is_malformed_frame`])
//! has its whole connection closed with [`CLOSE_MALFORMED_FRAME`]: the link
//! cannot be trusted to stay in sync after that. A request abandoned by its
//! sender (timeout, cancellation) or a reply abandoned by a handler resets
//! only that stream.

use crate::frame::{encode_frame_limited, read_frame, MAX_NODE_FRAME_LEN};
use crate::pki::{Identity, PeerKind};
use crate::{tls, NetError};
use quinn::VarInt;
use respawn_types::agent::MAX_FRAME_LEN;
use respawn_types::text::truncate_utf8;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};

/// Connection close code: normal close.
pub const CLOSE_NORMAL: u32 = 0;
/// Connection close code: the peer sent a malformed or oversized frame.
pub const CLOSE_MALFORMED_FRAME: u32 = 1;
/// Connection close code: the peer's certificate is of the wrong kind.
pub const CLOSE_WRONG_PEER_KIND: u32 = 2;
/// Connection close code: the closing side is going away (its endpoint
/// was closed: the node or agent is shutting down). A normal end, which
/// also tells the other side not to wait on a reconnection.
pub const CLOSE_GOING_AWAY: u32 = 3;
/// Stream reset code: the receiver of a request dropped it unanswered.
pub const RESET_NO_RESPONSE: u32 = 1;
/// Stream reset code: the sender of a request gave up on it.
pub const RESET_CANCELLED: u32 = 2;

/// Default limit for [`Endpoint::connect`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An accepted connection must complete its handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// [`serve_requests`] drops a request stream whose frame has not fully
/// arrived within this.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest close reason sent to a peer, in bytes.
const MAX_REASON_LEN: usize = 200;
/// Accepted links waiting for [`Endpoint::accept`].
const ACCEPT_QUEUE: usize = 64;
/// [`Endpoint::shutdown`] lets closed connections drain this long at most
/// before it closes the socket.
pub const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Who is at the other end of a link, as proven by its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// Certificate common name; passes [`respawn_types::validate_id`].
    pub name: String,
    /// Node or agent.
    pub kind: PeerKind,
    /// The peer's address at connection time.
    pub addr: SocketAddr,
}

/// A QUIC endpoint: listens for links (server) and/or opens them.
///
/// Cheap to clone; the listener stops when the last clone is dropped or
/// [`Endpoint::close`] is called.
///
/// By itself, the UDP socket is closed only once every clone of the
/// endpoint **and every [`Link`] it carries** (clones included) are dropped
/// and the closed connections have drained (three probe timeouts: seconds
/// when a busy machine has inflated the RTT estimates). To free the port at
/// a known moment, use [`Endpoint::shutdown`]: it closes everything, gives
/// the close a moment to reach the peers, then closes the socket itself.
/// [`Endpoint::released`] observes the socket's closing.
#[derive(Clone)]
pub struct Endpoint {
    inner: Arc<EndpointInner>,
}

struct EndpointInner {
    quic: quinn::Endpoint,
    /// Handshaken incoming links; `None` for a client-only endpoint.
    incoming: Option<Mutex<mpsc::Receiver<Result<Link, NetError>>>>,
    accept_task: std::sync::Mutex<Option<JoinHandle<()>>>,
    /// The socket quinn uses, to close it on shutdown.
    socket: Arc<EndpointSocket>,
    /// Closed (its sender dropped) once the UDP socket is closed.
    released: watch::Receiver<()>,
}

impl Drop for EndpointInner {
    fn drop(&mut self) {
        let task = self
            .accept_task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

impl Endpoint {
    /// Listens on `bind` with `identity`; accepts only clients whose
    /// certificate the identity's CA signed. The endpoint can also
    /// [`connect`](Self::connect) to other servers. Must be called inside a
    /// tokio runtime.
    pub fn server(bind: SocketAddr, identity: &Identity) -> Result<Endpoint, NetError> {
        let socket = std::net::UdpSocket::bind(bind).map_err(NetError::Socket)?;
        let (mut quic, socket, released) =
            quinn_endpoint(socket, Some(tls::server_config(identity)?))?;
        quic.set_default_client_config(tls::client_config(identity)?);
        let (tx, rx) = mpsc::channel(ACCEPT_QUEUE);
        let task = tokio::spawn(accept_loop(quic.clone(), tx));
        Ok(Endpoint {
            inner: Arc::new(EndpointInner {
                quic,
                incoming: Some(Mutex::new(rx)),
                accept_task: std::sync::Mutex::new(Some(task)),
                socket,
                released,
            }),
        })
    }

    /// A client endpoint on an ephemeral IPv4 port, presenting `identity`.
    pub fn client(identity: &Identity) -> Result<Endpoint, NetError> {
        Self::client_on(SocketAddr::from(([0, 0, 0, 0], 0)), identity)
    }

    /// A client endpoint bound to `bind` (use `[::]:0` to reach IPv6
    /// servers; an IPv6 socket is made dual-stack where the system allows).
    pub fn client_on(bind: SocketAddr, identity: &Identity) -> Result<Endpoint, NetError> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))
            .map_err(NetError::Socket)?;
        if bind.is_ipv6() {
            if let Err(e) = socket.set_only_v6(false) {
                tracing::debug!(error = %e, "cannot make the client socket dual-stack");
            }
        }
        socket.bind(&bind.into()).map_err(NetError::Socket)?;
        let (mut quic, socket, released) = quinn_endpoint(socket.into(), None)?;
        quic.set_default_client_config(tls::client_config(identity)?);
        Ok(Endpoint {
            inner: Arc::new(EndpointInner {
                quic,
                incoming: None,
                accept_task: std::sync::Mutex::new(None),
                socket,
                released,
            }),
        })
    }

    /// The local UDP address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, NetError> {
        self.inner.quic.local_addr().map_err(NetError::Socket)
    }

    /// Connections of this endpoint not yet drained (closed ones count
    /// until their draining period ends).
    pub fn open_connections(&self) -> usize {
        self.inner.quic.open_connections()
    }

    /// The next incoming link, handshake done and peer certificate verified.
    ///
    /// `Some(Err(_))` reports one failed handshake (for example a client
    /// without a valid certificate); keep accepting after it. `None` means
    /// the endpoint is closed or is a client endpoint.
    pub async fn accept(&self) -> Option<Result<Link, NetError>> {
        let incoming = self.inner.incoming.as_ref()?;
        incoming.lock().await.recv().await
    }

    /// Connects to the server at `addr` within [`CONNECT_TIMEOUT`].
    ///
    /// The server must present a [`PeerKind::Node`] certificate from the
    /// trusted CA (only nodes listen).
    pub async fn connect(&self, addr: SocketAddr) -> Result<Link, NetError> {
        self.connect_with_timeout(addr, CONNECT_TIMEOUT).await
    }

    /// [`connect`](Self::connect) with an explicit time limit.
    pub async fn connect_with_timeout(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Link, NetError> {
        let connecting = self.inner.quic.connect(addr, tls::SERVER_NAME)?;
        let conn = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| NetError::Timeout {
                what: "connect",
                after: timeout,
            })??;
        let link = Link::from_connection(conn)?;
        if link.peer().kind != PeerKind::Node {
            let err = NetError::UnexpectedPeerKind {
                expected: PeerKind::Node,
                got: link.peer().kind,
            };
            link.conn.close(
                VarInt::from_u32(CLOSE_WRONG_PEER_KIND),
                b"server must be a node",
            );
            return Err(err);
        }
        Ok(link)
    }

    /// Closes every connection of this endpoint with [`CLOSE_GOING_AWAY`]
    /// and stops listening.
    ///
    /// The socket stays bound until every clone of the endpoint and of its
    /// links is dropped and the connections have drained; see
    /// [`shutdown`](Self::shutdown) to free the port at once.
    pub fn close(&self) {
        self.inner
            .quic
            .close(VarInt::from_u32(CLOSE_GOING_AWAY), b"endpoint closed");
        if let Some(task) = lock_task(&self.inner.accept_task).as_ref() {
            task.abort();
        }
    }

    /// Resolves once the endpoint's UDP socket is closed (its port free
    /// again). Holding this future does not keep the socket open.
    pub fn released(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut released = self.inner.released.clone();
        async move {
            // Nothing is ever sent: `changed` fails once the sender (owned
            // by the socket) is dropped.
            while released.changed().await.is_ok() {}
        }
    }

    /// Closes the endpoint and its UDP socket; returns once the socket is
    /// closed (its port free), within `within`.
    ///
    /// In order: every connection is closed (the peers are told at once),
    /// the accept loop and its handshakes stop, links accepted but not yet
    /// taken are dropped, the closed connections get up to
    /// [`CLOSE_GRACE`] to drain (so that a peer whose packets crossed the
    /// close hears it again), then the socket itself is closed, whether or
    /// not clones of this endpoint or of its links are still held
    /// elsewhere: they can no longer send or receive anything. Fails with
    /// [`NetError::Timeout`] only if the socket is still open after
    /// `within` (a send to it was still in progress).
    pub async fn shutdown(self, within: Duration) -> Result<(), NetError> {
        let deadline = tokio::time::Instant::now() + within;
        let released = self.released();
        self.close();
        // `close` aborted the accept loop: wait until it is gone (its
        // handshakes in progress, and their connections, go with it).
        let task = lock_task(&self.inner.accept_task).take();
        if let Some(mut task) = task {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
                let _ = task.await;
            }
        }
        // Links accepted but never taken by `accept`: drop them, and make
        // later `accept` calls return `None` at once.
        if let Some(incoming) = &self.inner.incoming {
            if let Ok(mut rx) = tokio::time::timeout_at(deadline, incoming.lock()).await {
                rx.close();
                while rx.try_recv().is_ok() {}
            }
        }
        // Closed connections linger for three probe timeouts, answering
        // late packets with the close again: tens of milliseconds on an
        // idle LAN, seconds once a busy machine has inflated the RTT
        // estimates (and the probe timeout with them). Wait a little, not
        // that.
        let grace = deadline.min(tokio::time::Instant::now() + CLOSE_GRACE);
        let _ = tokio::time::timeout_at(grace, self.inner.quic.wait_idle()).await;
        let draining = self.inner.quic.open_connections();
        if draining > 0 {
            tracing::debug!(
                draining,
                "closing the UDP socket of an endpoint with connections still draining"
            );
        }
        self.inner.socket.close();
        drop(self);
        match tokio::time::timeout_at(deadline, released).await {
            Ok(()) => Ok(()),
            Err(_) => Err(NetError::Timeout {
                what: "closing the UDP socket",
                after: within,
            }),
        }
    }
}

fn lock_task(
    m: &std::sync::Mutex<Option<JoinHandle<()>>>,
) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A quinn endpoint on `socket`, the socket as quinn sees it, and a
/// receiver closed when the socket is.
fn quinn_endpoint(
    socket: std::net::UdpSocket,
    server: Option<quinn::ServerConfig>,
) -> Result<(quinn::Endpoint, Arc<EndpointSocket>, watch::Receiver<()>), NetError> {
    let (socket, released) = EndpointSocket::new(socket).map_err(NetError::Socket)?;
    let quic = quinn::Endpoint::new_with_abstract_socket(
        quinn::EndpointConfig::default(),
        server,
        socket.clone(),
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(NetError::Socket)?;
    Ok((quic, socket, released))
}

/// The UDP socket of an endpoint, shared by quinn between the endpoint
/// driver and every connection (what quinn's tokio runtime makes, plus
/// [`close`](Self::close)).
///
/// quinn keeps its socket for as long as any connection object lives,
/// drained or not, so a [`Link`] clone forgotten anywhere, or a closed
/// connection still draining, would keep the port bound. `close` closes the
/// file descriptor at once instead; after it, sends are dropped and
/// nothing more is received.
#[derive(Debug)]
struct EndpointSocket {
    /// `None` once closed.
    fd: std::sync::RwLock<Option<Arc<SocketFd>>>,
    state: quinn::udp::UdpSocketState,
    local: SocketAddr,
}

/// The descriptor, and the watch channel it closes when it goes (fields
/// drop in declaration order: the socket first).
#[derive(Debug)]
struct SocketFd {
    io: tokio::net::UdpSocket,
    _closed: watch::Sender<()>,
}

impl EndpointSocket {
    fn new(socket: std::net::UdpSocket) -> io::Result<(Arc<Self>, watch::Receiver<()>)> {
        // Sets the socket options quinn wants, and non-blocking mode.
        let state = quinn::udp::UdpSocketState::new((&socket).into())?;
        let local = socket.local_addr()?;
        let (closed, released) = watch::channel(());
        let fd = SocketFd {
            io: tokio::net::UdpSocket::from_std(socket)?,
            _closed: closed,
        };
        let socket = EndpointSocket {
            fd: std::sync::RwLock::new(Some(Arc::new(fd))),
            state,
            local,
        };
        Ok((Arc::new(socket), released))
    }

    fn fd(&self) -> Option<Arc<SocketFd>> {
        self.fd
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Closes the descriptor (once no send waits for room on it).
    fn close(&self) {
        let fd = self
            .fd
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(fd);
    }
}

impl quinn::AsyncUdpSocket for EndpointSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(WritablePoller {
            socket: self,
            writable: None,
        })
    }

    fn try_send(&self, transmit: &quinn::udp::Transmit) -> io::Result<()> {
        let fd = self
            .fd
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Closed: the datagram is lost, as on any network.
        let Some(fd) = fd.as_ref() else { return Ok(()) };
        fd.io.try_io(tokio::io::Interest::WRITABLE, || {
            self.state.send((&fd.io).into(), transmit)
        })
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [quinn::udp::RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let fd = self
            .fd
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Closed: nothing will ever arrive.
        let Some(fd) = fd.as_ref() else {
            return Poll::Pending;
        };
        loop {
            match fd.io.poll_recv_ready(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other.map(|r| r.map(|()| 0)),
            }
            if let Ok(n) = fd.io.try_io(tokio::io::Interest::READABLE, || {
                self.state.recv((&fd.io).into(), bufs, meta)
            }) {
                return Poll::Ready(Ok(n));
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    fn max_transmit_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.state.gro_segments()
    }

    fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}

/// Waits for room to send on the socket; one per task that may wait (as
/// quinn requires), each with its own waker.
struct WritablePoller {
    socket: Arc<EndpointSocket>,
    writable: Option<Pin<Box<dyn Future<Output = io::Result<()>> + Send + Sync>>>,
}

impl std::fmt::Debug for WritablePoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WritablePoller").finish_non_exhaustive()
    }
}

impl quinn::UdpPoller for WritablePoller {
    fn poll_writable(self: Pin<&mut Self>, cx: &mut Context) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let writable = match &mut this.writable {
            Some(w) => w,
            None => {
                // Closed: sends are dropped, there is always room.
                let Some(fd) = this.socket.fd() else {
                    return Poll::Ready(Ok(()));
                };
                this.writable
                    .insert(Box::pin(async move { fd.io.writable().await }))
            }
        };
        let result = writable.as_mut().poll(cx);
        if result.is_ready() {
            this.writable = None;
        }
        result
    }
}

async fn accept_loop(quic: quinn::Endpoint, tx: mpsc::Sender<Result<Link, NetError>>) {
    let mut handshakes: JoinSet<Result<Link, NetError>> = JoinSet::new();
    loop {
        tokio::select! {
            incoming = quic.accept() => {
                let Some(incoming) = incoming else { break };
                handshakes.spawn(handshake(incoming));
            }
            Some(done) = handshakes.join_next(), if !handshakes.is_empty() => {
                let result = match done {
                    Ok(result) => result,
                    // A handshake task cannot panic on peer input; if it did,
                    // drop that connection and keep listening.
                    Err(e) => {
                        tracing::error!(error = %e, "handshake task failed");
                        continue;
                    }
                };
                if let Err(e) = &result {
                    tracing::debug!(error = %e, "incoming connection refused");
                }
                if tx.send(result).await.is_err() {
                    break;
                }
            }
        }
    }
    // Handshakes in progress hold connections (and so the socket): end
    // them before the endpoint handle goes.
    handshakes.shutdown().await;
}

async fn handshake(incoming: quinn::Incoming) -> Result<Link, NetError> {
    let connecting = incoming.accept()?;
    let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
        .await
        .map_err(|_| NetError::Timeout {
            what: "handshake",
            after: HANDSHAKE_TIMEOUT,
        })??;
    Link::from_connection(conn)
}

/// One authenticated QUIC connection to a peer. Cheap to clone; all clones
/// share the connection.
///
/// Frames on a link are limited to [`MAX_FRAME_LEN`] (1 MiB) in both
/// directions unless the link was marked with
/// [`with_max_frame_len`](Self::with_max_frame_len), which node↔node links
/// are (agents are untrusted and keep the small limit).
#[derive(Clone)]
pub struct Link {
    conn: quinn::Connection,
    peer: Arc<PeerInfo>,
    max_frame: usize,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("id", &self.conn.stable_id())
            .field("peer", &self.peer)
            .finish()
    }
}

impl Link {
    fn from_connection(conn: quinn::Connection) -> Result<Link, NetError> {
        let subject = match tls::peer_subject(&conn) {
            Ok(subject) => subject,
            Err(e) => {
                conn.close(VarInt::from_u32(CLOSE_WRONG_PEER_KIND), b"bad certificate");
                return Err(e);
            }
        };
        let peer = PeerInfo {
            name: subject.name,
            kind: subject.kind,
            addr: conn.remote_address(),
        };
        Ok(Link {
            conn,
            peer: Arc::new(peer),
            max_frame: MAX_FRAME_LEN,
        })
    }

    /// This link with another frame limit (capped at
    /// [`MAX_NODE_FRAME_LEN`]) for the requests and replies it sends and
    /// receives, [`serve_requests`] included. Only for links to trusted
    /// peers (other nodes); agent links keep [`MAX_FRAME_LEN`].
    pub fn with_max_frame_len(mut self, max: usize) -> Link {
        self.max_frame = max.min(MAX_NODE_FRAME_LEN);
        self
    }

    /// The largest frame payload this link sends or accepts, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame
    }

    /// The authenticated peer.
    pub fn peer(&self) -> &PeerInfo {
        &self.peer
    }

    /// An id unique among the live connections of this process.
    pub fn id(&self) -> usize {
        self.conn.stable_id()
    }

    /// Sends `req` on a new stream and waits for one reply, all within
    /// `timeout`.
    ///
    /// On timeout or cancellation the stream is reset; the link stays up.
    /// A malformed reply closes the link.
    pub async fn request<Req, Resp>(&self, req: &Req, timeout: Duration) -> Result<Resp, NetError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        // Encode first: a message too large to send is a local error and
        // must not leave a half-open stream behind.
        let bytes = encode_frame_limited(req, self.max_frame)?;
        let exchange = async {
            let (send, mut recv) = self.conn.open_bi().await?;
            let mut send = SendGuard::new(send, RESET_CANCELLED);
            send.write_all_and_finish(&bytes).await?;
            match read_frame::<Resp, _>(&mut recv, self.max_frame).await {
                Ok(resp) => Ok(resp),
                Err(e) if e.is_malformed_frame() => {
                    self.close_malformed(&e);
                    Err(e)
                }
                Err(e) => Err(map_stream_error(e)),
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| NetError::Timeout {
                what: "request",
                after: timeout,
            })?
    }

    /// Waits for the next request the peer sends and reads it.
    ///
    /// Requests the peer abandons before sending them completely are skipped.
    /// Returns `Err` when the link closes, or after closing it because the
    /// peer sent a malformed frame. Reads one request at a time: to serve
    /// many at once use [`serve_requests`].
    pub async fn accept_request<Req>(&self) -> Result<(Req, Responder), NetError>
    where
        Req: DeserializeOwned,
    {
        loop {
            let (send, mut recv) = self.conn.accept_bi().await?;
            let send = SendGuard::new(send, RESET_NO_RESPONSE);
            match read_frame::<Req, _>(&mut recv, self.max_frame).await {
                Ok(req) => {
                    return Ok((
                        req,
                        Responder {
                            send,
                            max_frame: self.max_frame,
                        },
                    ))
                }
                Err(e) if e.is_malformed_frame() => {
                    self.close_malformed(&e);
                    return Err(e);
                }
                Err(e) => match map_stream_error(e) {
                    e @ NetError::Connection(_) => return Err(e),
                    e => {
                        tracing::debug!(peer = %self.peer.name, error = %e, "request stream dropped")
                    }
                },
            }
        }
    }

    /// Closes the link; pending and future operations fail. `reason` is
    /// sent to the peer (truncated to 200 bytes).
    pub fn close(&self, reason: &str) {
        self.conn.close(
            VarInt::from_u32(CLOSE_NORMAL),
            truncate_utf8(reason, MAX_REASON_LEN).as_bytes(),
        );
    }

    /// Resolves when the link is closed, with why.
    pub async fn closed(&self) -> NetError {
        NetError::Connection(self.conn.closed().await)
    }

    /// Why the link is closed, or `None` while it is open.
    pub fn close_reason(&self) -> Option<NetError> {
        self.conn.close_reason().map(NetError::Connection)
    }

    /// Whether the peer closed the link because it is going away (its
    /// endpoint closed with [`CLOSE_GOING_AWAY`]: it is shutting down).
    pub fn peer_went_away(&self) -> bool {
        matches!(
            self.conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(close))
                if close.error_code == VarInt::from_u32(CLOSE_GOING_AWAY)
        )
    }

    /// Closes the link with [`CLOSE_WRONG_PEER_KIND`]: the peer's
    /// certificate is valid but does not name the peer expected.
    pub(crate) fn close_wrong_peer(&self, reason: &str) {
        self.conn.close(
            VarInt::from_u32(CLOSE_WRONG_PEER_KIND),
            truncate_utf8(reason, MAX_REASON_LEN).as_bytes(),
        );
    }

    /// Closes the connection because the peer sent a malformed frame.
    fn close_malformed(&self, err: &NetError) {
        tracing::warn!(
            peer = %self.peer.name,
            kind = %self.peer.kind,
            addr = %self.peer.addr,
            reason = %err,
            "closing link: peer sent a malformed frame"
        );
        let reason = format!("malformed frame: {err}");
        self.conn.close(
            VarInt::from_u32(CLOSE_MALFORMED_FRAME),
            truncate_utf8(&reason, MAX_REASON_LEN).as_bytes(),
        );
    }

    /// The result [`serve_requests`] returns once the connection is gone.
    fn ended(&self, err: quinn::ConnectionError) -> Result<(), NetError> {
        match err {
            quinn::ConnectionError::LocallyClosed => Ok(()),
            quinn::ConnectionError::ApplicationClosed(close)
                if close.error_code == VarInt::from_u32(CLOSE_NORMAL)
                    || close.error_code == VarInt::from_u32(CLOSE_GOING_AWAY) =>
            {
                Ok(())
            }
            other => Err(NetError::Connection(other)),
        }
    }
}

/// The reply half of one received request. Dropping it without calling
/// [`respond`](Self::respond) resets the stream with [`RESET_NO_RESPONSE`],
/// so the requester fails at once instead of waiting for its timeout.
pub struct Responder {
    send: SendGuard,
    max_frame: usize,
}

impl Responder {
    /// Sends the reply and finishes the stream.
    pub async fn respond<Resp>(mut self, resp: &Resp) -> Result<(), NetError>
    where
        Resp: Serialize + ?Sized,
    {
        let bytes = encode_frame_limited(resp, self.max_frame)?;
        self.send.write_all_and_finish(&bytes).await
    }
}

/// A send stream that is reset with `code` if dropped before finishing.
/// (A plain quinn `SendStream` *finishes* on drop, which would make a
/// half-written frame look like a truncated one to the peer.)
struct SendGuard {
    stream: Option<quinn::SendStream>,
    code: u32,
}

impl SendGuard {
    fn new(stream: quinn::SendStream, code: u32) -> Self {
        Self {
            stream: Some(stream),
            code,
        }
    }

    async fn write_all_and_finish(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(NetError::Io(std::io::Error::other(
                "stream already finished",
            )));
        };
        stream.write_all(bytes).await.map_err(map_write_error)?;
        // Taken only after the whole frame is written: a cancelled write
        // leaves the stream in `self` to be reset on drop.
        if let Some(mut stream) = self.stream.take() {
            // Fails only if the stream was already reset or finished, in
            // which case the peer learns of it anyway.
            let _ = stream.finish();
        }
        Ok(())
    }
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        if let Some(mut stream) = self.stream.take() {
            // Fails only if the stream is already closed: nothing to do.
            let _ = stream.reset(VarInt::from_u32(self.code));
        }
    }
}

fn map_write_error(e: quinn::WriteError) -> NetError {
    match e {
        quinn::WriteError::Stopped(code) => NetError::StreamReset {
            code: code.into_inner(),
        },
        quinn::WriteError::ConnectionLost(c) => NetError::Connection(c),
        other => NetError::Io(other.into()),
    }
}

/// Turns an I/O error from a quinn stream back into the quinn error it
/// wraps, when it is a reset or a lost connection.
fn map_stream_error(e: NetError) -> NetError {
    let NetError::Io(io) = e else { return e };
    match io
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
    {
        Some(quinn::ReadError::Reset(code)) => NetError::StreamReset {
            code: code.into_inner(),
        },
        Some(quinn::ReadError::ConnectionLost(c)) => NetError::Connection(c.clone()),
        _ => NetError::Io(io),
    }
}

/// Serves the requests the peer sends on `link` until the link closes.
///
/// Each request is read and handled in its own task, so slow handlers do
/// not hold up others. A request stream the peer abandons, or whose frame
/// does not arrive within [`REQUEST_READ_TIMEOUT`], is dropped alone. A
/// malformed or oversized frame closes the whole connection with
/// [`CLOSE_MALFORMED_FRAME`] and the reason, is logged with
/// `tracing::warn!`, and makes this function return that error.
///
/// Returns `Ok(())` when the link is closed normally (by either side,
/// with [`CLOSE_NORMAL`] or [`CLOSE_GOING_AWAY`]) and `Err` for any other
/// end. Either way, the
/// handlers still running are cancelled, and have dropped their clones of
/// the link, by the time it returns (a link kept alive keeps its
/// endpoint's UDP socket bound).
pub async fn serve_requests<Req, Resp, F, Fut>(link: Link, handler: F) -> Result<(), NetError>
where
    Req: DeserializeOwned + Send + 'static,
    Resp: Serialize + Send + 'static,
    F: Fn(Req) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let handler = Arc::new(handler);
    let mut tasks: JoinSet<Result<(), NetError>> = JoinSet::new();
    loop {
        tokio::select! {
            // Look at finished tasks first, so a malformed frame is reported
            // as such even if the connection closes right after.
            biased;
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    link.close_malformed(&e);
                    tasks.shutdown().await;
                    return Err(e);
                }
                Err(e) => {
                    // A handler panicked: a bug on this side, not the peer's.
                    // Its stream was reset when the task unwound.
                    tracing::error!(peer = %link.peer.name, error = %e, "request handler failed");
                }
            },
            accepted = link.conn.accept_bi() => match accepted {
                Ok((send, recv)) => {
                    tasks.spawn(serve_one(link.clone(), handler.clone(), send, recv));
                }
                Err(e) => {
                    // The handlers still running hold clones of the link
                    // (and so the endpoint's socket): stop them before
                    // returning.
                    tasks.shutdown().await;
                    return link.ended(e);
                }
            },
        }
    }
}

/// Reads one request, runs the handler and replies. Returns `Err` only for
/// a malformed frame (the caller closes the link).
async fn serve_one<Req, Resp, F, Fut>(
    link: Link,
    handler: Arc<F>,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) -> Result<(), NetError>
where
    Req: DeserializeOwned,
    Resp: Serialize,
    F: Fn(Req) -> Fut,
    Fut: Future<Output = Resp>,
{
    let responder = Responder {
        send: SendGuard::new(send, RESET_NO_RESPONSE),
        max_frame: link.max_frame,
    };
    let req = match tokio::time::timeout(
        REQUEST_READ_TIMEOUT,
        read_frame::<Req, _>(&mut recv, link.max_frame),
    )
    .await
    {
        Ok(Ok(req)) => req,
        Ok(Err(e)) if e.is_malformed_frame() => return Err(e),
        Ok(Err(e)) => {
            let e = map_stream_error(e);
            tracing::debug!(peer = %link.peer.name, error = %e, "request stream dropped");
            return Ok(());
        }
        Err(_) => {
            tracing::debug!(peer = %link.peer.name, "request not received in time; dropped");
            return Ok(());
        }
    };
    let resp = handler(req).await;
    // Encoded here rather than through `Responder::respond` so that no
    // reference to `resp` is held across an await (`Resp` need not be `Sync`).
    let bytes = match encode_frame_limited(&resp, link.max_frame) {
        Ok(bytes) => bytes,
        Err(e) => {
            // Dropping the responder resets the stream: the requester fails
            // fast.
            tracing::warn!(peer = %link.peer.name, error = %e, "reply cannot be encoded");
            return Ok(());
        }
    };
    drop(resp);
    let mut responder = responder;
    if let Err(e) = responder.send.write_all_and_finish(&bytes).await {
        tracing::debug!(peer = %link.peer.name, error = %e, "reply not delivered");
    }
    Ok(())
}
