//! The listening TCP sockets of this network namespace, from the kernel's
//! `NETLINK_SOCK_DIAG` (what `ss -ltn` uses): the kernel walks only the
//! listening sockets, where reading `/proc/net/tcp` walks every TCP socket
//! of the host — 15–25 ms with a few hundred sockets in TIME_WAIT, which was
//! most of the time between a VS instance's `listen()` and its RUNNING.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
    SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use crate::listener::Listener;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const TCP_LISTEN: u32 = 10;
/// `struct inet_diag_msg`: family, state, timer, retrans, the socket id
/// (48 bytes), expires, rqueue, wqueue, uid, inode.
const DIAG_MSG: usize = 72;
/// The longest a dump may take before it counts as failed.
const RECV_TIMEOUT: Duration = Duration::from_secs(1);
/// The dump is read in chunks of this size (the kernel fills each up to it).
const RECV_BUF: usize = 32 * 1024;

/// The request: a dump of the TCP sockets of `family` in state LISTEN.
fn request(family: u8, seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDR + 56) as u32;
    let mut b = Vec::with_capacity(len as usize);
    b.extend_from_slice(&len.to_ne_bytes());
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    b.extend_from_slice(&seq.to_ne_bytes());
    b.extend_from_slice(&0u32.to_ne_bytes());
    // struct inet_diag_req_v2
    b.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    b.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    b.extend_from_slice(&[0u8; 48]); // any socket id
    b
}

fn u16_ne(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_ne(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// What one chunk of the answer holds.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Sockets; more chunks follow.
    More(Vec<(Listener, u64)>),
    /// The last sockets: the dump is complete.
    Done(Vec<(Listener, u64)>),
    /// The kernel refused the request (negative errno).
    Error(i32),
}

/// Parses one chunk of netlink messages answering [`request`].
pub(crate) fn parse(mut b: &[u8]) -> Result<Chunk, String> {
    let mut out = Vec::new();
    while b.len() >= NLMSG_HDR {
        let len = u32_ne(b, 0).ok_or("short header")? as usize;
        let kind = u16_ne(b, 4).ok_or("short header")?;
        if len < NLMSG_HDR || len > b.len() {
            return Err(format!("bad netlink message length {len}"));
        }
        let body = &b[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(Chunk::Done(out)),
            NLMSG_ERROR => {
                let errno = u32_ne(body, 0).ok_or("short error message")? as i32;
                return Ok(Chunk::Error(errno));
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG => {
                let port = u16::from_be_bytes([body[4], body[5]]);
                let addr = match body[0] as i32 {
                    libc::AF_INET => {
                        IpAddr::V4(Ipv4Addr::new(body[8], body[9], body[10], body[11]))
                    }
                    libc::AF_INET6 => {
                        let mut a = [0u8; 16];
                        a.copy_from_slice(&body[8..24]);
                        IpAddr::V6(Ipv6Addr::from(a))
                    }
                    _ => return Err(format!("unexpected address family {}", body[0])),
                };
                let inode = u32_ne(body, 68).ok_or("short socket message")?;
                if body[1] as u32 == TCP_LISTEN {
                    out.push((Listener { addr, port }, u64::from(inode)));
                }
            }
            _ => {}
        }
        // Messages are aligned to 4 bytes.
        let next = (len + 3) & !3;
        b = b.get(next..).unwrap_or(&[]);
    }
    Ok(Chunk::More(out))
}

/// The listening TCP sockets (IPv4 and IPv6) of this process's network
/// namespace, with their inodes.
pub(crate) fn tcp_listeners() -> io::Result<Vec<(Listener, u64)>> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkSockDiag,
    )?;
    let t = RECV_TIMEOUT;
    setsockopt(
        &fd,
        sockopt::ReceiveTimeout,
        &TimeVal::new(t.as_secs() as _, t.subsec_micros() as _),
    )?;
    let kernel = NetlinkAddr::new(0, 0);
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::new();
    for (seq, family) in [(1, libc::AF_INET as u8), (2, libc::AF_INET6 as u8)] {
        sendto(
            fd.as_raw_fd(),
            &request(family, seq),
            &kernel,
            MsgFlags::empty(),
        )?;
        loop {
            let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
            if n == 0 {
                return Err(io::Error::other("sock_diag: the dump ended early"));
            }
            match parse(&buf[..n]).map_err(|e| io::Error::other(format!("sock_diag: {e}")))? {
                Chunk::More(l) => out.extend(l),
                Chunk::Done(l) => {
                    out.extend(l);
                    break;
                }
                Chunk::Error(e) => return Err(io::Error::from_raw_os_error(-e)),
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0u8; 10]);
        m.extend_from_slice(body);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    fn socket_msg(family: i32, state: u8, addr: &[u8], port: u16, inode: u32) -> Vec<u8> {
        let mut b = vec![0u8; DIAG_MSG];
        b[0] = family as u8;
        b[1] = state;
        b[4..6].copy_from_slice(&port.to_be_bytes());
        b[8..8 + addr.len()].copy_from_slice(addr);
        b[68..72].copy_from_slice(&inode.to_ne_bytes());
        b
    }

    #[test]
    fn parses_listeners_and_the_end_of_the_dump() {
        let mut chunk = message(
            SOCK_DIAG_BY_FAMILY,
            &socket_msg(libc::AF_INET, 10, &[0, 0, 0, 0], 8080, 77),
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        chunk.extend(message(
            SOCK_DIAG_BY_FAMILY,
            &socket_msg(libc::AF_INET6, 10, &v6, 9090, 78),
        ));
        // Not listening: left out (the kernel filters, this is a second check).
        chunk.extend(message(
            SOCK_DIAG_BY_FAMILY,
            &socket_msg(libc::AF_INET, 1, &[10, 0, 0, 1], 1, 79),
        ));
        let listeners = vec![
            (
                Listener {
                    addr: "0.0.0.0".parse().unwrap(),
                    port: 8080,
                },
                77,
            ),
            (
                Listener {
                    addr: "::1".parse().unwrap(),
                    port: 9090,
                },
                78,
            ),
        ];
        assert_eq!(parse(&chunk), Ok(Chunk::More(listeners.clone())));
        chunk.extend(message(NLMSG_DONE, &[0u8; 4]));
        assert_eq!(parse(&chunk), Ok(Chunk::Done(listeners)));
        assert_eq!(
            parse(&message(NLMSG_ERROR, &(-22i32).to_ne_bytes())),
            Ok(Chunk::Error(-22))
        );
        let mut bad = message(NLMSG_DONE, &[0u8; 4]);
        bad[0] = 200;
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn finds_a_listening_socket_of_this_process() {
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        let found = tcp_listeners().unwrap();
        assert!(
            found
                .iter()
                .any(|(x, _)| x.port == port && x.addr == IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            "{port} not in {found:?}"
        );
        drop(l);
        assert!(!tcp_listeners().unwrap().iter().any(|(x, _)| x.port == port));
    }
}
