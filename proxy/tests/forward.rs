//! `Proxy::forward` against real upstream HTTP servers on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Request, Response, StatusCode};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use respawn_proxy::{AccessLogStore, InvokeContext, Invoker, PlayerIdentity, Proxy};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

// ---------------------------------------------------------------- metrics

#[derive(Default)]
struct TestRecorder {
    counters: Mutex<HashMap<String, Arc<AtomicU64>>>,
    histograms: Mutex<HashMap<String, Arc<TestHistogram>>>,
}

#[derive(Default)]
struct TestHistogram(Mutex<Vec<f64>>);

impl HistogramFn for TestHistogram {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

fn key_string(name: &str, labels: &[(&str, &str)]) -> String {
    let mut l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    l.sort();
    format!("{name}{{{}}}", l.join(","))
}

impl Recorder for TestRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let k = key_string(key.name(), &labels);
        let c = self.counters.lock().unwrap().entry(k).or_default().clone();
        Counter::from_arc(c)
    }
    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }
    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let labels: Vec<(&str, &str)> = key.labels().map(|l| (l.key(), l.value())).collect();
        let k = key_string(key.name(), &labels);
        let h = self
            .histograms
            .lock()
            .unwrap()
            .entry(k)
            .or_default()
            .clone();
        Histogram::from_arc(h)
    }
}

fn recorder() -> &'static TestRecorder {
    static REC: OnceLock<&'static TestRecorder> = OnceLock::new();
    REC.get_or_init(|| {
        let rec: &'static TestRecorder = Box::leak(Box::default());
        metrics::set_global_recorder(rec).unwrap();
        rec
    })
}

fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    recorder()
        .counters
        .lock()
        .unwrap()
        .get(&key_string(name, labels))
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

fn histogram(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    recorder()
        .histograms
        .lock()
        .unwrap()
        .get(&key_string(name, labels))
        .map_or_else(Vec::new, |h| h.0.lock().unwrap().clone())
}

// ---------------------------------------------------------------- helpers

fn proxy() -> Proxy {
    recorder();
    Proxy::new()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

/// Answers with what it received: method, uri, headers, peer, body length.
async fn echo(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request<Body>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let mut headers: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in &parts.headers {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap().to_owned());
    }
    let v = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "peer": peer.to_string(),
        "body_len": body.len(),
    });
    Response::builder()
        .header("content-type", "application/json")
        .header("x-vs", "yes")
        .body(Body::from(v.to_string()))
        .unwrap()
}

async fn echo_server() -> SocketAddr {
    serve(Router::new().fallback(echo)).await
}

fn ctx(vs: &str, invoker: Invoker, path: &str) -> InvokeContext {
    InvokeContext::new("title-1", "tr-1", vs, invoker, path)
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

async fn body_json(resp: Response<Body>) -> Value {
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&b).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&b)))
}

/// Counts live guards.
#[derive(Clone, Default)]
struct Guards(Arc<AtomicUsize>);

struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Guards {
    fn make(&self) -> Option<Box<dyn std::any::Any + Send + Sync>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Some(Box::new(Guard(self.0.clone())))
    }
    fn live(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A body fed chunk by chunk from a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
    }
}

fn channel_body() -> (mpsc::Sender<Bytes>, Body) {
    let (tx, rx) = mpsc::channel(4);
    (tx, Body::new(ChannelBody(rx)))
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

// ---------------------------------------------------------------- headers

#[tokio::test]
async fn headers_path_and_identity_reach_the_vs() {
    let up = echo_server().await;
    let p = proxy();
    let req = Request::builder()
        .method("POST")
        .uri("/virtualserver/invoke/vs-h/client_hello?x=1&y=%20")
        .header("content-type", "text/plain")
        .header("x-game", "a")
        .header("x-game", "b")
        .header("Host", "edge.example")
        .header("PlayerId", "forged-player")
        .header("sessionid", "forged-session")
        .header("Invoker", "event")
        .header("TitleId", "other-title")
        .header("titleregionid", "other-tr")
        .header("PlayerTicket", "v1.x")
        .header("SecretID", "sid")
        .header("ServerTicket", "st")
        .header("RoutingKey", "rk")
        .header("SDKVersion", "1")
        .header("ProtoVersion", "1")
        .header("UicAccountInfo", "u")
        .header("Pid", "p")
        .header("DstAddr", "d")
        .header("DstCode", "d")
        .header("AccTicket", "a")
        .header("Connection", "keep-alive, X-Hop")
        .header("X-Hop", "h")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic Zm9v")
        .header("TE", "trailers")
        .header("X-Forwarded-For", "203.0.113.9")
        .body(Body::from("hello"))
        .unwrap();
    let mut c = ctx("vs-h", Invoker::Client, "/client_hello?x=1&y=%20");
    c.player = Some(PlayerIdentity {
        player_id: "p-1".into(),
        session_id: "s-1".into(),
    });
    c.client_ip = Some("198.51.100.7".parse().unwrap());
    let resp = p.forward(up, req, c).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["x-vs"], "yes");
    let v = body_json(resp).await;
    assert_eq!(v["method"], "POST");
    assert_eq!(v["uri"], "/client_hello?x=1&y=%20");
    assert_eq!(v["body_len"], 5);
    let h = &v["headers"];
    let one = |name: &str| h[name].clone();
    assert_eq!(one("host"), json!([up.to_string()]));
    assert_eq!(one("titleid"), json!(["title-1"]));
    assert_eq!(one("titleregionid"), json!(["tr-1"]));
    assert_eq!(one("invoker"), json!(["client"]));
    assert_eq!(one("playerid"), json!(["p-1"]));
    assert_eq!(one("sessionid"), json!(["s-1"]));
    assert_eq!(one("x-forwarded-for"), json!(["203.0.113.9, 198.51.100.7"]));
    assert_eq!(one("x-game"), json!(["a", "b"]));
    assert_eq!(one("content-type"), json!(["text/plain"]));
    assert_eq!(one("content-length"), json!(["5"]));
    for gone in [
        "playerticket",
        "secretid",
        "serverticket",
        "routingkey",
        "sdkversion",
        "protoversion",
        "uicaccountinfo",
        "pid",
        "dstaddr",
        "dstcode",
        "accticket",
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the VS: {h}");
    }
}

#[tokio::test]
async fn backend_calls_carry_no_player_identity() {
    let up = echo_server().await;
    let p = proxy();
    let req = Request::builder()
        .uri("/x")
        .header("PlayerId", "forged")
        .header("SessionId", "forged")
        .body(Body::empty())
        .unwrap();
    let resp = p
        .forward(up, req, ctx("vs-b", Invoker::Backend, "/backend_hello"))
        .await;
    let v = body_json(resp).await;
    let h = &v["headers"];
    assert_eq!(h["invoker"], json!(["backend"]));
    assert!(
        h.get("playerid").is_none() && h.get("sessionid").is_none(),
        "{h}"
    );
    assert!(h.get("x-forwarded-for").is_none(), "{h}");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["uri"], "/backend_hello");
}

/// The bytes on the wire: title-cased names as the seed spells them.
#[tokio::test]
async fn headers_go_out_title_cased() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    let (head_tx, head_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .await
            .unwrap();
        let _ = head_tx.send(String::from_utf8(buf).unwrap());
        let _ = s.read(&mut chunk).await;
    });
    let p = proxy();
    let mut c = ctx("vs-t", Invoker::Backend, "/x?y=1");
    c.client_ip = Some("10.1.2.3".parse().unwrap());
    let resp = p.forward(up, get("/x"), c).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "ok");
    let head = head_rx.await.unwrap();
    assert!(head.starts_with("GET /x?y=1 HTTP/1.1\r\n"), "{head}");
    for line in [
        format!("\r\nHost: {up}\r\n"),
        "\r\nTitleid: title-1\r\n".into(),
        "\r\nTitleregionid: tr-1\r\n".into(),
        "\r\nInvoker: backend\r\n".into(),
        "\r\nX-Forwarded-For: 10.1.2.3\r\n".into(),
    ] {
        assert!(head.contains(&line), "{line:?} not in {head}");
    }
}

#[tokio::test]
async fn reserved_uris_are_refused_to_callers_but_not_to_the_platform() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h2 = hits.clone();
    let up = serve(Router::new().fallback(move |req: Request<Body>| {
        let hits = h2.clone();
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            format!(
                "{} {}",
                req.headers()["invoker"].to_str().unwrap(),
                req.uri()
            )
        }
    }))
    .await;
    let p = proxy();
    for (invoker, path) in [
        (Invoker::Client, "/pgos_event"),
        (Invoker::Backend, "/%70gos_event"),
        (Invoker::Backend, "//PGOS_TASK/x"),
        (Invoker::Intranet, "/a/../pgos_idip"),
    ] {
        let guards = Guards::default();
        let mut c = ctx("vs-r", invoker, path);
        c.guard = guards.make();
        let resp = p.forward(up, get("/"), c).await;
        assert_eq!(guards.live(), 0);
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{invoker} {path}");
        let v = body_json(resp).await;
        assert_eq!(v["error"], "forbidden");
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    let resp = p
        .forward(up, get("/"), ctx("vs-r", Invoker::Event, "/pgos_event"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(b, "event /pgos_event");
    let resp = p
        .forward(up, get("/"), ctx("vs-r", Invoker::Task, "/pgos_task"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------- streaming

const MB: usize = 1024 * 1024;

/// Upstream that reads the body frame by frame, reports its first frame, and
/// answers with the byte count and a checksum.
async fn counting_upstream() -> (SocketAddr, mpsc::Receiver<()>) {
    let (first_tx, first_rx) = mpsc::channel::<()>(1);
    let up = serve(Router::new().fallback(move |req: Request<Body>| {
        let first_tx = first_tx.clone();
        async move {
            let mut body = req.into_body();
            let (mut n, mut sum) = (0usize, 0u64);
            let mut told = false;
            while let Some(frame) = body.frame().await {
                let frame = frame.unwrap();
                if let Some(d) = frame.data_ref() {
                    n += d.len();
                    sum = d
                        .iter()
                        .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
                    if !told {
                        told = true;
                        let _ = first_tx.send(()).await;
                    }
                }
            }
            format!("{n} {sum}")
        }
    }))
    .await;
    (up, first_rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_body_streams_up() {
    let (up, mut first_rx) = counting_upstream().await;
    let p = proxy();
    let (tx, body) = channel_body();
    let req = Request::builder()
        .method("PUT")
        .uri("/u")
        .body(body)
        .unwrap();
    let fwd = tokio::spawn({
        let p = p.clone();
        async move {
            p.forward(up, req, ctx("vs-up", Invoker::Backend, "/upload"))
                .await
        }
    });
    let chunk: Vec<u8> = (0..64 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks = 8 * MB / chunk.len();
    tx.send(Bytes::from(chunk.clone())).await.unwrap();
    // The VS sees the first chunk while the caller still holds the rest: the
    // proxy does not buffer the request body.
    within("the VS to receive the first chunk", first_rx.recv())
        .await
        .unwrap();
    for _ in 1..chunks {
        tx.send(Bytes::from(chunk.clone())).await.unwrap();
    }
    drop(tx);
    let resp = within("the answer", fwd).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let b = resp.into_body().collect().await.unwrap().to_bytes();
    let want_sum = (0..chunks)
        .flat_map(|_| chunk.iter())
        .fold(0u64, |s, b| s.wrapping_mul(31).wrapping_add(u64::from(*b)));
    assert_eq!(
        String::from_utf8_lossy(&b),
        format!("{} {want_sum}", 8 * MB)
    );
    let l = [("title_region", "tr-1"), ("vs", "vs-up")];
    assert_eq!(counter("respawn_vs_bytes_in_total", &l), (8 * MB) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_body_streams_down_and_the_guard_lives_until_it_ends() {
    let senders: Arc<Mutex<Option<mpsc::Sender<Bytes>>>> = Arc::default();
    let up = serve(
        Router::new()
            .fallback(
                |State(s): State<Arc<Mutex<Option<mpsc::Sender<Bytes>>>>>| async move {
                    let (tx, body) = channel_body();
                    tx.send(Bytes::from_static(b"first;")).await.unwrap();
                    *s.lock().unwrap() = Some(tx);
                    Response::new(body)
                },
            )
            .with_state(senders.clone()),
    )
    .await;
    let p = proxy();
    let guards = Guards::default();
    let mut c = ctx("vs-down", Invoker::Client, "/stream");
    c.guard = guards.make();
    let resp = within("headers", p.forward(up, get("/"), c)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().get("transfer-encoding").is_none());
    let mut body = resp.into_body();
    let first = within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    // The upstream has not sent its last chunk yet, and the exchange is live.
    assert_eq!(guards.live(), 1);
    let tx = senders.lock().unwrap().take().unwrap();
    tx.send(Bytes::from_static(b"last")).await.unwrap();
    drop(tx);
    let rest = within("the rest", body.collect()).await.unwrap().to_bytes();
    assert_eq!(rest, "last");
    assert_eq!(guards.live(), 0);
    let l = [("title_region", "tr-1"), ("vs", "vs-down")];
    assert_eq!(counter("respawn_vs_bytes_out_total", &l), 10);
    let l = [("title_region", "tr-1"), ("vs", "vs-down"), ("code", "200")];
    assert_eq!(counter("respawn_vs_requests_total", &l), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_response_bodies_stream_through() {
    let payload = Bytes::from((0..8 * MB).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let pl = payload.clone();
    let up = serve(Router::new().fallback(move || {
        let pl = pl.clone();
        async move { Response::new(Body::from(pl)) }
    }))
    .await;
    let p = proxy();
    let resp = p
        .forward(up, get("/"), ctx("vs-big", Invoker::Backend, "/big"))
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-length"], (8 * MB).to_string());
    let mut body = resp.into_body();
    let (mut n, mut frames) = (0usize, 0usize);
    let mut got = Vec::with_capacity(8 * MB);
    while let Some(f) = within("frames", body.frame()).await {
        let d = f.unwrap().into_data().unwrap();
        n += d.len();
        frames += 1;
        got.extend_from_slice(&d);
    }
    assert_eq!(n, 8 * MB);
    assert!(frames > 1, "the body arrived as one frame");
    assert!(got == payload);
    let l = [("title_region", "tr-1"), ("vs", "vs-big")];
    assert_eq!(counter("respawn_vs_bytes_out_total", &l), (8 * MB) as u64);
}

// ---------------------------------------------------------------- failures

#[tokio::test]
async fn slow_vs_gets_504_within_the_limit() {
    let up = serve(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    }))
    .await;
    let p = proxy();
    let guards = Guards::default();
    let mut c = ctx("vs-slow", Invoker::Backend, "/slow");
    c.timeout = Duration::from_millis(200);
    c.guard = guards.make();
    // The upstream answers only after 30 s: a 504 (not its 200 "late")
    // is the proxy giving up at the call's limit.
    let resp = within("the 504", p.forward(up, get("/"), c)).await;
    assert_eq!(guards.live(), 0);
    assert_eq!(resp.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v = body_json(resp).await;
    assert_eq!(
        v,
        json!({"error": "gateway_timeout", "message": "virtual server vs-slow did not answer within 200 ms"})
    );
    let l = [("title_region", "tr-1"), ("vs", "vs-slow"), ("code", "504")];
    assert_eq!(counter("respawn_vs_requests_total", &l), 1);
    let d = histogram(
        "respawn_vs_request_duration_seconds",
        &[("title_region", "tr-1"), ("vs", "vs-slow")],
    );
    assert_eq!(d.len(), 1);
    assert!(d[0] >= 0.2 && d[0] < 5.0, "{d:?}");
}

#[tokio::test]
async fn refused_connection_gets_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    drop(listener);
    let p = proxy();
    let guards = Guards::default();
    let mut c = ctx("vs-gone", Invoker::Backend, "/x");
    c.guard = guards.make();
    let resp = p.forward(up, get("/"), c).await;
    assert_eq!(guards.live(), 0);
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v = body_json(resp).await;
    assert_eq!(v["error"], "bad_gateway");
    assert_eq!(v["message"], "could not connect to virtual server vs-gone");
    assert!(!v["message"].as_str().unwrap().contains("127.0.0.1"));
    let l = [("title_region", "tr-1"), ("vs", "vs-gone"), ("code", "502")];
    assert_eq!(counter("respawn_vs_requests_total", &l), 1);
}

#[tokio::test]
async fn reset_connection_gets_502() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    let p = proxy();
    let resp = p
        .forward(up, get("/"), ctx("vs-reset", Invoker::Backend, "/x"))
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let v = body_json(resp).await;
    assert_eq!(v["error"], "bad_gateway");
    assert_eq!(
        v["message"],
        "virtual server vs-reset closed the connection without answering"
    );
    let l = [
        ("title_region", "tr-1"),
        ("vs", "vs-reset"),
        ("code", "502"),
    ];
    assert_eq!(counter("respawn_vs_requests_total", &l), 1);
}

#[tokio::test]
async fn caller_leaving_before_the_answer_drops_the_guard_and_counts_499() {
    let up = serve(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(30)).await;
        "late"
    }))
    .await;
    let p = proxy();
    let guards = Guards::default();
    let mut c = ctx("vs-left", Invoker::Backend, "/x");
    c.guard = guards.make();
    let r = tokio::time::timeout(Duration::from_millis(100), p.forward(up, get("/"), c)).await;
    assert!(r.is_err());
    assert_eq!(guards.live(), 0);
    let l = [("title_region", "tr-1"), ("vs", "vs-left"), ("code", "499")];
    assert_eq!(counter("respawn_vs_requests_total", &l), 1);
}

// ---------------------------------------------------------------- pool, metrics, access log

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let up = echo_server().await;
    let p = proxy();
    let mut peers = Vec::new();
    for _ in 0..3 {
        let resp = p
            .forward(up, get("/"), ctx("vs-pool", Invoker::Backend, "/"))
            .await;
        peers.push(body_json(resp).await["peer"].clone());
    }
    assert_eq!(peers[0], peers[1]);
    assert_eq!(peers[1], peers[2]);
}

#[tokio::test]
async fn metrics_per_vs_and_per_whitelisted_url() {
    let up = echo_server().await;
    let p = proxy();
    for _ in 0..2 {
        let mut c = ctx("vs-m", Invoker::Backend, "/hello?a=1");
        c.metric_url = Some("/hello".into());
        let req = Request::builder()
            .method("POST")
            .uri("/")
            .body(Body::from("12345"))
            .unwrap();
        let resp = p.forward(up, req, c).await;
        resp.into_body().collect().await.unwrap();
    }
    let resp = p
        .forward(up, get("/"), ctx("vs-m", Invoker::Backend, "/other"))
        .await;
    let out_len = resp.into_body().collect().await.unwrap().to_bytes().len() as u64;

    let vs = [("title_region", "tr-1"), ("vs", "vs-m")];
    let url = [("title_region", "tr-1"), ("vs", "vs-m"), ("url", "/hello")];
    let with_code = |l: &[(&'static str, &'static str)]| {
        let mut l = l.to_vec();
        l.push(("code", "200"));
        l
    };
    assert_eq!(counter("respawn_vs_requests_total", &with_code(&vs)), 3);
    assert_eq!(
        counter("respawn_vs_url_requests_total", &with_code(&url)),
        2
    );
    assert_eq!(
        histogram("respawn_vs_request_duration_seconds", &vs).len(),
        3
    );
    assert_eq!(
        histogram("respawn_vs_url_request_duration_seconds", &url).len(),
        2
    );
    assert_eq!(counter("respawn_vs_bytes_in_total", &vs), 10);
    assert_eq!(counter("respawn_vs_url_bytes_in_total", &url), 10);
    let url_out = counter("respawn_vs_url_bytes_out_total", &url);
    assert!(url_out > 0);
    assert_eq!(
        counter("respawn_vs_bytes_out_total", &vs),
        url_out + out_len
    );
}

#[tokio::test]
async fn access_log_lines_in_nginx_combined_format() {
    let dir = tempfile::tempdir().unwrap();
    let store = AccessLogStore::open(dir.path()).unwrap();
    let up = serve(Router::new().fallback(|| async { "hello" })).await;
    let p = proxy();
    let mut c = ctx("vs-log", Invoker::Client, "/hello?x=1");
    c.access_log = Some(store.for_vs("tr-1", "vs-log"));
    c.client_ip = Some("198.51.100.7".parse().unwrap());
    let req = Request::builder()
        .method("POST")
        .uri("/virtualserver/invoke/vs-log/hello?x=1")
        .header("referer", "http://ref.example/")
        .header("user-agent", "test \"agent\"")
        .body(Body::from("abc"))
        .unwrap();
    let resp = p.forward(up, req, c).await;
    resp.into_body().collect().await.unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gone = listener.local_addr().unwrap();
    drop(listener);
    let mut c = ctx("vs-log", Invoker::Backend, "/gone");
    c.access_log = Some(store.for_vs("tr-1", "vs-log"));
    let resp = p.forward(gone, get("/"), c).await;
    let err_len = resp.into_body().collect().await.unwrap().to_bytes().len();

    let lines = tokio::task::spawn_blocking(move || {
        store
            .query("tr-1", "vs-log", None, None, None, true, 10)
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (head, rest) = lines[0].split_once(" [").unwrap();
    assert_eq!(head, "198.51.100.7 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert!(respawn_time_ok(time), "{time}");
    assert_eq!(
        rest,
        r#""POST /hello?x=1 HTTP/1.1" 200 5 "http://ref.example/" "test \x22agent\x22""#
    );
    assert!(lines[1].starts_with("- - - ["), "{}", lines[1]);
    assert!(
        lines[1].ends_with(&format!(r#"] "GET /gone HTTP/1.1" 502 {err_len} "-" "-""#)),
        "{}",
        lines[1]
    );
}

/// `22/Nov/2026:10:00:00 +0000`-shaped.
fn respawn_time_ok(t: &str) -> bool {
    t.len() == 26 && t.ends_with(" +0000") && t.as_bytes()[2] == b'/' && t.as_bytes()[11] == b':'
}

// ---------------------------------------------------------------- through a real edge

/// An axum edge in front of the proxy, called by a hyper client over TCP: the
/// guard outlives the headers and ends with the body, and a caller that
/// disconnects mid-body still releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_an_axum_edge() {
    let senders: Arc<Mutex<Option<mpsc::Sender<Bytes>>>> = Arc::default();
    let up = serve(
        Router::new()
            .fallback(
                |State(s): State<Arc<Mutex<Option<mpsc::Sender<Bytes>>>>>| async move {
                    let (tx, body) = channel_body();
                    tx.send(Bytes::from_static(b"first;")).await.unwrap();
                    *s.lock().unwrap() = Some(tx);
                    Response::new(body)
                },
            )
            .with_state(senders.clone()),
    )
    .await;
    let p = proxy();
    let guards = Guards::default();
    let edge = {
        let (p, guards) = (p.clone(), guards.clone());
        serve(Router::new().route(
            "/virtualserver/invoke/{vs}/{*rest}",
            axum::routing::any(
                move |axum::extract::Path((vs, rest)): axum::extract::Path<(String, String)>,
                      ConnectInfo(peer): ConnectInfo<SocketAddr>,
                      req: Request<Body>| {
                    let (p, guards) = (p.clone(), guards.clone());
                    async move {
                        let mut c = ctx(&vs, Invoker::Backend, &format!("/{rest}"));
                        c.client_ip = Some(peer.ip());
                        c.guard = guards.make();
                        p.forward(up, req, c).await
                    }
                },
            ),
        ))
        .await
    };

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let uri: axum::http::Uri = format!("http://{edge}/virtualserver/invoke/vs-edge/s")
        .parse()
        .unwrap();

    // 1. The whole body: the guard is released when it ends.
    let resp = within("edge headers", client.get(uri.clone()))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = within("first chunk", body.frame()).await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first;");
    assert_eq!(guards.live(), 1);
    let tx = senders.lock().unwrap().take().unwrap();
    tx.send(Bytes::from_static(b"last")).await.unwrap();
    drop(tx);
    assert_eq!(
        within("rest", body.collect()).await.unwrap().to_bytes(),
        "last"
    );
    wait_for("guard released after the body", || guards.live() == 0).await;

    // 2. The caller disconnects mid-body: the guard is released too.
    let raw = tokio::net::TcpStream::connect(edge).await.unwrap();
    let (mut rd, mut wr) = raw.into_split();
    wr.write_all(b"GET /virtualserver/invoke/vs-edge/s HTTP/1.1\r\nHost: e\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("first;") {
        let n = within("raw first chunk", rd.read(&mut buf)).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(guards.live(), 1);
    drop((rd, wr));
    let tx = senders.lock().unwrap().take().unwrap();
    // Keep the upstream talking so the edge notices the dead caller.
    for _ in 0..50 {
        if guards.live() == 0 {
            break;
        }
        let _ = tx.send(Bytes::from_static(b"more;")).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("guard released after the caller left", || {
        guards.live() == 0
    })
    .await;
    let l = [("title_region", "tr-1"), ("vs", "vs-edge"), ("code", "200")];
    assert_eq!(counter("respawn_vs_requests_total", &l), 2);
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn header_map_helpers_are_case_insensitive() {
    // RESERVED_HEADERS is the seed's spelling; HTTP names are case-insensitive.
    let mut h = HeaderMap::new();
    for name in respawn_proxy::RESERVED_HEADERS {
        h.insert(
            axum::http::HeaderName::from_bytes(name.to_ascii_uppercase().as_bytes()).unwrap(),
            "x".parse().unwrap(),
        );
    }
    let up = echo_server().await;
    let p = proxy();
    let mut req = get("/");
    *req.headers_mut() = h;
    let resp = p
        .forward(up, req, ctx("vs-ci", Invoker::Intranet, "/i"))
        .await;
    let v = body_json(resp).await;
    let got: Vec<&String> = v["headers"].as_object().unwrap().keys().collect();
    let mut got: Vec<&str> = got.iter().map(|s| s.as_str()).collect();
    got.sort();
    // The caller's X-Forwarded-For chain is kept (no client_ip to append here).
    assert_eq!(
        got,
        [
            "host",
            "invoker",
            "titleid",
            "titleregionid",
            "x-forwarded-for"
        ]
    );
    assert_eq!(v["headers"]["x-forwarded-for"], json!(["x"]));
    assert_eq!(v["headers"]["invoker"], json!(["intranet"]));
    assert_eq!(v["headers"]["titleid"], json!(["title-1"]));
}

/// Rough per-request overhead: sequential small requests direct vs. through
/// `forward` (both over kept-alive connections). Run with
/// `cargo test -p respawn-proxy --release --test forward -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn overhead_bench() {
    let up = serve(Router::new().fallback(|| async { "ok" })).await;
    let p = proxy();
    let direct = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let uri: axum::http::Uri = format!("http://{up}/x").parse().unwrap();
    let n = 5000;
    for round in 0..3 {
        let t = Instant::now();
        for _ in 0..n {
            let r = direct.get(uri.clone()).await.unwrap();
            r.into_body().collect().await.unwrap();
        }
        let d = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            let mut c = ctx("vs-bench", Invoker::Client, "/x");
            c.metric_url = Some("/x".into());
            c.client_ip = Some("10.0.0.1".parse().unwrap());
            let req = Request::builder()
                .uri("/virtualserver/invoke/vs-bench/x")
                .header("user-agent", "bench")
                .header("content-type", "application/json")
                .body(Body::empty())
                .unwrap();
            let r = p.forward(up, req, c).await;
            r.into_body().collect().await.unwrap();
        }
        let f = t.elapsed() / n;
        println!("round {round}: direct {d:?}/req, forward {f:?}/req");
    }
}
