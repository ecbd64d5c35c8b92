//! The link protocol's close and reset codes and its time limits.

use std::time::Duration;

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

/// Default limit for [`Endpoint::connect`](super::Endpoint::connect).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// An accepted connection must complete its handshake within this.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// [`serve_requests`](super::serve_requests) drops a request stream whose frame has not fully
/// arrived within this.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// [`Endpoint::shutdown`](super::Endpoint::shutdown) lets closed connections drain this long at most
/// before it closes the socket.
pub const CLOSE_GRACE: Duration = Duration::from_millis(200);
