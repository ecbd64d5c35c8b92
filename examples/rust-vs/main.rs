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
//! Std plus one crate (`time`, for the UTC time of log lines) and no
//! `unsafe`; it builds with cargo, also as a static binary for a
//! `FROM scratch` image (`build-image.sh`). Files: `http.rs` (the server
//! side of HTTP/1.1), `routes.rs` (the endpoints), `storage.rs` (the event
//! and task records), `client.rs` (intranet calls), `json.rs`, `logging.rs`.

mod client;
mod http;
mod json;
mod logging;
mod routes;
mod storage;

use std::io::{self, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use http::{read_head, request_framing, send, Body, Framing, Handled, Request, Response, CHUNK};
use json::error;
use logging::log;
use routes::handle;
use storage::{Recorder, State};

/// Idle keep-alive connections are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

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
