//! Forking (shared-memory) mode, the seed's ServerHostingForking module.
//!
//! A process that calls `fork()` should not run threads (a forked child
//! gets only the forking thread, and locks other threads held stay locked),
//! so the forking parent's calls are kept apart from [`crate::ServerSdk`]:
//! [`ForkingParent`] makes blocking HTTP calls on the calling thread, with
//! `std` only — no runtime, no background thread, nothing to break `fork`.
//!
//! The forked process then uses the ordinary [`crate::ServerSdk`], created
//! *after* the fork ([`crate::ServerSdk::from_env`]): its
//! [`crate::ServerSdk::process_ready`] sends its pid with the parent's token
//! it inherited, and the SDK switches to the process id and token the agent
//! gives it.

use crate::SdkError;
use respawn_types::sdk::{
    self as api, AvailableDsInstanceCount, DsInstancePerCvm, ForkingProcessReadyRequest,
};
use respawn_types::text::truncate_utf8;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Time limit of one call.
const TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer read.
const MAX_ANSWER: u64 = 1024 * 1024;

/// The forking parent's handle on the agent: blocking, single-threaded.
#[derive(Clone, Debug)]
pub struct ForkingParent {
    /// `host:port` of the agent's local API.
    addr: String,
    token: String,
}

impl ForkingParent {
    /// Reads `RESPAWN_SDK_ENDPOINT` and `RESPAWN_PROCESS_TOKEN`.
    pub fn from_env() -> Result<Self, SdkError> {
        let var =
            |name: &'static str| std::env::var(name).map_err(|_| SdkError::MissingEnv { name });
        Self::new(&var(api::ENV_SDK_ENDPOINT)?, &var(api::ENV_PROCESS_TOKEN)?)
    }

    /// From explicit values: an `http://host:port` endpoint and the token.
    pub fn new(endpoint: &str, token: &str) -> Result<Self, SdkError> {
        let invalid = |reason: &str| SdkError::InvalidConfig {
            name: api::ENV_SDK_ENDPOINT,
            reason: format!("{endpoint:?} {reason}"),
        };
        let addr = endpoint
            .strip_prefix("http://")
            .ok_or_else(|| invalid("is not an http:// URL"))?
            .trim_end_matches('/');
        if addr.is_empty() || addr.contains('/') {
            return Err(invalid("must be http://host:port"));
        }
        if token.is_empty() || token.contains(['\r', '\n']) {
            return Err(SdkError::InvalidConfig {
                name: api::ENV_PROCESS_TOKEN,
                reason: "empty or not a header value".into(),
            });
        }
        Ok(Self {
            addr: addr.to_owned(),
            token: token.to_owned(),
        })
    }

    /// ProcessReady of the forking parent: it is about to fork the DS
    /// processes that host battle sessions; it holds none itself.
    pub fn process_ready(&self, log_paths: Vec<String>) -> Result<(), SdkError> {
        self.call::<_, serde_json::Value>(
            api::PATH_FORKING_PROCESS_READY,
            &ForkingProcessReadyRequest { log_paths },
        )
        .map(|_| ())
    }

    /// QueryDsInstancePerCVMConfig: how many forked processes the fleet
    /// wants on this host.
    pub fn query_ds_instance_per_cvm_config(&self) -> Result<u32, SdkError> {
        self.call::<_, DsInstancePerCvm>(
            api::PATH_QUERY_DS_INSTANCE_PER_CVM_CONFIG,
            &serde_json::json!({}),
        )
        .map(|a| a.ds_instance_per_cvm)
    }

    /// QueryAvailableDsInstanceCount: how many forked processes are
    /// registered on this host and still run.
    pub fn query_available_ds_instance_count(&self) -> Result<u32, SdkError> {
        self.call::<_, AvailableDsInstanceCount>(
            api::PATH_QUERY_AVAILABLE_DS_INSTANCE_COUNT,
            &serde_json::json!({}),
        )
        .map(|a| a.available_ds_instance_count)
    }

    fn call<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, SdkError> {
        let body = serde_json::to_vec(body).map_err(|e| SdkError::InvalidConfig {
            name: "body",
            reason: e.to_string(),
        })?;
        let io = |e: std::io::Error| SdkError::Io(e.to_string());
        let addr = self
            .addr
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| SdkError::Io(format!("{} does not resolve", self.addr)))?;
        let mut conn = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(io)?;
        conn.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
        conn.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            self.token,
            body.len()
        );
        conn.write_all(head.as_bytes()).map_err(io)?;
        conn.write_all(&body).map_err(io)?;
        let mut answer = Vec::new();
        conn.take(MAX_ANSWER).read_to_end(&mut answer).map_err(io)?;
        let (status, body) = split_answer(&answer).ok_or_else(|| SdkError::UnexpectedResponse {
            status: 0,
            body: truncate_utf8(&String::from_utf8_lossy(&answer), 300).to_owned(),
        })?;
        let unexpected = || SdkError::UnexpectedResponse {
            status,
            body: truncate_utf8(&String::from_utf8_lossy(body), 300).to_owned(),
        };
        if !(200..300).contains(&status) {
            let e: api::SdkError = serde_json::from_slice(body).map_err(|_| unexpected())?;
            return Err(SdkError::Agent {
                status,
                code: e.error,
                message: e.message,
            });
        }
        serde_json::from_slice(body).map_err(|_| unexpected())
    }
}

/// The status and body of an HTTP/1.1 answer read to its end (the agent
/// sends JSON bodies with a Content-Length).
fn split_answer(raw: &[u8]) -> Option<(u16, &[u8])> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let body = &raw[end + 4..];
    let len = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    });
    Some((status, len.map_or(body, |n| &body[..n.min(body.len())])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_split_into_status_and_body() {
        let raw = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(split_answer(raw), Some((409, &b"{}"[..])));
        assert_eq!(split_answer(b"garbage"), None);
    }

    #[test]
    fn endpoints_must_be_http_host_port() {
        assert!(ForkingParent::new("http://127.0.0.1:7601", "t").is_ok());
        assert!(ForkingParent::new("https://127.0.0.1:7601", "t").is_err());
        assert!(ForkingParent::new("http://127.0.0.1:7601/x", "t").is_err());
        assert!(ForkingParent::new("http://127.0.0.1:7601", "").is_err());
    }
}
