//! [`Listener`]: a listening TCP socket, as `/proc` ([`crate::procfs`]) and
//! netlink ([`crate::sock_diag`]) report it.

use std::net::IpAddr;

/// A TCP socket in the LISTEN state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Listener {
    pub addr: IpAddr,
    pub port: u16,
}

impl Listener {
    /// Listening on every interface (`0.0.0.0` or `::`).
    pub fn is_wildcard(&self) -> bool {
        self.addr.is_unspecified()
            || matches!(self.addr, IpAddr::V6(a) if a.to_ipv4_mapped().is_some_and(|v4| v4.is_unspecified()))
    }

    /// Listening on a loopback address only (`127.0.0.0/8`, `::1`, mapped 127/8).
    pub fn is_loopback(&self) -> bool {
        match self.addr {
            IpAddr::V4(a) => a.is_loopback(),
            IpAddr::V6(a) => {
                a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        }
    }
}

impl std::fmt::Display for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.addr {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.port),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.port),
        }
    }
}
