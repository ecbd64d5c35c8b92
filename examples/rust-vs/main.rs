//! A sample Respawn / PGOS virtual server (VS) in Rust, std only.
//!
//! A VS is a plain HTTP/1.1 web server. The platform starts it with the
//! system variables of the seed's section 3.2 (`PGOS_Title_ID`,
//! `PGOS_VS_Name`, `PGOS_VS_Listen_Port`, ...) plus
//! `PGOS_VS_Intranet_Endpoint`, and its edge sends it requests with the
//! headers `Invoker`, `Titleid`, `Titleregionid` and, for game clients,
//! `Playerid` and `Sessionid`. Every handler checks `Invoker` first, as the
//! seed recommends, and answers 401 to callers it does not serve.
//!
//! | Endpoint                    | Invokers                  | What it does                      |
//! |-----------------------------|---------------------------|-----------------------------------|
//! | `GET\|POST /hello`          | backend client intranet   | who called, and how               |
//! | `POST /echo`                | backend client intranet   | streams the body back             |
//! | `GET /env`                  | backend                   | the `PGOS_*` environment          |
//! | `GET /slow?ms=N`            | backend client            | answers after N ms                |
//! | `GET /crash?code=N`         | backend                   | answers, then exits with N        |
//! | `POST /pgos_event`          | event                     | records an event (deduplicated)   |
//! | `POST /pgos_task`           | task                      | records a task run (deduplicated) |
//! | `GET /received`             | backend                   | what was recorded                 |
//! | `GET\|POST /call/<vs>/<p>`  | backend                   | calls another VS by the intranet  |
//!
//! Events and tasks are appended to `events.jsonl` / `tasks.jsonl` in the
//! working directory (the instance's persistent volume). With
//! `VS_FAIL_EVENTS_FIRST=N` the first N deliveries of every new event
//! `trigger_id` answer 500 (`VS_FAIL_TASKS_FIRST` likewise for tasks).
//!
//! No dependencies and no `unsafe`: it builds with cargo, or alone as a
//! static binary for a `FROM scratch` image:
//! `rustc -O -C target-feature=+crt-static --edition 2021 -o rust-vs main.rs`.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Largest body read into memory (`/echo` streams, so it has no limit).
const MAX_BODY: u64 = 16 * 1024 * 1024;
/// Idle keep-alive connections are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Timeout of intranet calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CHUNK: usize = 64 * 1024;

fn main() {
    let name = env_or("PGOS_VS_Name", "rust-vs");
    let port = env_or("PGOS_VS_Listen_Port", "8080");
    let state = Arc::new(State {
        name: name.clone(),
        intranet: std::env::var("PGOS_VS_Intranet_Endpoint").unwrap_or_default(),
        events: Mutex::new(Recorder::load(
            "events.jsonl",
            "event_name",
            "event_time",
            env_u32("VS_FAIL_EVENTS_FIRST"),
        )),
        tasks: Mutex::new(Recorder::load(
            "tasks.jsonl",
            "task_name",
            "task_time",
            env_u32("VS_FAIL_TASKS_FIRST"),
        )),
    });
    let listener = match TcpListener::bind(format!("0.0.0.0:{port}")) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("rust-vs: cannot listen on 0.0.0.0:{port}: {e}");
            std::process::exit(1);
        }
    };
    println!("rust-vs {name} listening on 0.0.0.0:{port}");
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    let peer = stream
                        .peer_addr()
                        .map(|a| a.to_string())
                        .unwrap_or_else(|_| "-".into());
                    if let Err(e) = serve_connection(stream, &state, &peer) {
                        if !matches!(
                            e.kind(),
                            io::ErrorKind::UnexpectedEof
                                | io::ErrorKind::ConnectionReset
                                | io::ErrorKind::BrokenPipe
                                | io::ErrorKind::WouldBlock
                                | io::ErrorKind::TimedOut
                        ) {
                            log(&format!("{peer} connection error: {e}"));
                        }
                    }
                });
            }
            Err(e) => {
                log(&format!("accept failed: {e}"));
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

fn env_u32(key: &str) -> u32 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One line to stdout, prefixed with the UTC time.
fn log(msg: &str) {
    let ms = now_ms();
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let sod = secs % 86_400;
    let line = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z {msg}\n",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        ms % 1000
    );
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}

/// Year, month, day of a count of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

// ---------------------------------------------------------------- state

struct State {
    name: String,
    intranet: String,
    events: Mutex<Recorder>,
    tasks: Mutex<Recorder>,
}

/// Deduplicated, persistent record of `/pgos_event` or `/pgos_task` calls.
struct Recorder {
    path: &'static str,
    name_key: &'static str,
    time_key: &'static str,
    fail_first: u32,
    /// In memory, in arrival order (loaded from the file at start).
    records: Vec<Json>,
    seen: HashSet<String>,
    /// Deliveries seen per trigger id by this process.
    attempts: HashMap<String, u32>,
}

impl Recorder {
    fn load(
        path: &'static str,
        name_key: &'static str,
        time_key: &'static str,
        fail_first: u32,
    ) -> Recorder {
        let records = read_jsonl(path);
        let seen = records
            .iter()
            .filter_map(|r| r.get("trigger_id").and_then(Json::as_str))
            .map(str::to_string)
            .collect();
        Recorder {
            path,
            name_key,
            time_key,
            fail_first,
            records,
            seen,
            attempts: HashMap::new(),
        }
    }

    /// Handles one delivery: the status and the response body.
    fn deliver(&mut self, body: &Json, extra: &[&str]) -> (u16, Json) {
        let Some(tid) = body
            .get("trigger_id")
            .and_then(Json::as_str)
            .filter(|t| !t.is_empty())
        else {
            return (
                400,
                error("bad_request", "trigger_id must be a non-empty string"),
            );
        };
        let tid = tid.to_string();
        let attempt = {
            let n = self.attempts.entry(tid.clone()).or_insert(0);
            *n += 1;
            *n
        };
        if self.seen.contains(&tid) {
            return (
                200,
                obj(vec![
                    ("duplicate", Json::Bool(true)),
                    ("trigger_id", Json::Str(tid)),
                    ("attempt", num(attempt)),
                ]),
            );
        }
        if attempt <= self.fail_first {
            return (
                500,
                obj(vec![
                    ("error", s("induced_failure")),
                    ("trigger_id", Json::Str(tid)),
                    ("attempt", num(attempt)),
                    ("fail_first", num(self.fail_first)),
                ]),
            );
        }
        let field = |k: &str| body.get(k).cloned().unwrap_or(Json::Null);
        let seq = self.records.len() + 1;
        let mut fields = vec![
            ("seq", num(seq)),
            ("trigger_id", Json::Str(tid.clone())),
            (self.name_key, field(self.name_key)),
            (self.time_key, field(self.time_key)),
            ("args", field("args")),
        ];
        for k in extra {
            fields.push((k, field(k)));
        }
        fields.extend([
            ("attempt", num(attempt)),
            ("received_at_ms", num(now_ms())),
            ("pid", num(std::process::id())),
        ]);
        let record = obj(fields);
        let line = format!("{}\n", record.to_string_compact());
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            return (
                500,
                error("storage", &format!("cannot append to {}: {e}", self.path)),
            );
        }
        self.records.push(record);
        self.seen.insert(tid.clone());
        (
            200,
            obj(vec![
                ("ok", Json::Bool(true)),
                ("trigger_id", Json::Str(tid)),
                ("seq", num(seq)),
            ]),
        )
    }
}

fn read_jsonl(path: &str) -> Vec<Json> {
    std::fs::read_to_string(path)
        .map(|text| {
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .filter_map(|l| Json::parse(l).ok()) // skips a line torn by a crash
                .collect()
        })
        .unwrap_or_default()
}

fn lock(m: &Mutex<Recorder>) -> std::sync::MutexGuard<'_, Recorder> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------- HTTP server

struct Request {
    method: String,
    path: String,
    query: String,
    version: String,
    headers: Headers,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    fn keep_alive(&self) -> bool {
        if self.has_token("Connection", "close") {
            false
        } else if self.version == "HTTP/1.0" {
            self.has_token("Connection", "keep-alive")
        } else {
            true
        }
    }

    fn param(&self, key: &str) -> Option<String> {
        self.query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == key).then(|| percent_decode(v))
        })
    }
}

fn percent_decode(s: &str) -> String {
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
enum Framing {
    Length(u64),
    Chunked,
    /// Until the peer closes (responses only).
    Eof,
}

/// Reads one message body off a buffered stream, de-chunking if needed.
struct Body<'a, R: BufRead> {
    r: &'a mut R,
    framing: Framing,
    /// Bytes left in the body (Length) or in the current chunk (Chunked).
    left: u64,
    /// A chunk's data was read and its CRLF is still due.
    chunk_open: bool,
    done: bool,
}

impl<'a, R: BufRead> Body<'a, R> {
    fn new(r: &'a mut R, framing: Framing) -> Self {
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
    fn read_all(&mut self, max: u64) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = self.take(max + 1).read_to_end(&mut out)?;
        if n as u64 > max {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        Ok(out)
    }

    /// Reads the next chunk-size line; false at the last chunk.
    fn next_chunk(&mut self) -> io::Result<bool> {
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

fn bad_data(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// One CRLF- (or LF-) terminated line, without its terminator.
fn read_line<R: BufRead>(r: &mut R, max: usize) -> io::Result<String> {
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
type Headers = Vec<(String, String)>;

/// Reads a message head: the start line and the headers. `Ok(None)` when
/// the peer closed the connection cleanly before a new message.
fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<(String, Headers)>> {
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
fn request_framing(req: &Request) -> io::Result<Framing> {
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
struct Response {
    status: u16,
    content_type: String,
    extra_headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this response.
    close: bool,
    /// Exit the process with this status once the response is sent.
    exit_with: Option<i32>,
}

impl Response {
    fn json(status: u16, j: &Json) -> Response {
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

fn reason(status: u16) -> &'static str {
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

fn write_head(
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

fn send(out: &mut impl Write, r: &Response, keep_alive: bool) -> io::Result<()> {
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
enum Handled {
    /// A response for the connection loop to send.
    Respond(Response),
    /// The handler already wrote a complete response.
    Streamed { status: u16, len: u64 },
}

fn serve_connection(stream: TcpStream, state: &State, peer: &str) -> io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut input = BufReader::with_capacity(CHUNK, stream);
    loop {
        let head = match read_head(&mut input) {
            Ok(Some(head)) => head,
            Ok(None) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                let r = Response::json(400, &error("bad_request", &e.to_string()));
                return send(&mut out, &r, false);
            }
            Err(e) => return Err(e),
        };
        let (start, headers) = head;
        let mut parts = start.split(' ');
        let (method, target, version) = match (parts.next(), parts.next(), parts.next()) {
            (Some(m), Some(t), Some(v)) if v.starts_with("HTTP/1.") && !m.is_empty() => {
                (m.to_string(), t.to_string(), v.to_string())
            }
            _ => {
                let r = Response::json(400, &error("bad_request", "malformed request line"));
                return send(&mut out, &r, false);
            }
        };
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let req = Request {
            method,
            path: path.to_string(),
            query: query.to_string(),
            version,
            headers,
        };
        let framing = match request_framing(&req) {
            Ok(f) => f,
            Err(e) => {
                let r = Response::json(400, &error("bad_request", &e.to_string()));
                return send(&mut out, &r, false);
            }
        };
        if framing != Framing::Length(0) && req.has_token("Expect", "100-continue") {
            out.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        let invoker = req.header("Invoker").unwrap_or("-").to_string();
        let access = |status: u16, len: u64| {
            log(&format!(
                "{peer} \"{} {}{}{} {}\" {status} {len} invoker={invoker}",
                req.method,
                req.path,
                if req.query.is_empty() { "" } else { "?" },
                req.query,
                req.version,
            ))
        };

        let mut keep_alive = req.keep_alive();
        let mut body = Body::new(&mut input, framing);
        let handled = match handle(&req, &mut body, &mut out, keep_alive, state) {
            Ok(h) => h,
            Err(e) => {
                // Mid-body failure: the connection's framing is lost.
                log(&format!(
                    "{peer} \"{} {} {}\" aborted: {e}",
                    req.method, req.path, req.version
                ));
                return Ok(());
            }
        };
        // Whatever the handler left unread goes before the next request.
        let drained = io::copy(&mut body, &mut io::sink()).is_ok();
        keep_alive = keep_alive && drained;
        match handled {
            Handled::Streamed { status, len } => access(status, len),
            Handled::Respond(r) => {
                keep_alive = keep_alive && !r.close && r.exit_with.is_none();
                send(&mut out, &r, keep_alive)?;
                access(r.status, r.body.len() as u64);
                if let Some(code) = r.exit_with {
                    log(&format!("crash requested: exiting with status {code}"));
                    thread::sleep(Duration::from_millis(200));
                    std::process::exit(code);
                }
            }
        }
        if !keep_alive {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------- endpoints

/// Path, methods and invokers of each endpoint.
const ROUTES: &[(&str, &[&str], &[&str])] = &[
    (
        "/hello",
        &["GET", "POST"],
        &["backend", "client", "intranet"],
    ),
    ("/echo", &["POST"], &["backend", "client", "intranet"]),
    ("/env", &["GET"], &["backend"]),
    ("/slow", &["GET"], &["backend", "client"]),
    ("/crash", &["GET"], &["backend"]),
    ("/pgos_event", &["POST"], &["event"]),
    ("/pgos_task", &["POST"], &["task"]),
    ("/received", &["GET"], &["backend"]),
    ("/call", &["GET", "POST"], &["backend"]),
];

fn error(code: &str, message: &str) -> Json {
    obj(vec![("error", s(code)), ("message", s(message))])
}

fn strs(v: &[&str]) -> Json {
    Json::Arr(v.iter().map(|x| s(x)).collect())
}

/// Reads a body to answer with, or the response to send instead.
fn read_body<R: BufRead>(body: &mut Body<'_, R>) -> Result<Vec<u8>, Response> {
    body.read_all(MAX_BODY).map_err(|e| {
        let mut r = if e.to_string() == "body too large" {
            Response::json(
                413,
                &error(
                    "payload_too_large",
                    &format!("the limit is {MAX_BODY} bytes"),
                ),
            )
        } else {
            Response::json(400, &error("bad_request", &e.to_string()))
        };
        r.close = true;
        r
    })
}

fn handle<R: BufRead>(
    req: &Request,
    body: &mut Body<'_, R>,
    out: &mut TcpStream,
    keep_alive: bool,
    state: &State,
) -> io::Result<Handled> {
    let route_path = if req.path.starts_with("/call/") {
        "/call"
    } else {
        req.path.as_str()
    };
    let Some(&(route, methods, invokers)) = ROUTES.iter().find(|(p, _, _)| *p == route_path) else {
        return Ok(Handled::Respond(Response::json(
            404,
            &obj(vec![("error", s("not_found")), ("path", s(&req.path))]),
        )));
    };
    let invoker = req
        .header("Invoker")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !invokers.contains(&invoker.as_str()) {
        let shown = if invoker.is_empty() {
            "(none)".to_string()
        } else {
            format!("'{invoker}'")
        };
        return Ok(Handled::Respond(Response::json(
            401,
            &obj(vec![
                ("error", s("unauthorized")),
                (
                    "message",
                    s(&format!("invoker {shown} may not call {route}")),
                ),
                ("allowed", strs(invokers)),
            ]),
        )));
    }
    if !methods.contains(&req.method.as_str()) {
        let mut r = Response::json(
            405,
            &obj(vec![
                ("error", s("method_not_allowed")),
                ("allowed", strs(methods)),
            ]),
        );
        r.extra_headers.push(("Allow".into(), methods.join(", ")));
        return Ok(Handled::Respond(r));
    }
    let r = match route {
        "/hello" => hello(req, body, &invoker, state),
        "/echo" => return echo(req, body, out, keep_alive),
        "/env" => env(),
        "/slow" => slow(req, state),
        "/crash" => crash(req, state),
        "/pgos_event" => record(body, &state.events, &["event_data"]),
        "/pgos_task" => record(body, &state.tasks, &[]),
        "/received" => received(req, state),
        _ => call(req, body, state),
    };
    Ok(Handled::Respond(r.unwrap_or_else(|r| r)))
}

fn opt(v: Option<&str>) -> Json {
    v.map_or(Json::Null, s)
}

fn hello<R: BufRead>(
    req: &Request,
    body: &mut Body<'_, R>,
    invoker: &str,
    state: &State,
) -> Result<Response, Response> {
    let data = read_body(body)?;
    Ok(Response::json(
        200,
        &obj(vec![
            ("vs", s(&state.name)),
            ("invoker", s(invoker)),
            ("titleid", opt(req.header("Titleid"))),
            ("titleregionid", opt(req.header("Titleregionid"))),
            ("playerid", opt(req.header("Playerid"))),
            ("sessionid", opt(req.header("Sessionid"))),
            ("method", s(&req.method)),
            ("path", s(&req.path)),
            ("query", s(&req.query)),
            ("body_len", num(data.len())),
            ("pid", num(std::process::id())),
        ]),
    ))
}

/// Streams the body back as it arrives: with the same Content-Length, or
/// chunk by chunk when the request was chunked.
fn echo<R: BufRead>(
    req: &Request,
    body: &mut Body<'_, R>,
    out: &mut TcpStream,
    keep_alive: bool,
) -> io::Result<Handled> {
    let content_type = req
        .header("Content-Type")
        .unwrap_or("application/octet-stream");
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    match body.framing {
        Framing::Length(n) => {
            let len = n.to_string();
            write_head(
                out,
                200,
                &[("Content-Type", content_type), ("Content-Length", &len)],
                keep_alive,
            )?;
            total = io::copy(body, out)?;
        }
        _ => {
            write_head(
                out,
                200,
                &[
                    ("Content-Type", content_type),
                    ("Transfer-Encoding", "chunked"),
                ],
                keep_alive,
            )?;
            loop {
                let n = body.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                out.write_all(format!("{n:x}\r\n").as_bytes())?;
                out.write_all(&buf[..n])?;
                out.write_all(b"\r\n")?;
            }
            out.write_all(b"0\r\n\r\n")?;
        }
    }
    out.flush()?;
    Ok(Handled::Streamed {
        status: 200,
        len: total,
    })
}

fn env() -> Result<Response, Response> {
    let mut vars: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .filter(|(k, _)| k.starts_with("PGOS_"))
        .collect();
    vars.sort();
    let j = Json::Obj(vars.into_iter().map(|(k, v)| (k, Json::Str(v))).collect());
    Ok(Response::json(200, &j))
}

fn slow(req: &Request, state: &State) -> Result<Response, Response> {
    let ms = req
        .param("ms")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(1000)
        .min(3_600_000);
    thread::sleep(Duration::from_millis(ms));
    Ok(Response::json(
        200,
        &obj(vec![
            ("vs", s(&state.name)),
            ("slept_ms", num(ms)),
            ("pid", num(std::process::id())),
        ]),
    ))
}

fn crash(req: &Request, state: &State) -> Result<Response, Response> {
    let code = req
        .param("code")
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(1)
        & 0xFF;
    let mut r = Response::json(
        200,
        &obj(vec![
            ("vs", s(&state.name)),
            ("exiting_with", num(code)),
            ("pid", num(std::process::id())),
        ]),
    );
    r.exit_with = Some(code);
    Ok(r)
}

fn record<R: BufRead>(
    body: &mut Body<'_, R>,
    recorder: &Mutex<Recorder>,
    extra: &[&str],
) -> Result<Response, Response> {
    let data = read_body(body)?;
    let text = String::from_utf8(data)
        .map_err(|_| Response::json(400, &error("bad_request", "body is not UTF-8")))?;
    let j = Json::parse(&text).map_err(|e| {
        Response::json(
            400,
            &error("bad_request", &format!("body is not JSON: {e}")),
        )
    })?;
    if !matches!(j, Json::Obj(_)) {
        return Err(Response::json(
            400,
            &error("bad_request", "body must be a JSON object"),
        ));
    }
    let (status, resp) = lock(recorder).deliver(&j, extra);
    Ok(Response::json(status, &resp))
}

fn received(req: &Request, state: &State) -> Result<Response, Response> {
    let (events, tasks) = if req.param("source").as_deref() == Some("memory") {
        (
            lock(&state.events).records.clone(),
            lock(&state.tasks).records.clone(),
        )
    } else {
        (
            read_jsonl(lock(&state.events).path),
            read_jsonl(lock(&state.tasks).path),
        )
    };
    Ok(Response::json(
        200,
        &obj(vec![
            ("events", Json::Arr(events)),
            ("tasks", Json::Arr(tasks)),
        ]),
    ))
}

/// `/call/<vs>/<path>`: the same method, body and query to
/// `$PGOS_VS_Intranet_Endpoint/<vs>/<path>`.
fn call<R: BufRead>(
    req: &Request,
    body: &mut Body<'_, R>,
    state: &State,
) -> Result<Response, Response> {
    let rest = req.path.strip_prefix("/call/").unwrap_or("");
    if rest.split('/').next().unwrap_or("").is_empty() {
        return Err(Response::json(
            400,
            &error("bad_request", "use /call/<vs>/<path>"),
        ));
    }
    if state.intranet.is_empty() {
        return Err(Response::json(
            503,
            &error("no_intranet", "PGOS_VS_Intranet_Endpoint is not set"),
        ));
    }
    let data = read_body(body)?;
    let mut url = format!("{}/{rest}", state.intranet.trim_end_matches('/'));
    if !rest.contains('/') {
        url.push('/');
    }
    if !req.query.is_empty() {
        url.push('?');
        url.push_str(&req.query);
    }
    match http_request(&req.method, &url, req.header("Content-Type"), &data) {
        Ok((status, raw)) => {
            let text = String::from_utf8_lossy(&raw);
            let parsed = Json::parse(&text).unwrap_or_else(|_| Json::Str(text.into_owned()));
            Ok(Response::json(
                200,
                &obj(vec![("status", num(status)), ("body", parsed)]),
            ))
        }
        Err(e) => Ok(Response::json(
            502,
            &obj(vec![
                ("status", Json::Null),
                ("error", s(&e)),
                ("url", s(&url)),
            ]),
        )),
    }
}

// ---------------------------------------------------------------- HTTP client

/// One HTTP/1.1 request to an `http://` URL, on a fresh connection.
fn http_request(
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

fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
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

// ---------------------------------------------------------------- JSON

/// A JSON value. Numbers keep their text; objects keep their key order.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn s(v: &str) -> Json {
    Json::Str(v.to_string())
}

fn num(n: impl std::fmt::Display) -> Json {
    Json::Num(n.to_string())
}

fn obj(fields: Vec<(&str, Json)>) -> Json {
    Json::Obj(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

impl Json {
    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(v) => Some(v),
            _ => None,
        }
    }

    fn to_string_compact(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => out.push_str(n),
            Json::Str(v) => write_json_str(v, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_json_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    fn parse(text: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing characters at byte {}", p.i));
        }
        Ok(v)
    }
}

fn write_json_str(v: &str, out: &mut String) {
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while matches!(self.b.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("{what} at byte {}", self.i))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.b[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'{') => self.nested(|p| p.object()),
            Some(b'[') => self.nested(|p| p.array()),
            Some(b'"') => self.string().map(Json::Str),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) if self.eat("null") => Ok(Json::Null),
            Some(_) if self.eat("true") => Ok(Json::Bool(true)),
            Some(_) if self.eat("false") => Ok(Json::Bool(false)),
            Some(_) => self.err("unexpected character"),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Json, String>,
    ) -> Result<Json, String> {
        self.depth += 1;
        if self.depth > 128 {
            return self.err("nested too deeply");
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn object(&mut self) -> Result<Json, String> {
        self.i += 1; // {
        let mut fields = Vec::new();
        self.ws();
        if self.eat("}") {
            return Ok(Json::Obj(fields));
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return self.err("expected a key");
            }
            let k = self.string()?;
            self.ws();
            if !self.eat(":") {
                return self.err("expected ':'");
            }
            fields.push((k, self.value()?));
            self.ws();
            if self.eat("}") {
                return Ok(Json::Obj(fields));
            }
            if !self.eat(",") {
                return self.err("expected ',' or '}'");
            }
        }
    }

    fn array(&mut self) -> Result<Json, String> {
        self.i += 1; // [
        let mut items = Vec::new();
        self.ws();
        if self.eat("]") {
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.ws();
            if self.eat("]") {
                return Ok(Json::Arr(items));
            }
            if !self.eat(",") {
                return self.err("expected ',' or ']'");
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok());
        match h {
            Some(v) => {
                self.i += 4;
                Ok(v)
            }
            None => self.err("bad \\u escape"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // "
        let mut out = String::new();
        loop {
            // Copy the run of plain characters at once (the input is UTF-8).
            let start = self.i;
            while let Some(&c) = self.b.get(self.i) {
                if c == b'"' || c == b'\\' || c < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&String::from_utf8_lossy(&self.b[start..self.i]));
            match self.b.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = self.b.get(self.i).copied();
                    self.i += 1;
                    match e {
                        Some(b'"') => out.push('"'),
                        Some(b'\\') => out.push('\\'),
                        Some(b'/') => out.push('/'),
                        Some(b'b') => out.push('\u{8}'),
                        Some(b'f') => out.push('\u{c}'),
                        Some(b'n') => out.push('\n'),
                        Some(b'r') => out.push('\r'),
                        Some(b't') => out.push('\t'),
                        Some(b'u') => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp) && self.eat("\\u") {
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err("bad surrogate pair");
                                }
                                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                            }
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                Some(_) => return self.err("control character in string"),
            }
        }
    }

    fn number(&mut self) -> Result<Json, String> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let s = p.i;
            while matches!(p.b.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > s
        };
        self.eat("-");
        if self.eat("0") {
            // no leading zeros
        } else if !digits(self) {
            return self.err("bad number");
        }
        if self.eat(".") && !digits(self) {
            return self.err("bad fraction");
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat("+") {
                self.eat("-");
            }
            if !digits(self) {
                return self.err("bad exponent");
            }
        }
        Ok(Json::Num(
            String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
        ))
    }
}
