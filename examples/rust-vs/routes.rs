//! The endpoints: the route table, the invoker checks and one handler per
//! endpoint.

use std::io::{self, BufRead, Read, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use crate::client::http_request;
use crate::http::{write_head, Body, Framing, Handled, Request, Response, CHUNK, MAX_BODY};
use crate::json::{error, num, obj, s, strs, Json};
use crate::storage::{lock, read_jsonl, Recorder, State};

/// Path, methods and invokers of each endpoint.
pub(crate) const ROUTES: &[(&str, &[&str], &[&str])] = &[
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

/// Reads a body to answer with, or the response to send instead.
pub(crate) fn read_body<R: BufRead>(body: &mut Body<'_, R>) -> Result<Vec<u8>, Response> {
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

pub(crate) fn handle<R: BufRead>(
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

pub(crate) fn opt(v: Option<&str>) -> Json {
    v.map_or(Json::Null, s)
}

pub(crate) fn hello<R: BufRead>(
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
pub(crate) fn echo<R: BufRead>(
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

pub(crate) fn env() -> Result<Response, Response> {
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

pub(crate) fn slow(req: &Request, state: &State) -> Result<Response, Response> {
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

pub(crate) fn crash(req: &Request, state: &State) -> Result<Response, Response> {
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

pub(crate) fn record<R: BufRead>(
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

pub(crate) fn received(req: &Request, state: &State) -> Result<Response, Response> {
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
pub(crate) fn call<R: BufRead>(
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
