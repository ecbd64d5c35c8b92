//! A minimal HTTP/1.1 client for intranet calls to other virtual servers.

use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::http::{read_head, Body, Framing, Request, MAX_BODY};

/// Timeout of intranet calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// One HTTP/1.1 request to an `http://` URL, on a fresh connection.
pub(crate) fn http_request(
    method: &str,
    url: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<u8>), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("only http:// URLs are supported: {url}"))?;
    let (authority, target) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority)?;
    let addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let mut last_err = format!("{host} has no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CALL_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_err = format!("cannot connect to {addr}: {e}"),
        }
    }
    let stream = stream.ok_or(last_err)?;
    let io_err = |e: io::Error| format!("intranet call failed: {e}");
    stream
        .set_read_timeout(Some(CALL_TIMEOUT))
        .map_err(io_err)?;
    stream
        .set_write_timeout(Some(CALL_TIMEOUT))
        .map_err(io_err)?;

    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: rust-vs\r\n\
         Accept: */*\r\nConnection: close\r\n"
    );
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str("\r\n");
    let mut w = &stream;
    w.write_all(head.as_bytes()).map_err(io_err)?;
    w.write_all(body).map_err(io_err)?;
    w.flush().map_err(io_err)?;

    let mut r = BufReader::new(&stream);
    loop {
        let (status_line, headers) = read_head(&mut r)
            .map_err(io_err)?
            .ok_or("the intranet closed the connection without answering")?;
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("bad status line: {status_line}"))?;
        if (100..200).contains(&status) {
            continue; // 100 Continue and friends
        }
        let resp = Request {
            method: String::new(),
            path: String::new(),
            query: String::new(),
            version: String::new(),
            headers,
        };
        let framing = if method == "HEAD" || status == 204 || status == 304 {
            Framing::Length(0)
        } else if resp.has_token("Transfer-Encoding", "chunked") {
            Framing::Chunked
        } else if let Some(n) = resp.header("Content-Length").and_then(|v| v.parse().ok()) {
            Framing::Length(n)
        } else {
            Framing::Eof
        };
        let data = Body::new(&mut r, framing)
            .read_all(MAX_BODY)
            .map_err(io_err)?;
        return Ok((status, data));
    }
}

pub(crate) fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad host: {authority}"))?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("bad port in {authority}"))?,
        None => 80,
    };
    Ok((host, port))
}
