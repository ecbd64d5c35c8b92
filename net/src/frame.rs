//! Length-prefixed bincode frames.
//!
//! ```text
//! +----------------------------+------------------------------------+
//! | length: u32, big-endian    | payload: `length` bytes            |
//! | (4 bytes)                  | bincode 2, standard() config,       |
//! |                            | serde encoding of one message      |
//! +----------------------------+------------------------------------+
//! ```
//!
//! `length` counts the payload only and must not exceed the link's limit:
//! [`MAX_FRAME_LEN`] (1 MiB) by default and on every agent link,
//! [`MAX_NODE_FRAME_LEN`] (16 MiB) on node↔node links, which carry Raft
//! log batches and snapshot chunks. The payload must decode to exactly one
//! message with no bytes left over. Decoding uses a bincode byte limit equal
//! to the frame limit, so a length field inside the payload (a `Vec`, a
//! `String`) cannot make the decoder allocate more than that.

use crate::NetError;
use respawn_types::agent::MAX_FRAME_LEN;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A byte string inside a message, encoded as a length and the bytes
/// (the same wire form as a `Vec<u8>`), but read and written in bulk
/// rather than byte by byte. Use it for large opaque payloads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Blob(pub Vec<u8>);

impl Serialize for Blob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Blob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Blob;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Blob, E> {
                Ok(Blob(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Blob, E> {
                Ok(Blob(v))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Blob, A::Error> {
                // Self-describing formats (JSON) write bytes as a sequence.
                let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    v.push(b);
                }
                Ok(Blob(v))
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// Size of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Frame limit of node↔node links (16 MiB): Raft append-entries batches
/// and snapshot chunks are bigger than agent messages. Agent links keep
/// [`MAX_FRAME_LEN`]. No frame of any link may exceed this.
pub const MAX_NODE_FRAME_LEN: usize = 16 * 1024 * 1024;

/// The bincode configuration of frame payloads on links limited to
/// [`MAX_FRAME_LEN`].
fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_LEN>()
}

/// The bincode configuration of frame payloads on node links.
fn node_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_NODE_FRAME_LEN>()
}

/// Encodes `msg` as one complete frame (length prefix + payload).
///
/// Fails with [`NetError::FrameTooLarge`] when the payload would exceed
/// [`MAX_FRAME_LEN`].
pub fn encode_frame<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, NetError> {
    encode_frame_limited(msg, MAX_FRAME_LEN)
}

/// [`encode_frame`] with the limit `max_len`, itself capped at
/// [`MAX_NODE_FRAME_LEN`].
pub fn encode_frame_limited<T: Serialize + ?Sized>(
    msg: &T,
    max_len: usize,
) -> Result<Vec<u8>, NetError> {
    let max = max_len.min(MAX_NODE_FRAME_LEN);
    let mut buf = vec![0u8; HEADER_LEN];
    if max <= MAX_FRAME_LEN {
        bincode::serde::encode_into_std_write(msg, &mut buf, config())?;
    } else {
        bincode::serde::encode_into_std_write(msg, &mut buf, node_config())?;
    }
    let len = buf.len() - HEADER_LEN;
    if len > max {
        return Err(NetError::FrameTooLarge { len, max });
    }
    // `len <= MAX_NODE_FRAME_LEN` (16 MiB) fits in a u32.
    let prefix = (len as u32).to_be_bytes();
    buf[..HEADER_LEN].copy_from_slice(&prefix);
    Ok(buf)
}

/// Decodes a frame payload (without its length prefix), rejecting trailing
/// bytes. Inner lengths are limited to [`MAX_FRAME_LEN`].
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, NetError> {
    decode_payload_limited(payload, MAX_FRAME_LEN)
}

/// [`decode_payload`] for a frame read under the limit `max_len`: inner
/// lengths are limited to [`MAX_FRAME_LEN`] when `max_len` is at most
/// that, to [`MAX_NODE_FRAME_LEN`] otherwise.
pub fn decode_payload_limited<T: DeserializeOwned>(
    payload: &[u8],
    max_len: usize,
) -> Result<T, NetError> {
    let (msg, used) = if max_len <= MAX_FRAME_LEN {
        bincode::serde::decode_from_slice::<T, _>(payload, config())?
    } else {
        bincode::serde::decode_from_slice::<T, _>(payload, node_config())?
    };
    if used != payload.len() {
        return Err(NetError::TrailingBytes {
            extra: payload.len() - used,
        });
    }
    Ok(msg)
}

/// Writes `msg` as one frame and flushes the writer.
pub async fn write_frame<T, W>(w: &mut W, msg: &T) -> Result<(), NetError>
where
    T: Serialize + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let buf = encode_frame(msg)?;
    w.write_all(&buf).await.map_err(NetError::Io)?;
    w.flush().await.map_err(NetError::Io)?;
    Ok(())
}

/// Reads one frame and decodes it.
///
/// `max_len` bounds the payload length; it is capped at
/// [`MAX_NODE_FRAME_LEN`] (pass [`MAX_FRAME_LEN`] for anything an agent
/// sends).
/// The length prefix is checked before any payload byte is read or any
/// buffer allocated. Reads exactly one frame: bytes after it are left in the
/// reader.
pub async fn read_frame<T, R>(r: &mut R, max_len: usize) -> Result<T, NetError>
where
    T: DeserializeOwned,
    R: AsyncRead + Unpin + ?Sized,
{
    let max = max_len.min(MAX_NODE_FRAME_LEN);
    let mut header = [0u8; HEADER_LEN];
    read_part(r, &mut header, "length prefix").await?;
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(NetError::FrameTooLarge { len, max });
    }
    let mut payload = vec![0u8; len];
    read_part(r, &mut payload, "payload").await?;
    decode_payload_limited(&payload, max)
}

async fn read_part<R>(r: &mut R, buf: &mut [u8], part: &'static str) -> Result<(), NetError>
where
    R: AsyncRead + Unpin + ?Sized,
{
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(NetError::Truncated { part })
        }
        Err(e) => Err(NetError::Io(e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use respawn_types::agent::{AgentHello, AgentToServer, LiveProcess, PROTOCOL_VERSION};
    use respawn_types::{FleetId, HostId, ProcessId, VsInstanceId};

    fn hello() -> AgentToServer {
        AgentToServer::Hello(AgentHello {
            protocol_version: PROTOCOL_VERSION,
            host_id: HostId::new_unchecked("host-1"),
            fleet_id: FleetId::new_unchecked("fleet-1"),
            ip: "10.0.0.1".into(),
            live_processes: vec![LiveProcess {
                process_id: ProcessId::new_unchecked("proc-1"),
                pid: 42,
                port: Some(7777),
                log_paths: vec!["/tmp/a.log".into()],
                ending: false,
                role: Default::default(),
            }],
            live_vs: vec![VsInstanceId::new_unchecked("vsi-1")],
        })
    }

    async fn read_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetError> {
        let mut r = bytes;
        read_frame(&mut r, MAX_FRAME_LEN).await
    }

    #[tokio::test]
    async fn roundtrip_and_layout() {
        let msg = hello();
        let mut buf = Vec::new();
        write_frame(&mut buf, &msg).await.unwrap();
        let len = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len() - HEADER_LEN);
        let direct = bincode::serde::encode_to_vec(&msg, bincode::config::standard()).unwrap();
        assert_eq!(&buf[HEADER_LEN..], &direct[..]);

        // Two frames back to back: each read consumes exactly one.
        let second = AgentToServer::ProcessEnding {
            process_id: ProcessId::new_unchecked("proc-2"),
        };
        write_frame(&mut buf, &second).await.unwrap();
        let mut r = &buf[..];
        let a: AgentToServer = read_frame(&mut r, MAX_FRAME_LEN).await.unwrap();
        let b: AgentToServer = read_frame(&mut r, MAX_FRAME_LEN).await.unwrap();
        assert_eq!(a, msg);
        assert_eq!(b, second);
        assert!(r.is_empty());
    }

    #[tokio::test]
    async fn oversized_length_prefix_is_rejected_before_reading() {
        let bytes = [0xff, 0xff, 0xff, 0xff];
        let err = read_bytes::<AgentToServer>(&bytes).await.unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { len, max } if len == u32::MAX as usize && max == MAX_FRAME_LEN),
            "{err:?}"
        );
        let just_over = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        let err = read_bytes::<AgentToServer>(&just_over).await.unwrap_err();
        assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn caller_limit_is_applied() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &hello()).await.unwrap();
        let mut r = &buf[..];
        let err = read_frame::<AgentToServer, _>(&mut r, 8).await.unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { max: 8, .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn truncated_frames() {
        let err = read_bytes::<AgentToServer>(&[]).await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Truncated {
                    part: "length prefix"
                }
            ),
            "{err:?}"
        );
        let err = read_bytes::<AgentToServer>(&[0, 0]).await.unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Truncated {
                    part: "length prefix"
                }
            ),
            "{err:?}"
        );
        let mut buf = Vec::new();
        write_frame(&mut buf, &hello()).await.unwrap();
        buf.truncate(buf.len() - 1);
        let err = read_bytes::<AgentToServer>(&buf).await.unwrap_err();
        assert!(
            matches!(err, NetError::Truncated { part: "payload" }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn garbage_payload_is_a_decode_error() {
        // Variant index 200 does not exist in AgentToServer.
        let mut bytes = vec![0, 0, 0, 3];
        bytes.extend_from_slice(&[200, 1, 2]);
        let err = read_bytes::<AgentToServer>(&bytes).await.unwrap_err();
        assert!(matches!(err, NetError::Decode(_)), "{err:?}");
        assert!(err.is_malformed_frame());
    }

    #[tokio::test]
    async fn huge_inner_length_does_not_allocate() {
        // A Vec<u8> claiming u64::MAX elements (varint 253 + 8 bytes) inside a
        // 9-byte frame: the decoder must refuse, not try to allocate.
        let mut payload = vec![253u8];
        payload.extend_from_slice(&u64::MAX.to_le_bytes());
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let err = read_bytes::<Vec<u8>>(&bytes).await.unwrap_err();
        assert!(matches!(err, NetError::Decode(_)), "{err:?}");
    }

    #[tokio::test]
    async fn trailing_bytes_are_rejected() {
        let mut payload = bincode::serde::encode_to_vec(
            AgentToServer::ProcessEnding {
                process_id: ProcessId::new_unchecked("proc-1"),
            },
            bincode::config::standard(),
        )
        .unwrap();
        payload.extend_from_slice(&[9, 9, 9]);
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        let err = read_bytes::<AgentToServer>(&bytes).await.unwrap_err();
        assert!(
            matches!(err, NetError::TrailingBytes { extra: 3 }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn oversized_message_is_not_written() {
        let big = vec![7u8; MAX_FRAME_LEN + 1];
        let mut buf = Vec::new();
        let err = write_frame(&mut buf, &big).await.unwrap_err();
        assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err:?}");
        assert!(buf.is_empty(), "nothing may be written");
        // The largest message that fits is accepted and reads back.
        let fits = vec![7u8; MAX_FRAME_LEN - 8];
        write_frame(&mut buf, &fits).await.unwrap();
        let back: Vec<u8> = read_bytes(&buf).await.unwrap();
        assert_eq!(back, fits);
    }

    #[tokio::test]
    async fn node_limit_allows_bigger_frames_only_when_asked() {
        let big = vec![7u8; 2 * MAX_FRAME_LEN];
        // The default (agent) limit refuses to encode it.
        let err = encode_frame(&big).unwrap_err();
        assert!(matches!(err, NetError::FrameTooLarge { .. }), "{err:?}");
        let frame = encode_frame_limited(&big, MAX_NODE_FRAME_LEN).unwrap();
        // Read under the agent limit: refused from the length prefix alone.
        let err = read_bytes::<Vec<u8>>(&frame).await.unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { max, .. } if max == MAX_FRAME_LEN),
            "{err:?}"
        );
        // Read under the node limit: accepted.
        let mut r = &frame[..];
        let back: Vec<u8> = read_frame(&mut r, MAX_NODE_FRAME_LEN).await.unwrap();
        assert_eq!(back, big);
        // No limit goes above the node limit.
        let huge = ((MAX_NODE_FRAME_LEN + 1) as u32).to_be_bytes();
        let mut r = &huge[..];
        let err = read_frame::<Vec<u8>, _>(&mut r, usize::MAX)
            .await
            .unwrap_err();
        assert!(
            matches!(err, NetError::FrameTooLarge { max, .. } if max == MAX_NODE_FRAME_LEN),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn blob_has_the_wire_form_of_a_vec() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
        let as_vec = encode_frame(&bytes).unwrap();
        let as_blob = encode_frame(&Blob(bytes.clone())).unwrap();
        assert_eq!(as_vec, as_blob);
        let back: Blob = read_bytes(&as_vec).await.unwrap();
        assert_eq!(back.0, bytes);
    }

    /// xorshift64*: deterministic pseudo-random bytes without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    #[tokio::test]
    async fn random_bytes_never_panic() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let valid = encode_frame(&hello()).unwrap();
        let mut decoded = 0;
        for i in 0..20_000 {
            let bytes: Vec<u8> = if i % 2 == 0 {
                // Pure noise with a plausible, small length prefix.
                let n = (rng.next() % 64) as usize;
                let mut b = (n as u32).to_be_bytes().to_vec();
                b.extend((0..n).map(|_| rng.next() as u8));
                b
            } else {
                // A valid frame with a few bytes flipped or cut off.
                let mut b = valid.clone();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() as usize) % b.len();
                    b[at] = rng.next() as u8;
                }
                let keep = b.len() - (rng.next() as usize % 3);
                b.truncate(keep);
                b
            };
            match read_bytes::<AgentToServer>(&bytes).await {
                Ok(_) => decoded += 1,
                Err(e) => assert!(e.is_malformed_frame(), "{e:?}"),
            }
            let _ = read_bytes::<respawn_types::agent::ServerToAgent>(&bytes).await;
        }
        // Mutations of a string byte still decode: the loop did exercise
        // the success path too.
        assert!(decoded > 0);
    }
}
