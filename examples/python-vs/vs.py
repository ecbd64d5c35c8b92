#!/usr/bin/env python3
"""A sample Respawn / PGOS virtual server (VS), Python 3.11 stdlib only.

A VS is a plain HTTP/1.1 web server. The platform starts it with the
system variables of the seed's section 3.2 (PGOS_Title_ID, PGOS_VS_Name,
PGOS_VS_Listen_Port, ...) plus PGOS_VS_Intranet_Endpoint, and sends it
requests through its edge with the headers Invoker, Titleid, Titleregionid
and, for game clients, Playerid and Sessionid. Every handler checks Invoker
first, as the seed recommends, and answers 401 to callers it does not serve.

Endpoints (allowed invokers in brackets):

  GET|POST /hello              [backend client intranet console] who called, and how
  POST     /echo               [backend client intranet] the body, streamed back
  GET      /env                [backend] the PGOS_* environment variables
  GET      /slow?ms=N          [backend client] answers after N ms
  GET      /crash?code=N       [backend] answers, then exits with status N
  POST     /pgos_event         [event] records a PGOS event (deduplicated)
  POST     /pgos_task          [task] records a scheduled task run (deduplicated)
  GET      /received           [backend] events and tasks recorded so far
  GET|POST /call/<vs>/<path>   [backend] calls another VS over the intranet
  GET|POST /fetch?url=U        [backend] calls the http:// URL U with urllib's
                               default opener, which honours http_proxy and
                               no_proxy: http://<vs>.<...>.virtualserver.int/...
                               names another VS (seed section 8)
  GET|POST /redis?storage=S&key=K  [backend] GET (or, for POST, SET to the body
                               then GET) key K in the Redis storage S, read from
                               PGOS_VS_Storage_S (RESP over a plain socket)

Events and tasks are appended to events.jsonl / tasks.jsonl in the working
directory (the instance's persistent volume), so they survive restarts. If
VS_FAIL_EVENTS_FIRST=N (N > 0), the first N deliveries of every new event
trigger_id answer 500, to exercise the platform's retries (VS_FAIL_TASKS_FIRST
does the same for tasks).
"""

import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VS_NAME = os.environ.get("PGOS_VS_Name", "python-vs")
PORT = int(os.environ.get("PGOS_VS_Listen_Port", "8080"))
INTRANET = os.environ.get("PGOS_VS_Intranet_Endpoint", "")
CHUNK = 64 * 1024
MAX_BODY = 16 * 1024 * 1024  # largest body read into memory
CALL_TIMEOUT = 10.0
# The intranet endpoint is local: /call never sends its calls through the
# http_proxy (/fetch does, as any urllib program would).
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def env_int(name):
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def log(*parts):
    print(time.strftime("%Y-%m-%dT%H:%M:%S ") + " ".join(str(p) for p in parts), flush=True)


class Recorder:
    """Deduplicated, persistent record of /pgos_event or /pgos_task calls."""

    def __init__(self, path, name_key, time_key, fail_first):
        self.path = path
        self.name_key = name_key
        self.time_key = time_key
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.records = read_jsonl(path)  # in memory, in arrival order
        self.seen = {r.get("trigger_id") for r in self.records}
        self.attempts = {}  # deliveries seen per trigger_id, this process

    def deliver(self, body, extra):
        """Returns (status, response object) for one delivery."""
        tid = body.get("trigger_id")
        if not isinstance(tid, str) or not tid:
            return 400, {"error": "bad_request", "message": "trigger_id must be a non-empty string"}
        with self.lock:
            attempt = self.attempts.get(tid, 0) + 1
            self.attempts[tid] = attempt
            if tid in self.seen:
                return 200, {"duplicate": True, "trigger_id": tid, "attempt": attempt}
            if attempt <= self.fail_first:
                return 500, {
                    "error": "induced_failure",
                    "trigger_id": tid,
                    "attempt": attempt,
                    "fail_first": self.fail_first,
                }
            record = {
                "seq": len(self.records) + 1,
                "trigger_id": tid,
                self.name_key: body.get(self.name_key),
                self.time_key: body.get(self.time_key),
                "args": body.get("args"),
                **extra,
                "attempt": attempt,
                "received_at_ms": int(time.time() * 1000),
                "pid": os.getpid(),
            }
            try:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(record, separators=(",", ":")) + "\n")
            except OSError as e:
                return 500, {"error": "storage", "message": f"cannot append to {self.path}: {e}"}
            self.records.append(record)
            self.seen.add(tid)
            return 200, {"ok": True, "trigger_id": tid, "seq": record["seq"]}

    def snapshot(self):
        with self.lock:
            return list(self.records)


def redis_call(sock, f, *args):
    """One Redis command in RESP; the reply (bytes, int, None) or RuntimeError."""
    out = b"*%d\r\n" % len(args)
    for a in args:
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    sock.sendall(out)
    line = f.readline()
    if not line:
        raise RuntimeError("redis closed the connection")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RuntimeError(rest.decode(errors="replace"))
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:n]
    raise RuntimeError(f"unexpected reply {line!r}")


def read_jsonl(path):
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line torn by a crash
    except FileNotFoundError:
        pass
    return out


EVENTS = Recorder("events.jsonl", "event_name", "event_time", env_int("VS_FAIL_EVENTS_FIRST"))
TASKS = Recorder("tasks.jsonl", "task_name", "task_time", env_int("VS_FAIL_TASKS_FIRST"))

# path -> (allowed methods, allowed invokers, handler method name)
ROUTES = {
    "/hello": (("GET", "POST"), ("backend", "client", "intranet", "console"), "do_hello"),
    "/echo": (("POST",), ("backend", "client", "intranet"), "do_echo"),
    "/env": (("GET",), ("backend",), "do_env"),
    "/slow": (("GET",), ("backend", "client"), "do_slow"),
    "/crash": (("GET",), ("backend",), "do_crash"),
    "/pgos_event": (("POST",), ("event",), "do_pgos_event"),
    "/pgos_task": (("POST",), ("task",), "do_pgos_task"),
    "/received": (("GET",), ("backend",), "do_received"),
    "/call": (("GET", "POST"), ("backend",), "do_call"),  # and /call/...
    "/fetch": (("GET", "POST"), ("backend",), "do_fetch"),
    "/redis": (("GET", "POST"), ("backend",), "do_redis"),
}


class BodyTooLarge(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every response has a length
    server_version = "python-vs"
    timeout = 600  # idle keep-alive connections are closed after this

    # ----- plumbing -----

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):
        log(
            self.address_string(),
            "invoker=" + (getattr(self, "headers", None) or {}).get("Invoker", "-"),
            fmt % args,
        )

    def do_GET(self):
        self.dispatch()

    def do_POST(self):
        self.dispatch()

    def do_PUT(self):
        self.dispatch()

    def do_DELETE(self):
        self.dispatch()

    def do_PATCH(self):
        self.dispatch()

    def dispatch(self):
        split = urllib.parse.urlsplit(self.path)
        self.req_path = split.path
        self.req_query = split.query
        self.params = urllib.parse.parse_qs(split.query)
        self.body_consumed = False
        self.invoker = self.headers.get("Invoker", "").strip().lower()
        route_key = "/call" if self.req_path.startswith("/call/") else self.req_path
        route = ROUTES.get(route_key)
        try:
            if route is None:
                self.reject(404, {"error": "not_found", "path": self.req_path})
                return
            methods, invokers, handler = route
            if self.invoker not in invokers:
                self.reject(
                    401,
                    {
                        "error": "unauthorized",
                        "message": f"invoker {self.invoker or '(none)'!r} may not call {route_key}",
                        "allowed": list(invokers),
                    },
                )
                return
            if self.command not in methods:
                self.reject(405, {"error": "method_not_allowed", "allowed": list(methods)}, {"Allow": ", ".join(methods)})
                return
            getattr(self, handler)()
        except BodyTooLarge:
            self.close_connection = True
            self.send_json(413, {"error": "payload_too_large", "max": MAX_BODY})
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except ValueError as e:  # a malformed chunked body
            self.close_connection = True
            self.send_json(400, {"error": "bad_request", "message": str(e)})
        finally:
            if not self.body_consumed and not self.close_connection:
                # Keep the connection usable: drop what the handler left unread.
                try:
                    for _ in self.body_chunks():
                        pass
                except Exception:
                    self.close_connection = True

    def send_json(self, status, obj, headers=None):
        data = (json.dumps(obj, separators=(",", ":")) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def reject(self, status, obj, headers=None):
        self.drain()
        self.send_json(status, obj, headers)

    def drain(self):
        try:
            for _ in self.body_chunks():
                pass
        except (ValueError, OSError):
            self.close_connection = True

    def is_chunked(self):
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower()

    def body_chunks(self):
        """Yields the request body in pieces, Content-Length or chunked."""
        if self.body_consumed:
            return
        self.body_consumed = True
        if self.is_chunked():
            while True:
                line = self.rfile.readline(1024)
                if not line.endswith(b"\n"):
                    raise ValueError("bad chunk size line")
                size = int(line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return
                while size > 0:
                    piece = self.rfile.read(min(size, CHUNK))
                    if not piece:
                        raise ConnectionError("body truncated")
                    size -= len(piece)
                    yield piece
                if self.rfile.readline(1024) not in (b"\r\n", b"\n"):
                    raise ValueError("missing CRLF after chunk")
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            if remaining < 0:
                raise ValueError("negative Content-Length")
            while remaining > 0:
                piece = self.rfile.read(min(remaining, CHUNK))
                if not piece:
                    raise ConnectionError("body truncated")
                remaining -= len(piece)
                yield piece

    def read_body(self):
        parts, total = [], 0
        for piece in self.body_chunks():
            total += len(piece)
            if total > MAX_BODY:
                raise BodyTooLarge()
            parts.append(piece)
        return b"".join(parts)

    def read_json_body(self):
        """The body as a JSON object, or None after answering 400."""
        raw = self.read_body()
        try:
            body = json.loads(raw or b"null")
        except ValueError as e:
            self.send_json(400, {"error": "bad_request", "message": f"body is not JSON: {e}"})
            return None
        if not isinstance(body, dict):
            self.send_json(400, {"error": "bad_request", "message": "body must be a JSON object"})
            return None
        return body

    def int_param(self, name, default):
        try:
            return int(self.params.get(name, [default])[0])
        except ValueError:
            return default

    # ----- endpoints -----

    def do_hello(self):
        body = self.read_body()
        h = self.headers
        self.send_json(
            200,
            {
                "vs": VS_NAME,
                "invoker": self.invoker,
                "titleid": h.get("Titleid"),
                "titleregionid": h.get("Titleregionid"),
                "playerid": h.get("Playerid"),
                "sessionid": h.get("Sessionid"),
                "method": self.command,
                "path": self.req_path,
                "query": self.req_query,
                "body_len": len(body),
                "pid": os.getpid(),
            },
        )

    def do_echo(self):
        if not self.is_chunked():
            length = int(self.headers.get("Content-Length") or 0)  # ValueError: 400
            if length < 0:
                raise ValueError("negative Content-Length")
        self.send_response(200)
        self.send_header("Content-Type", self.headers.get("Content-Type", "application/octet-stream"))
        if self.is_chunked():
            # Unknown length: stream each piece back as a chunk.
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for piece in self.body_chunks():
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            except Exception:
                self.close_connection = True  # the response is cut short
                raise ConnectionError("echo aborted")
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(length))
            self.end_headers()
            try:
                for piece in self.body_chunks():
                    self.wfile.write(piece)
            except Exception:
                self.close_connection = True
                raise ConnectionError("echo aborted")

    def do_env(self):
        proxy = ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY")
        self.send_json(
            200, {k: v for k, v in sorted(os.environ.items()) if k.startswith("PGOS_") or k in proxy}
        )

    def do_redis(self):
        storage = self.params.get("storage", [""])[0]
        key = self.params.get("key", [""])[0]
        raw = os.environ.get("PGOS_VS_Storage_" + storage)
        if not raw or not key:
            self.read_body()
            self.send_json(400, {"error": "bad_request", "message": f"no storage {storage!r} or no key"})
            return
        conf = json.loads(raw)
        value = self.read_body() if self.command == "POST" else None
        net = conf["network"][0]
        try:
            with socket.create_connection((net["inner_ip"], net["port"]), timeout=5) as s:
                f = s.makefile("rb")
                if conf.get("password"):
                    redis_call(s, f, b"AUTH", conf["password"].encode())
                if value is not None:
                    redis_call(s, f, b"SET", key.encode(), value)
                got = redis_call(s, f, b"GET", key.encode())
        except (OSError, RuntimeError) as e:
            self.send_json(502, {"error": "redis", "message": str(e)})
            return
        self.send_json(200, {"storage": storage, "type": conf["type"], "key": key,
                             "value": None if got is None else got.decode(errors="replace")})

    def do_slow(self):
        ms = max(0, min(self.int_param("ms", 1000), 3_600_000))
        time.sleep(ms / 1000)
        self.send_json(200, {"vs": VS_NAME, "slept_ms": ms, "pid": os.getpid()})

    def do_crash(self):
        code = self.int_param("code", 1) & 0xFF
        self.close_connection = True
        self.send_json(200, {"vs": VS_NAME, "exiting_with": code, "pid": os.getpid()})
        log(f"crash requested: exiting with status {code}")

        def die():
            sys.stdout.flush()
            os._exit(code)

        threading.Timer(0.2, die).start()

    def do_pgos_event(self):
        body = self.read_json_body()
        if body is not None:
            status, resp = EVENTS.deliver(body, {"event_data": body.get("event_data")})
            self.send_json(status, resp)

    def do_pgos_task(self):
        body = self.read_json_body()
        if body is not None:
            status, resp = TASKS.deliver(body, {})
            self.send_json(status, resp)

    def do_received(self):
        if self.params.get("source") == ["memory"]:
            self.send_json(200, {"events": EVENTS.snapshot(), "tasks": TASKS.snapshot()})
        else:
            self.send_json(200, {"events": read_jsonl(EVENTS.path), "tasks": read_jsonl(TASKS.path)})

    def do_call(self):
        rest = self.req_path[len("/call/") :]
        other = rest.split("/", 1)[0]
        if not other:
            self.reject(400, {"error": "bad_request", "message": "use /call/<vs>/<path>"})
            return
        if not INTRANET:
            self.reject(503, {"error": "no_intranet", "message": "PGOS_VS_Intranet_Endpoint is not set"})
            return
        url = INTRANET.rstrip("/") + "/" + rest
        if "/" not in rest:
            url += "/"
        if self.req_query:
            url += "?" + self.req_query
        self.relay(OPENER, url)

    def do_fetch(self):
        url = self.params.get("url", [""])[0]
        if not url.startswith("http://"):
            self.reject(400, {"error": "bad_request", "message": "use /fetch?url=http://..."})
            return
        # urllib's default opener: honours http_proxy, which is what makes
        # *.virtualserver.int names work.
        self.relay(urllib.request.build_opener(), url)

    def relay(self, opener, url):
        """Sends this request's method, body and Content-Type to `url`
        through `opener`; answers 200 with the callee's status and body (or
        502 naming the error when no answer came)."""
        body = self.read_body()
        headers = {}
        if self.headers.get("Content-Type"):
            headers["Content-Type"] = self.headers["Content-Type"]
        req = urllib.request.Request(
            url, data=body if self.command == "POST" else None, headers=headers, method=self.command
        )
        try:
            with opener.open(req, timeout=CALL_TIMEOUT) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        except (urllib.error.URLError, OSError) as e:
            self.send_json(502, {"status": None, "error": str(getattr(e, "reason", e)), "url": url})
            return
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        self.send_json(200, {"status": status, "body": parsed})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    server = Server(("0.0.0.0", PORT), Handler)
    print(f"python-vs {VS_NAME} listening on 0.0.0.0:{PORT}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
