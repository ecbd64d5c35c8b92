//! The endpoint's UDP socket as quinn sees it, closable at a known moment.

use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::watch;

/// The UDP socket of an endpoint, shared by quinn between the endpoint
/// driver and every connection (what quinn's tokio runtime makes, plus
/// [`close`](Self::close)).
///
/// quinn keeps its socket for as long as any connection object lives,
/// drained or not, so a [`Link`](super::Link) clone forgotten anywhere, or a closed
/// connection still draining, would keep the port bound. `close` closes the
/// file descriptor at once instead; after it, sends are dropped and
/// nothing more is received.
#[derive(Debug)]
pub(super) struct EndpointSocket {
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
    pub(super) fn new(socket: std::net::UdpSocket) -> io::Result<(Arc<Self>, watch::Receiver<()>)> {
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
    pub(super) fn close(&self) {
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
