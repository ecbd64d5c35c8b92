//! [`Endpoint`]: a QUIC endpoint that listens for links and opens them,
//! and the accept loop that handshakes incoming connections.

use super::conn::Link;
use super::protocol::*;
use super::socket::EndpointSocket;
use crate::pki::{Identity, PeerKind};
use crate::{tls, NetError};
use quinn::VarInt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Mutex};
use tokio::task::{JoinHandle, JoinSet};

/// Accepted links waiting for [`Endpoint::accept`].
const ACCEPT_QUEUE: usize = 64;

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
            link.close_wrong_peer("server must be a node");
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

    /// Silences the endpoint at once, as a crash of its host would: the UDP
    /// socket is closed first, so nothing more is sent or received (no
    /// close reaches the peers: they find out by their idle timeouts), then
    /// every connection is dropped and the listener stops. For tests that
    /// crash a node in process; [`shutdown`](Self::shutdown) is the orderly
    /// stop.
    pub fn silence(&self) {
        self.inner.socket.close();
        self.inner.quic.close(VarInt::from_u32(0), b"crashed");
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
