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
//! response body done) move; [`due`] is the pure decision. The phase moves
//! without waking anything (three moves per request on a keep-alive
//! connection): the watchdog looks at it when its timer fires, at the
//! current phase's deadline but never later than the shorter of the two
//! timeouts after its last look ([`next_look`]). A phase that starts after
//! a look has a deadline at least that far away, so no deadline is missed.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use respawn_config::EdgeLimits;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
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

/// When the watchdog, looking at `phase` at `now`, looks next: the phase's
/// deadline, but no later than the shorter timeout from now (a phase that
/// starts meanwhile cannot end sooner than that).
pub fn next_look(phase: Phase, now: Instant, limits: &EdgeLimits) -> Instant {
    let step = Duration::from_millis(
        limits
            .idle_timeout_ms
            .min(limits.header_read_timeout_ms)
            .max(1),
    );
    match due(phase, limits) {
        Some((deadline, _)) => deadline.min(now + step),
        None => now + step,
    }
}

/// The phase of one connection, moved by its I/O and its service.
struct Activity {
    phase: Mutex<Phase>,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            phase: Mutex::new(Phase::Idle(Instant::now())),
            in_flight: AtomicUsize::new(0),
        })
    }

    fn phase(&self) -> std::sync::MutexGuard<'_, Phase> {
        // Plain assignments under the lock: nothing to repair on poison.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes were read from the client.
    fn read_bytes(&self) {
        let mut p = self.phase();
        if matches!(*p, Phase::Idle(_)) {
            *p = Phase::ReadingHead(Instant::now());
        }
    }

    /// A request head is complete and handed to the router.
    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut p = self.phase();
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        *p = Phase::Busy;
        drop(p);
        InFlight(Arc::clone(self))
    }
}

/// One request in flight; dropped once its response body is done (or
/// dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut p = self.0.phase();
        // Under the phase lock, so that a request starting meanwhile
        // (HTTP/2) cannot be overwritten with Idle.
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            *p = Phase::Idle(Instant::now());
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
///
/// The connections are served by threads of their own, one per CPU, each
/// running a single-threaded runtime that accepts on the same listening
/// socket and has its own pool of keep-alive connections to VS instances
/// ([`EdgeThreads`]): a call stays on one thread from its request to the
/// instance's answer. Dropping the task stops them (and closes their
/// connections and the socket) before the drop returns. If the threads
/// cannot be started, the node's runtime serves.
pub async fn serve(listener: TcpListener, app: Router, limits: EdgeLimits) {
    serve_on(listener, app, limits, true).await
}

/// [`serve`], on the edge's own threads or (`own_threads` false) on the
/// runtime that polls this future.
pub async fn serve_on(listener: TcpListener, app: Router, limits: EdgeLimits, own_threads: bool) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    if !own_threads {
        return accept_loop(listener, app, limits, open).await;
    }
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "HTTP edge: cannot share its socket with its own threads");
            return;
        }
    };
    match EdgeThreads::start(&std_listener, n, &app, &limits, &open) {
        Ok(threads) => {
            let _threads = threads;
            std::future::pending::<()>().await;
        }
        Err(e) => {
            tracing::warn!(error = %e, "HTTP edge: cannot start its own threads; serving on the node's runtime");
            match TcpListener::from_std(std_listener) {
                Ok(l) => accept_loop(l, app, limits, open).await,
                Err(e) => tracing::warn!(error = %e, "HTTP edge: cannot serve"),
            }
        }
    }
}

/// The edge's own threads; dropping it stops them and waits for them.
struct EdgeThreads {
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl EdgeThreads {
    fn start(
        listener: &std::net::TcpListener,
        n: usize,
        app: &Router,
        limits: &EdgeLimits,
        open: &Arc<Semaphore>,
    ) -> std::io::Result<EdgeThreads> {
        let mut started = EdgeThreads {
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
        };
        for i in 0..n {
            let l = listener.try_clone()?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let (app, limits, open) = (app.clone(), limits.clone(), Arc::clone(open));
            let thread = std::thread::Builder::new()
                .name(format!("respawn-edge-{i}"))
                .spawn(move || {
                    respawn_proxy::Proxy::use_thread_pool();
                    rt.block_on(async move {
                        let l = match TcpListener::from_std(l) {
                            Ok(l) => l,
                            Err(e) => {
                                tracing::warn!(error = %e, "HTTP edge thread cannot listen");
                                return;
                            }
                        };
                        tokio::select! {
                            () = accept_loop(l, app, limits, open) => {}
                            _ = stopped => {}
                        }
                    });
                    // Dropping the runtime drops its connections' tasks.
                    drop(rt);
                })?;
            started.stops.push(stop);
            started.threads.push(thread);
        }
        Ok(started)
    }
}

impl Drop for EdgeThreads {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            // The threads end as soon as their runtime has dropped its
            // tasks; a panicked one has nothing left to stop.
            let _ = t.join();
        }
    }
}

/// Accepts and serves connections until the task is dropped.
async fn accept_loop(listener: TcpListener, app: Router, limits: EdgeLimits, open: Arc<Semaphore>) {
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
    tokio::select! {
        r = conn => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "HTTP edge connection ended with an error");
            }
        }
        why = watchdog(&activity, limits) => {
            metrics::counter!("respawn_edge_connections_closed_total", "reason" => why.as_str())
                .increment(1);
            tracing::debug!(%peer, reason = why.as_str(), "HTTP edge connection closed");
        }
    }
}

/// Returns once the connection has overstayed its phase.
async fn watchdog(activity: &Activity, limits: &EdgeLimits) -> Closed {
    loop {
        let now = Instant::now();
        let phase = *activity.phase();
        if let Some((deadline, why)) = due(phase, limits) {
            if deadline <= now {
                return why;
            }
        }
        tokio::time::sleep_until(next_look(phase, now, limits)).await;
    }
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
