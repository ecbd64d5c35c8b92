//! The HTTP/1.1 server side: requests and their heads, request bodies
//! (`Content-Length` or chunked), responses and how they are written.

use std::io::{self, BufRead, Read, Write};

use crate::json::Json;

/// Largest request head (request line and headers).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// Largest body read into memory (`/echo` streams, so it has no limit).
pub(crate) const MAX_BODY: u64 = 16 * 1024 * 1024;
/// Buffer size of connections and streamed bodies.
pub(crate) const CHUNK: usize = 64 * 1024;

pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) query: String,
    pub(crate) version: String,
    pub(crate) headers: Headers,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub(crate) fn keep_alive(&self) -> bool {
        if self.has_token("Connection", "close") {
            false
        } else if self.version == "HTTP/1.0" {
            self.has_token("Connection", "keep-alive")
        } else {
            true
        }
    }

    pub(crate) fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the length of a message body is known.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Framing {
    Length(u64),
    Chunked,
    /// Until the peer closes (responses only).
    Eof,
}

/// Reads one message body off a buffered stream, de-chunking if needed.
pub(crate) struct Body<'a, R: BufRead> {
    pub(crate) r: &'a mut R,
    pub(crate) framing: Framing,
    /// Bytes left in the body (Length) or in the current chunk (Chunked).
    pub(crate) left: u64,
    /// A chunk's data was read and its CRLF is still due.
    pub(crate) chunk_open: bool,
    pub(crate) done: bool,
}

impl<'a, R: BufRead> Body<'a, R> {
    pub(crate) fn new(r: &'a mut R, framing: Framing) -> Self {
        let left = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        Body {
            r,
            framing,
            left,
            chunk_open: false,
            done: framing == Framing::Length(0),
        }
    }

    /// Reads the whole body, failing past `max` bytes.
    pub(crate) fn read_all(&mut self, max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = self.take(max + 1).read_to_end(&mut out)?;
        if n as u64 > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        Ok(out)
    }

    /// Reads the next chunk-size line; false at the last chunk.
    pub(crate) fn next_chunk(&mut self) -> io::Result<bool> {
        if self.chunk_open {
            let line = read_line(self.r, 1024)?;
            if !line.is_empty() {
                return Err(bad_data("missing CRLF after chunk data"));
            }
            self.chunk_open = false;
        }
        let line = read_line(self.r, 1024)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad_data("bad chunk size"))?;
        if size == 0 {
            while !read_line(self.r, 8192)?.is_empty() {} // trailers
            return Ok(false);
        }
        self.left = size;
        self.chunk_open = true;
        Ok(true)
    }
}

impl<R: BufRead> Read for Body<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        if self.framing == Framing::Eof {
            let n = self.r.read(buf)?;
            self.done = n == 0;
            return Ok(n);
        }
        if self.left == 0 {
            // Chunked: the previous chunk is finished.
            if !self.next_chunk()? {
                self.done = true;
                return Ok(0);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.r.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "body truncated",
            ));
        }
        self.left -= n as u64;
        if self.left == 0 && self.framing != Framing::Chunked {
            self.done = true;
        }
        Ok(n)
    }
}

pub(crate) fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One CRLF- (or LF-) terminated line, without its terminator.
pub(crate) fn read_line<R: BufRead>(r: &mut R, max: usize) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.take(max as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed",
        ));
    }
    if buf.last() != Some(&b'\n') {
        return Err(bad_data("line too long or truncated"));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf).map_err(|_| bad_data("line is not UTF-8"))
}

/// Header lines, in order, names as sent.
pub(crate) type Headers = Vec<(String, String)>;

/// Reads a message head: the start line and the headers. `Ok(None)` when
/// the peer closed the connection cleanly before a new message.
pub(crate) fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
    let mut budget = MAX_HEAD;
    let mut start = String::new();
    while start.is_empty() {
        // Tolerate empty lines before a request (RFC 9112 §2.2).
        if r.fill_buf()?.is_empty() {
            return Ok(None);
        }
        start = read_line(r, budget)?;
        budget = budget.saturating_sub(start.len() + 2);
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(r, budget)?;
        budget = budget.saturating_sub(line.len() + 2);
        if line.is_empty() {
            return Ok(Some((start, headers)));
        }
        if budget == 0 || headers.len() > 200 {
            return Err(bad_data("request head too large"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad_data("malformed header line"))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
}

/// The body framing of a request, from its headers.
pub(crate) fn request_framing(req: &Request) -> io::Result<Framing> {
    if req.has_token("Transfer-Encoding", "chunked") {
        return Ok(Framing::Chunked);
    }
    match req.header("Content-Length") {
        None => Ok(Framing::Length(0)),
        Some(v) => v
            .trim()
            .parse()
            .map(Framing::Length)
            .map_err(|_| bad_data("bad Content-Length")),
    }
}

/// A response to write.
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) extra_headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
    /// Close the connection after this response.
    pub(crate) close: bool,
    /// Exit the process with this status once the response is sent.
    pub(crate) exit_with: Option<i32>,
}

impl Response {
    pub(crate) fn json(status: u16, j: &Json) -> Response {
        let mut body = j.to_string_compact().into_bytes();
        body.push(b'\n');
        Response {
            status,
            content_type: "application/json".into(),
            extra_headers: Vec::new(),
            body,
            close: false,
            exit_with: None,
        }
    }
}

pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

pub(crate) fn write_head(
    w: &mut impl Write,
    status: u16,
    headers: &[(&str, &str)],
    keep_alive: bool,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nServer: rust-vs\r\n",
        reason(status)
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())
}

pub(crate) fn send(out: &mut impl Write, r: &Response, keep_alive: bool) -> io::Result<()> {
    let len = r.body.len().to_string();
    let mut headers = vec![
        ("Content-Type", r.content_type.as_str()),
        ("Content-Length", len.as_str()),
    ];
    headers.extend(
        r.extra_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    write_head(out, r.status, &headers, keep_alive)?;
    out.write_all(&r.body)?;
    out.flush()
}

/// What a handler did.
pub(crate) enum Handled {
    /// A response for the connection loop to send.
    Respond(Response),
    /// The handler already wrote a complete response.
    Streamed { status: u16, len: u64 },
}
