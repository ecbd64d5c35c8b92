//! [`Link`]: one authenticated QUIC connection, its requests and replies
//! ([`Responder`]), and [`serve_requests`], which answers a peer's requests.

use super::protocol::*;
use crate::frame::{encode_frame_limited, read_frame, MAX_NODE_FRAME_LEN};
use crate::pki::PeerKind;
use crate::{tls, NetError};
use quinn::VarInt;
use respawn_types::agent::MAX_FRAME_LEN;
use respawn_types::text::truncate_utf8;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// Longest close reason sent to a peer, in bytes.
const MAX_REASON_LEN: usize = 200;

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
    pub(super) fn from_connection(conn: quinn::Connection) -> Result<Link, NetError> {
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
