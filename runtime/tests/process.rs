//! The process driver with real python3 processes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{eventually, http_get, spec, try_get, unique, Harness};
use respawn_runtime::{AbnormalReason, InstanceState, LogQuery, RuntimeError, Source};

const T: Duration = Duration::from_secs(20);

/// Why a limit test fails on a host without cgroups: it says what is
/// missing rather than passing without checking.
const NO_CGROUPS: &str = "no writable cgroup v2 or v1 hierarchy under /sys/fs/cgroup \
    (run the tests as root on a host or container with cgroups mounted read-write)";

/// A python HTTP server: `GET /env/NAME`, `/cwd`, `/pid`, anything else says hello.
/// It listens on `$VS_BIND` (default 0.0.0.0) at `$VS_PORT` or `$PGOS_VS_Listen_Port`.
const PRELUDE: &str = r#"
import http.server, os, signal, sys, threading, time
PORT = int(os.environ.get("VS_PORT") or os.environ["PGOS_VS_Listen_Port"])
BIND = os.environ.get("VS_BIND", "0.0.0.0")
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        p = self.path
        if p.startswith("/env/"):
            body = os.environ.get(p[5:], "")
        elif p == "/cwd":
            body = os.getcwd()
        elif p == "/pid":
            body = str(os.getpid())
        else:
            body = "hello from python"
        b = body.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
        print("served", p, flush=True)
    def log_message(self, *a):
        pass
def serve():
    http.server.ThreadingHTTPServer((BIND, PORT), H).serve_forever()
"#;

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(format!("{name}.py"));
    std::fs::write(&p, format!("{PRELUDE}\n{body}\n")).unwrap();
    p
}

fn python(h: &Harness, id: &str, vs: &str, body: &str) -> respawn_runtime::InstanceSpec {
    let path = script(h.dir.path(), id, body);
    let mut s = spec(
        id,
        vs,
        Source::Process {
            command: "python3".into(),
        },
    );
    s.args = vec![path.to_string_lossy().into_owned()];
    s
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn pid_alive(pid: i32) -> bool {
    // A reaped process has no /proc entry; a zombie has state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

/// Reaches Running, serves HTTP on the reported port, gets the env and the volume
/// as working directory, reports usage; stop kills it for good.
#[tokio::test]
async fn serves_http_with_env_and_stops_for_good() {
    let mut h = Harness::new(T);
    // On SIGTERM it notes it in its working directory (the volume) and
    // exits by itself: that note is how the test knows stop asked politely.
    let body = "def on_term(*a):\n    open('got-sigterm', 'w').write('yes')\n    os._exit(0)\nsignal.signal(signal.SIGTERM, on_term)\nserve()";
    let mut s = python(&h, "basic", "vs-basic", body);
    s.env.insert("MY_VAR".into(), "my value".into());
    s.env.insert("PGOS_Title_ID".into(), "5tcsa".into());
    h.rt.start(s.clone()).await.unwrap();
    assert_eq!(
        h.rt.start(s.clone()).await,
        Err(RuntimeError::AlreadyExists("basic".into()))
    );
    let (port, limits) = h.running("basic", T).await;
    assert_eq!(h.state_names("basic"), ["deploying", "running"]);
    assert_ne!(limits.mechanism, "docker");
    assert_eq!(limits.enforced, limits.mechanism != "none", "{limits:?}");

    assert_eq!(http_get(port, "/").await, "hello from python");
    assert_eq!(http_get(port, "/env/MY_VAR").await, "my value");
    assert_eq!(http_get(port, "/env/PGOS_Title_ID").await, "5tcsa");
    // The process driver hands out its own port per instance.
    assert_eq!(
        http_get(port, "/env/PGOS_VS_Listen_Port").await,
        port.to_string()
    );
    let volume = h.rt.volume_dir("tr_test", "vs-basic");
    assert_eq!(volume, h.dir.path().join("volumes/tr_test/vs-basic"));
    assert_eq!(
        PathBuf::from(http_get(port, "/cwd").await)
            .canonicalize()
            .unwrap(),
        volume.canonicalize().unwrap()
    );
    let pid: i32 = http_get(port, "/pid").await.parse().unwrap();
    assert!(pid_alive(pid));

    let u =
        h.rt.usage("basic")
            .await
            .expect("usage of a running instance");
    assert!(u.memory_bytes > 1 << 20, "{u:?}");
    assert!(h.rt.usage("nope").await.is_none());

    h.rt.stop("basic").await.unwrap();
    assert!(
        volume.join("got-sigterm").exists(),
        "a cooperative process is stopped by SIGTERM"
    );
    assert_eq!(h.states("basic").last(), Some(&InstanceState::Stopped));
    assert!(!pid_alive(pid), "process {pid} survived stop");
    assert!(try_get(port, "/").await.is_err());
    assert!(h.rt.instance_ids().is_empty());
    assert_eq!(
        h.rt.stop("basic").await,
        Err(RuntimeError::NotFound("basic".into()))
    );
    assert!(volume.is_dir(), "the volume outlives the instance");
    // No relaunch after stop: nothing more arrives within a second.
    let more = tokio::time::timeout(Duration::from_secs(1), h.rx.recv()).await;
    assert!(more.is_err(), "unexpected event after stop: {more:?}");
}

/// Two instances of one VS on one host get different host ports.
#[tokio::test]
async fn instances_of_one_vs_get_their_own_ports() {
    let mut h = Harness::new(T);
    h.rt.start(python(&h, "twin-a", "vs-twin", "serve()"))
        .await
        .unwrap();
    h.rt.start(python(&h, "twin-b", "vs-twin", "serve()"))
        .await
        .unwrap();
    let (pa, _) = h.running("twin-a", T).await;
    let (pb, _) = h.running("twin-b", T).await;
    assert_ne!(pa, pb);
    assert_eq!(http_get(pa, "/").await, "hello from python");
    assert_eq!(http_get(pb, "/").await, "hello from python");
    h.rt.shutdown().await;
    assert!(h.rt.instance_ids().is_empty());
    let states = h.states("twin-a");
    assert_eq!(states.last(), Some(&InstanceState::Stopped));
}

#[tokio::test]
async fn loopback_listener_is_reported() {
    let mut h = Harness::new(T);
    let mut s = python(&h, "loop", "vs-loop", "serve()");
    s.env.insert("VS_BIND".into(), "127.0.0.1".into());
    h.rt.start(s).await.unwrap();
    let detail = h
        .abnormal("loop", AbnormalReason::ListeningOnLoopback, T)
        .await;
    assert!(detail.contains("listens on 127.0.0.1:"), "{detail}");
    assert!(detail.contains("listen on 0.0.0.0:"), "{detail}");
    h.rt.stop("loop").await.unwrap();
}

#[tokio::test]
async fn other_port_is_reported() {
    let mut h = Harness::new(T);
    let other = free_port();
    let mut s = python(&h, "mismatch", "vs-mismatch", "serve()");
    s.env.insert("VS_PORT".into(), other.to_string());
    h.rt.start(s).await.unwrap();
    let detail = h
        .abnormal("mismatch", AbnormalReason::PortMismatch, T)
        .await;
    assert!(
        detail.contains(&format!("listens on port {other} but not on port ")),
        "{detail}"
    );
    assert!(detail.contains("PGOS_VS_Listen_Port"), "{detail}");
    h.rt.stop("mismatch").await.unwrap();
}

/// Nothing listens by the deadline: NotListening; once it listens: Running.
#[tokio::test]
async fn late_listener_is_not_listening_then_running() {
    let mut h = Harness::new(Duration::from_millis(1500));
    // It listens only once the test, having seen NotListening, says "go"
    // (a file in its working directory): no race with the deadline.
    let body = "while not os.path.exists('go'):\n    time.sleep(0.05)\nserve()";
    let s = python(&h, "late", "vs-late", body);
    h.rt.start(s).await.unwrap();
    let detail = h.abnormal("late", AbnormalReason::NotListening, T).await;
    assert!(detail.contains("nothing listens on port"), "{detail}");
    std::fs::write(h.rt.volume_dir("tr_test", "vs-late").join("go"), "go").unwrap();
    let (port, _) = h.running("late", T).await;
    assert_eq!(http_get(port, "/").await, "hello from python");
    h.rt.stop("late").await.unwrap();
}

/// Exit with status 3: Crashed, then relaunched (Deploying) and Running again.
/// The first run leaves a marker in its working directory (the persistent volume)
/// so that the relaunched one stays up.
#[tokio::test]
async fn crash_is_reported_and_relaunched() {
    let mut h = Harness::new(T);
    let body = r#"
if not os.path.exists("crashed-once"):
    open("crashed-once", "w").write("x")
    print("about to fail", file=sys.stderr, flush=True)
    threading.Timer(1.0, lambda: os._exit(3)).start()
serve()
"#;
    h.rt.start(python(&h, "crashy", "vs-crashy", body))
        .await
        .unwrap();
    let detail = h.abnormal("crashy", AbnormalReason::Crashed, T).await;
    assert!(detail.starts_with("exited with status 3"), "{detail}");
    assert!(detail.contains("about to fail"), "{detail}");
    h.wait_for("crashy", "Deploying", T, |s| *s == InstanceState::Deploying)
        .await;
    let (port, _) = h.running("crashy", T).await;
    assert_eq!(http_get(port, "/").await, "hello from python");
    assert!(h
        .rt
        .volume_dir("tr_test", "vs-crashy")
        .join("crashed-once")
        .exists());
    h.rt.stop("crashy").await.unwrap();
    let names = h.state_names("crashy");
    // The first run may or may not be seen Running before it exits.
    let expected: &[&str] = if names[1] == "running" {
        &[
            "deploying",
            "running",
            "crashed",
            "deploying",
            "running",
            "stopped",
        ]
    } else {
        &["deploying", "crashed", "deploying", "running", "stopped"]
    };
    assert_eq!(names, expected);
}

/// A process ignoring SIGTERM is killed (after the grace, 5 s).
#[tokio::test]
async fn stop_escalates_to_sigkill() {
    let mut h = Harness::new(T);
    // It notes the SIGTERM in its volume and carries on serving.
    let body =
        "signal.signal(signal.SIGTERM, lambda *a: open('got-sigterm', 'w').write('yes'))\nserve()";
    h.rt.start(python(&h, "stubborn", "vs-stubborn", body))
        .await
        .unwrap();
    let (port, _) = h.running("stubborn", T).await;
    let pid: i32 = http_get(port, "/pid").await.parse().unwrap();
    h.rt.stop("stubborn").await.unwrap();
    // It got SIGTERM, survived it, and is dead when stop returns: killed.
    let volume = h.rt.volume_dir("tr_test", "vs-stubborn");
    assert!(volume.join("got-sigterm").exists(), "SIGTERM came first");
    assert!(!pid_alive(pid), "process {pid} survived stop");
}

#[tokio::test]
async fn missing_command_is_launch_failed() {
    let mut h = Harness::new(T);
    let s = spec(
        "nocmd",
        "vs-nocmd",
        Source::Process {
            command: "/nonexistent/respawn-vs".into(),
        },
    );
    h.rt.start(s).await.unwrap();
    let detail = h.abnormal("nocmd", AbnormalReason::LaunchFailed, T).await;
    assert!(
        detail.contains("cannot start `/nonexistent/respawn-vs`"),
        "{detail}"
    );
    h.rt.stop("nocmd").await.unwrap();
}

#[tokio::test]
async fn invalid_specs_are_refused() {
    let h = Harness::new(T);
    let bad_id = spec(
        "a/b",
        "vs",
        Source::Process {
            command: "x".into(),
        },
    );
    assert!(matches!(
        h.rt.start(bad_id).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    let bad_vs = spec(
        "ok",
        "../x",
        Source::Process {
            command: "x".into(),
        },
    );
    assert!(matches!(
        h.rt.start(bad_vs).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
    let mut no_port = spec("ok", "vs", Source::DockerImage { image: "x".into() });
    no_port.listen_port = 0;
    assert!(matches!(
        h.rt.start(no_port).await,
        Err(RuntimeError::InvalidSpec(_))
    ));
}

/// A busy instance limited to 200 millicores uses about that much CPU.
#[tokio::test]
async fn cpu_limit_caps_usage() {
    let mut h = Harness::new(T);
    let body = r#"
def spin():
    while True:
        pass
threading.Thread(target=spin, daemon=True).start()
serve()
"#;
    let mut s = python(&h, "spinner", "vs-spinner", body);
    s.cpu_millicores = 200;
    h.rt.start(s).await.unwrap();
    let (_, limits) = h.running("spinner", T).await;
    // The first call measures over ~100 ms; the second since the first.
    let first = h.rt.usage("spinner").await.expect("usage");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = h.rt.usage("spinner").await.expect("usage");
    println!("cpu usage: first {first:?}, second {second:?}");
    assert!(second.cpu_millicores > 0, "{first:?} {second:?}");
    assert_ne!(
        limits.mechanism, "none",
        "{NO_CGROUPS}: the CPU cap cannot be tested"
    );
    assert!(
        second.cpu_millicores <= 350,
        "{limits:?} {first:?} {second:?}"
    );
    h.rt.stop("spinner").await.unwrap();
}

/// 200 MB in a 32 MiB instance: OutOfMemory.
#[tokio::test]
async fn memory_limit_kills_with_out_of_memory() {
    let mut h = Harness::new(T);
    let body = r#"
threading.Thread(target=serve, daemon=True).start()
time.sleep(1.5)
hog = b"x" * (200 << 20)
print("allocated", len(hog), flush=True)
time.sleep(60)
"#;
    let mut s = python(&h, "hog", "vs-hog", body);
    s.memory_mb = 32;
    h.rt.start(s).await.unwrap();
    let (_, limits) = h.running("hog", T).await;
    assert_ne!(
        limits.mechanism, "none",
        "{NO_CGROUPS}: the memory limit cannot be tested"
    );
    assert!(limits.enforced, "{limits:?}");
    let detail = h.abnormal("hog", AbnormalReason::OutOfMemory, T).await;
    assert!(
        detail.contains("exceeded its 32 MiB memory limit"),
        "{detail}"
    );
    // It is relaunched like any exit.
    h.wait_for("hog", "Deploying", T, |s| *s == InstanceState::Deploying)
        .await;
    h.rt.stop("hog").await.unwrap();
}

#[tokio::test]
async fn logs_are_queryable() {
    let mut h = Harness::new(T);
    let body = r#"
for i in range(5):
    print(f"log line {i}", flush=True)
print("trouble ahead", file=sys.stderr, flush=True)
serve()
"#;
    let vs = unique("vs-logs");
    let mut s = python(&h, "logger", &vs, body);
    s.version = 7;
    h.rt.start(s).await.unwrap();
    let (port, _) = h.running("logger", T).await;
    http_get(port, "/hello").await;

    let q = LogQuery {
        title_region: "tr_test".into(),
        vs_name: vs.clone(),
        version: None,
        since_ms: None,
        until_ms: None,
        contains: None,
        tail: None,
        limit: 100,
    };
    let rt = h.rt.clone();
    eventually("the request is logged", T, || {
        rt.query_logs(&LogQuery {
            contains: Some("served /hello".into()),
            ..q.clone()
        })
        .unwrap()
        .len()
            == 1
    })
    .await;

    let lines =
        h.rt.query_logs(&LogQuery {
            contains: Some("log line".into()),
            ..q.clone()
        })
        .unwrap();
    let texts: Vec<&str> = lines.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(
        texts,
        [
            "log line 0",
            "log line 1",
            "log line 2",
            "log line 3",
            "log line 4"
        ]
    );
    assert!(lines
        .iter()
        .all(|l| l.version == 7 && l.instance_id == "logger" && l.stream == "stdout"));

    let err =
        h.rt.query_logs(&LogQuery {
            contains: Some("trouble".into()),
            ..q.clone()
        })
        .unwrap();
    assert_eq!(err.len(), 1);
    assert_eq!(err[0].stream, "stderr");

    let tail =
        h.rt.query_logs(&LogQuery {
            contains: Some("log line".into()),
            tail: Some(2),
            ..q.clone()
        })
        .unwrap();
    let texts: Vec<&str> = tail.iter().map(|l| l.line.as_str()).collect();
    assert_eq!(texts, ["log line 3", "log line 4"]);

    let limited =
        h.rt.query_logs(&LogQuery {
            limit: 2,
            ..q.clone()
        })
        .unwrap();
    assert_eq!(limited.len(), 2);
    assert_eq!(limited[0].line, "log line 0");

    // A time range: from line 2's time, up to (excluding) the request's time.
    let served_at =
        h.rt.query_logs(&LogQuery {
            contains: Some("served /hello".into()),
            ..q.clone()
        })
        .unwrap()[0]
            .ts_ms;
    let ranged =
        h.rt.query_logs(&LogQuery {
            since_ms: Some(lines[2].ts_ms),
            until_ms: Some(served_at),
            ..q.clone()
        })
        .unwrap();
    assert!(ranged
        .iter()
        .all(|l| l.ts_ms >= lines[2].ts_ms && l.ts_ms < served_at));
    assert!(ranged.iter().any(|l| l.line == "log line 2"));
    assert!(ranged.iter().all(|l| !l.line.contains("served")));

    assert!(h
        .rt
        .query_logs(&LogQuery {
            version: Some(8),
            ..q.clone()
        })
        .unwrap()
        .is_empty());
    assert_eq!(
        h.rt.query_logs(&LogQuery {
            version: Some(7),
            ..q.clone()
        })
        .unwrap()
        .len(),
        7
    );
    h.rt.stop("logger").await.unwrap();
}
