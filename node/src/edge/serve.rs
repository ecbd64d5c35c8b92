//! Serving the HTTP edge with bounds on its connections (`[server.edge]`):
//!
//! - **connection cap**: at most `max_connections` open at once; past it a
//!   new connection is closed as soon as it is accepted, while the open
//!   ones are served as usual;
//! - **header-read timeout**: once the first byte of a request arrives, its
//!   complete head must follow within `header_read_timeout_ms`, or the
//!   connection is closed (a client dribbling its headers holds a
//!   connection for that long at most);
//! - **idle timeout**: a connection with no request in flight — just
//!   accepted, or kept alive after a response — is closed after
//!   `idle_timeout_ms` without a new request.
//!
//! A request being served (its response body included, however long it
//! streams) is never cut by either timeout. HTTP/1.1 and HTTP/2 (prior
//! knowledge) are served, with upgrades, as `axum::serve` does.
//!
//! The timers are a per-connection watchdog over a [`Phase`] that the
//! connection's I/O (first byte of a head) and its service (request in,
//! response body done) move; [`due`] is the pure decision.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use respawn_config::EdgeLimits;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Instant;
use tower::ServiceExt;

/// Where a connection stands, and since when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// No request in flight and no byte of a new one.
    Idle(Instant),
    /// Bytes of a request head arrived; the head is not complete.
    ReadingHead(Instant),
    /// At least one request is being served.
    Busy,
}

/// Why the watchdog closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Closed {
    Idle,
    HeaderTimeout,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::Idle => "idle",
            Closed::HeaderTimeout => "header_read_timeout",
        }
    }
}

/// When the connection in `phase` is to be closed, and why (`None`: not
/// while it stays in this phase).
pub fn due(phase: Phase, limits: &EdgeLimits) -> Option<(Instant, Closed)> {
    match phase {
        Phase::Idle(since) => Some((
            since + Duration::from_millis(limits.idle_timeout_ms),
            Closed::Idle,
        )),
        Phase::ReadingHead(since) => Some((
            since + Duration::from_millis(limits.header_read_timeout_ms),
            Closed::HeaderTimeout,
        )),
        Phase::Busy => None,
    }
}

/// The phase of one connection, moved by its I/O and its service.
struct Activity {
    phase: watch::Sender<Phase>,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            phase: watch::Sender::new(Phase::Idle(Instant::now())),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Bytes were read from the client.
    fn read_bytes(&self) {
        self.phase.send_if_modified(|p| match p {
            Phase::Idle(_) => {
                *p = Phase::ReadingHead(Instant::now());
                true
            }
            _ => false,
        });
    }

    /// A request head is complete and handed to the router.
    fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.phase.send_replace(Phase::Busy);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight; dropped once its response body is done (or
/// dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.phase.send_replace(Phase::Idle(Instant::now()));
        }
    }
}

/// A response body that holds its request's [`InFlight`] until it ends.
struct TrackedBody {
    inner: axum::body::Body,
    _in_flight: InFlight,
}

impl HttpBody for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, telling [`Activity`] when bytes arrive.
struct WatchedIo {
    tcp: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read_bytes();
        }
        r
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

/// Serves `app` on `listener` within `limits` until the task is dropped.
/// Handlers can extract `ConnectInfo<SocketAddr>`.
pub async fn serve(listener: TcpListener, app: Router, limits: EdgeLimits) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: the listener
                // itself is fine; back off a little and accept again.
                tracing::warn!(error = %e, "HTTP edge cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
            metrics::counter!("respawn_edge_connections_refused_total").increment(1);
            tracing::debug!(%peer, "HTTP edge at its connection cap; connection closed");
            drop(tcp);
            continue;
        };
        // TCP_NODELAY: without it a response written in two pieces
        // (headers, then body) waits for the client's delayed ACK, up to
        // 40 ms (measured: 24 ms p50 added per proxied call).
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let limits = limits.clone();
        tokio::spawn(async move {
            serve_connection(tcp, peer, app, &limits).await;
            drop(permit);
        });
    }
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, app: Router, limits: &EdgeLimits) {
    let activity = Activity::new();
    let io = TokioIo::new(WatchedIo {
        tcp,
        activity: Arc::clone(&activity),
    });
    let service_activity = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let in_flight = service_activity.request_started();
        req.extensions_mut().insert(ConnectInfo(peer));
        let app = app.clone();
        async move {
            let resp = app.oneshot(req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| TrackedBody {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut phase = activity.phase.subscribe();
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP edge connection ended with an error");
            }
        }
        why = watchdog(&mut phase, limits) => {
            metrics::counter!("respawn_edge_connections_closed_total", "reason" => why.as_str())
                .increment(1);
            tracing::debug!(%peer, reason = why.as_str(), "HTTP edge connection closed");
        }
    }
}

/// Returns once the connection has overstayed its phase.
async fn watchdog(phase: &mut watch::Receiver<Phase>, limits: &EdgeLimits) -> Closed {
    loop {
        let now = *phase.borrow_and_update();
        match due(now, limits) {
            Some((deadline, why)) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => return why,
                    changed = phase.changed() => {
                        if changed.is_err() {
                            return why; // Unreachable: the connection holds the sender.
                        }
                    }
                }
            }
            None => {
                if phase.changed().await.is_err() {
                    return Closed::Idle;
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
