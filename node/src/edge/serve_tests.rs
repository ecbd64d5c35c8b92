//! The edge's connection bounds over real TCP connections. No wall-clock
//! assert: short configured timeouts, and waits for the close with a
//! generous deadline (the other timeout set far beyond it).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(30);
const HOUR_MS: u64 = 3_600_000;

async fn start(limits: EdgeLimits) -> SocketAddr {
    start_on(limits, true).await
}

async fn start_on(limits: EdgeLimits, own_threads: bool) -> SocketAddr {
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(900)).await;
                "ok"
            }),
        )
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_on(listener, app, limits, own_threads));
    addr
}

/// Sends `GET path` (keep-alive) and reads the response's body.
async fn get_on(tcp: &mut TcpStream, path: &str) -> String {
    tcp.write_all(format!("GET {path} HTTP/1.1\r\nHost: edge\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(DEADLINE, tcp.read(&mut chunk))
            .await
            .expect("a response")
            .unwrap();
        assert!(n > 0, "closed before the response");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap();
            if body.len() >= len {
                return body.to_string();
            }
        }
    }
}

/// Waits until the server closes `tcp` (EOF or reset); panics after the
/// deadline.
async fn closed_by_server(tcp: &mut TcpStream) {
    let mut chunk = [0u8; 64];
    let r = tokio::time::timeout(DEADLINE, async {
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(r.is_ok(), "the edge kept the connection open");
}

#[tokio::test]
async fn a_slow_header_connection_is_closed() {
    let addr = start(EdgeLimits {
        header_read_timeout_ms: 300,
        idle_timeout_ms: HOUR_MS,
        max_connections: 10,
    })
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /ok HTTP/1.1\r\nHost: edge\r\n")
        .await
        .unwrap();
    // Dribbling more header lines does not restart the timer.
    let (mut rd, mut wr) = tcp.split();
    let dribble = async {
        for i in 0.. {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if wr
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    };
    let mut chunk = [0u8; 64];
    // The first read ends: at EOF (or a reset), never with an answer.
    let closed = async {
        if let Ok(n @ 1..) = rd.read(&mut chunk).await {
            panic!(
                "unexpected answer: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            );
        }
    };
    let r = tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            _ = closed => {}
            _ = dribble => { /* write failed: closed */ }
        }
    })
    .await;
    assert!(r.is_ok(), "a dribbled header kept the connection open");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_serving() {
    let addr = start_on(
        EdgeLimits {
            header_read_timeout_ms: HOUR_MS,
            idle_timeout_ms: 300,
            max_connections: 10,
        },
        false,
    )
    .await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get_on(&mut tcp, "/ok").await, "ok");
    // The client's address reaches handlers.
    assert_eq!(
        get_on(&mut tcp, "/peer").await,
        tcp.local_addr().unwrap().to_string()
    );
    // A request that outlasts the idle timeout is not cut.
    assert_eq!(get_on(&mut tcp, "/slow").await, "ok");
    closed_by_server(&mut tcp).await;

    // A connection that never sends anything is closed too.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    closed_by_server(&mut silent).await;
}

#[tokio::test]
async fn past_the_cap_new_connections_are_closed_and_open_ones_served() {
    let addr = start(EdgeLimits {
        header_read_timeout_ms: HOUR_MS,
        idle_timeout_ms: HOUR_MS,
        max_connections: 2,
    })
    .await;
    let mut a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    assert_eq!(get_on(&mut a, "/ok").await, "ok");
    assert_eq!(get_on(&mut b, "/ok").await, "ok");

    // Over the cap: closed without an answer.
    let mut c = TcpStream::connect(addr).await.unwrap();
    let _ = c.write_all(b"GET /ok HTTP/1.1\r\nHost: edge\r\n\r\n").await;
    closed_by_server(&mut c).await;

    // The open ones are still served.
    assert_eq!(get_on(&mut a, "/ok").await, "ok");
    assert_eq!(get_on(&mut b, "/ok").await, "ok");

    // Once one closes, a new connection gets its place.
    drop(b);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut d = TcpStream::connect(addr).await.unwrap();
        let served = d
            .write_all(b"GET /ok HTTP/1.1\r\nHost: edge\r\n\r\n")
            .await
            .is_ok()
            && {
                let mut buf = [0u8; 256];
                matches!(
                    tokio::time::timeout(DEADLINE, d.read(&mut buf)).await,
                    Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 200")
                )
            };
        if served {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no room after a connection closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(get_on(&mut a, "/ok").await, "ok");
}

#[test]
fn the_watchdog_decision() {
    let limits = EdgeLimits {
        header_read_timeout_ms: 10,
        idle_timeout_ms: 20,
        max_connections: 1,
    };
    let t = Instant::now();
    assert_eq!(
        due(Phase::Idle(t), &limits),
        Some((t + Duration::from_millis(20), Closed::Idle))
    );
    assert_eq!(
        due(Phase::ReadingHead(t), &limits),
        Some((t + Duration::from_millis(10), Closed::HeaderTimeout))
    );
    assert_eq!(due(Phase::Busy, &limits), None);
}

#[test]
fn the_watchdog_looks_again_before_any_new_phase_can_expire() {
    let limits = EdgeLimits {
        header_read_timeout_ms: 10,
        idle_timeout_ms: 20,
        max_connections: 1,
    };
    let t = Instant::now();
    let ms = Duration::from_millis;
    // Idle since t, looked at t + 5: its deadline is t + 20, but a head
    // starting right after the look would expire at t + 15.
    assert_eq!(next_look(Phase::Idle(t), t + ms(5), &limits), t + ms(15));
    // Looked at t + 15: the idle deadline comes first.
    assert_eq!(next_look(Phase::Idle(t), t + ms(15), &limits), t + ms(20));
    assert_eq!(
        next_look(Phase::ReadingHead(t), t + ms(1), &limits),
        t + ms(10)
    );
    // Busy: no deadline of its own; look again one short timeout later.
    assert_eq!(next_look(Phase::Busy, t, &limits), t + ms(10));
}
