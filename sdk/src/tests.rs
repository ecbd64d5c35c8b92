#![allow(clippy::unwrap_used, clippy::expect_used)]

//! Tests of the SDK against a small stand-in for the agent's local API
//! (the real agent lives in the `respawn` crate, whose tests drive this SDK
//! end to end through the sample DS).

use super::*;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::collections::VecDeque;
use std::time::Instant;
use tokio::sync::Notify;

const TOKEN: &str = "tok-123";

/// One event-stream connection's script: lines to send, then close or hang.
struct Script {
    lines: Vec<String>,
    close: bool,
}

#[derive(Default)]
struct Fake {
    /// (path, authorization header, body) of every POST.
    posts: Mutex<Vec<(String, String, serde_json::Value)>>,
    /// Authorization headers of every GET /v1/events.
    event_gets: Mutex<Vec<String>>,
    scripts: Mutex<VecDeque<Script>>,
    /// Answer to POSTs on this path: (status, body).
    fail: Mutex<Option<(String, StatusCode, String)>>,
    changed: Notify,
}

impl Fake {
    fn posts_to(&self, path: &str) -> Vec<serde_json::Value> {
        self.posts
            .lock()
            .map(|p| {
                p.iter()
                    .filter(|(p, _, _)| p == path)
                    .map(|(_, _, b)| b.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn wait_for<T>(fake: &Fake, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notified = fake.changed.notified();
        if let Some(v) = f() {
            return v;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out waiting for {what}");
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
    }
}

async fn on_post(
    State(fake): State<Arc<Fake>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    fake.posts
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), auth, json));
    fake.changed.notify_waiters();
    let fail = fake.fail.lock().unwrap().clone();
    match fail {
        Some((path, status, body)) if path == uri.path() => (status, body).into_response(),
        _ => (StatusCode::OK, "{\"ok\":true}").into_response(),
    }
}

async fn on_events(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    let auth = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    fake.event_gets.lock().unwrap().push(auth);
    fake.changed.notify_waiters();
    let script = fake.scripts.lock().unwrap().pop_front();
    let Some(script) = script else {
        // No script left: keep the stream open and silent.
        return Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>())
            .into_response();
    };
    let chunks: Vec<Result<Bytes, std::io::Error>> = script
        .lines
        .into_iter()
        .map(|l| Ok(Bytes::from(l)))
        .collect();
    let head = futures::stream::iter(chunks);
    if script.close {
        Body::from_stream(head).into_response()
    } else {
        Body::from_stream(head.chain(futures::stream::pending())).into_response()
    }
}

async fn start_fake(scripts: Vec<Script>) -> (Arc<Fake>, String) {
    let fake = Arc::new(Fake {
        scripts: Mutex::new(scripts.into()),
        ..Default::default()
    });
    let app = Router::new()
        .route(api::PATH_EVENTS, get(on_events))
        .fallback(post(on_post))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, format!("http://{addr}/"))
}

/// Records every callback; health answers follow `healthy`; a start
/// callback blocks until `release_start` is notified if `block_start`.
#[derive(Default)]
struct Recorder {
    log: Mutex<Vec<String>>,
    healthy: std::sync::atomic::AtomicBool,
    block_start: bool,
    release_start: Notify,
    changed: Arc<Notify>,
}

impl Recorder {
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
        self.changed.notify_waiters();
    }
}

impl Callbacks for Arc<Recorder> {
    async fn on_health_check(&self) -> bool {
        self.push("health".into());
        self.healthy.load(std::sync::atomic::Ordering::SeqCst)
    }
    async fn on_start_battle_session(&self, session: BattleSessionSpec) {
        self.push(format!("start {}", session.battle_session_id));
        if self.block_start {
            self.release_start.notified().await;
            self.push("start released".into());
        }
    }
    async fn on_terminate_battle_session(&self, id: BattleSessionId) {
        self.push(format!("terminate {id}"));
    }
    async fn on_process_terminate(&self, reason: String) {
        self.push(format!("process_terminate {reason}"));
    }
}

fn spec(id: &str) -> BattleSessionSpec {
    BattleSessionSpec {
        battle_session_id: BattleSessionId::new_unchecked(id),
        placement_id: respawn_types::PlacementId::new_unchecked("pl-1"),
        title_region_id: respawn_types::TitleRegionId::new_unchecked("tr-1"),
        fleet_id: respawn_types::FleetId::new_unchecked("fleet-1"),
        max_players: 4,
        properties: Default::default(),
        players: vec![],
        teams: vec![],
        ip: "127.0.0.1".into(),
        port: 7777,
    }
}

fn line(event: &SdkEvent) -> String {
    format!("{}\n", serde_json::to_string(event).unwrap())
}

fn sdk(endpoint: &str) -> ServerSdk {
    ServerSdk::new(endpoint, ProcessId::new_unchecked("proc-1"), TOKEN).unwrap()
}

async fn wait_log(rec: &Recorder, entry: &str) {
    let changed = rec.changed.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let notified = changed.notified();
        if rec.log.lock().unwrap().iter().any(|l| l == entry) {
            return;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for callback {entry:?}; log: {:?}",
            rec.log.lock().unwrap()
        );
        let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
    }
}

#[tokio::test]
async fn process_ready_posts_and_dispatches_events_in_order() {
    let start = line(&SdkEvent::StartBattleSession {
        battle_session: spec("bs-1"),
    });
    let term = line(&SdkEvent::TerminateBattleSession {
        battle_session_id: BattleSessionId::new_unchecked("bs-1"),
    });
    let pt = line(&SdkEvent::ProcessTerminate {
        reason: "bye".into(),
    });
    // The start event arrives split across two chunks.
    let (a, b) = start.split_at(10);
    let (fake, endpoint) = start_fake(vec![Script {
        lines: vec![a.into(), b.into(), term, pt],
        close: false,
    }])
    .await;
    let rec = Arc::new(Recorder::default());
    let sdk = sdk(&endpoint);
    sdk.process_ready(7777, vec!["/tmp/x.log".into()], rec.clone())
        .await
        .unwrap();

    assert_eq!(
        fake.posts_to(api::PATH_PROCESS_READY),
        vec![
            serde_json::json!({"port": 7777, "log_paths": ["/tmp/x.log"], "pid": std::process::id()})
        ]
    );
    let auth = fake.posts.lock().unwrap()[0].1.clone();
    assert_eq!(auth, format!("Bearer {TOKEN}"));
    wait_log(&rec, "process_terminate bye").await;
    assert_eq!(
        *rec.log.lock().unwrap(),
        vec!["start bs-1", "terminate bs-1", "process_terminate bye"]
    );
    assert_eq!(
        fake.event_gets.lock().unwrap()[0],
        format!("Bearer {TOKEN}")
    );
    assert!(matches!(
        sdk.process_ready(7777, vec![], rec.clone()).await,
        Err(SdkError::AlreadyReady)
    ));
}

#[tokio::test]
async fn health_checks_are_answered_even_while_a_callback_blocks() {
    let (fake, endpoint) = start_fake(vec![Script {
        lines: vec![
            line(&SdkEvent::StartBattleSession {
                battle_session: spec("bs-1"),
            }),
            line(&SdkEvent::HealthCheck { seq: 7 }),
        ],
        close: false,
    }])
    .await;
    let rec = Arc::new(Recorder {
        block_start: true,
        ..Default::default()
    });
    rec.healthy
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let sdk = sdk(&endpoint);
    sdk.process_ready(1, vec![], rec.clone()).await.unwrap();
    let answer = wait_for(&fake, "health answer", || {
        fake.posts_to(api::PATH_HEALTH).pop()
    })
    .await;
    assert_eq!(answer, serde_json::json!({"seq": 7, "healthy": false}));
    // The start callback is still blocked.
    assert!(!rec
        .log
        .lock()
        .unwrap()
        .iter()
        .any(|l| l == "start released"));
    rec.release_start.notify_one();
    wait_log(&rec, "start released").await;
}

#[tokio::test]
async fn event_stream_reconnects_and_skips_garbage() {
    let (fake, endpoint) = start_fake(vec![
        Script {
            lines: vec![
                "this is not json\n".into(),
                "{\"type\":\"from_the_future\",\"x\":1}\n".into(),
                "\n".into(),
                line(&SdkEvent::TerminateBattleSession {
                    battle_session_id: BattleSessionId::new_unchecked("bs-a"),
                }),
            ],
            close: true,
        },
        Script {
            lines: vec![line(&SdkEvent::TerminateBattleSession {
                battle_session_id: BattleSessionId::new_unchecked("bs-b"),
            })],
            close: false,
        },
    ])
    .await;
    let rec = Arc::new(Recorder::default());
    sdk(&endpoint)
        .process_ready(1, vec![], rec.clone())
        .await
        .unwrap();
    wait_log(&rec, "terminate bs-b").await;
    assert_eq!(
        *rec.log.lock().unwrap(),
        vec!["terminate bs-a", "terminate bs-b"]
    );
    assert!(fake.event_gets.lock().unwrap().len() >= 2);
}

#[tokio::test]
async fn agent_errors_carry_code_and_message() {
    let (fake, endpoint) = start_fake(vec![]).await;
    *fake.fail.lock().unwrap() = Some((
        api::PATH_ACTIVATE.into(),
        StatusCode::CONFLICT,
        "{\"error\":\"invalid_state\",\"message\":\"session bs-1 is not ACTIVATING\"}".into(),
    ));
    let sdk = sdk(&endpoint);
    let err = sdk
        .activate_battle_session(&BattleSessionId::new_unchecked("bs-1"))
        .await
        .unwrap_err();
    match err {
        SdkError::Agent {
            status,
            code,
            message,
        } => {
            assert_eq!(status, 409);
            assert_eq!(code, ErrorCode::InvalidState);
            assert_eq!(message, "session bs-1 is not ACTIVATING");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        fake.posts_to(api::PATH_ACTIVATE),
        vec![serde_json::json!({"battle_session_id": "bs-1"})]
    );

    *fake.fail.lock().unwrap() = Some((
        api::PATH_REMOVE_PLAYER.into(),
        StatusCode::BAD_GATEWAY,
        "<html>oops</html>".into(),
    ));
    let err = sdk
        .remove_player_battle_session(
            &BattleSessionId::new_unchecked("bs-1"),
            &PlayerBattleSessionId::new_unchecked("pbs-9"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SdkError::UnexpectedResponse { status: 502, body } if body == "<html>oops</html>"),
        "{err:?}"
    );
    assert_eq!(
        fake.posts_to(api::PATH_REMOVE_PLAYER),
        vec![serde_json::json!({"battle_session_id": "bs-1", "player_battle_session_id": "pbs-9"})]
    );
}

#[tokio::test]
async fn every_call_hits_its_path_with_its_body() {
    let (fake, endpoint) = start_fake(vec![]).await;
    let sdk = sdk(&endpoint);
    let bs = BattleSessionId::new_unchecked("bs-1");
    let pbs = PlayerBattleSessionId::new_unchecked("pbs-1");
    sdk.accept_player_battle_session(&bs, &pbs).await.unwrap();
    sdk.disconnect_player_battle_session(&bs, &pbs)
        .await
        .unwrap();
    sdk.terminate_battle_session(&bs).await.unwrap();
    sdk.process_ending().await.unwrap();
    let posts: Vec<(String, serde_json::Value)> = fake
        .posts
        .lock()
        .unwrap()
        .iter()
        .map(|(p, _, b)| (p.clone(), b.clone()))
        .collect();
    let player =
        serde_json::json!({"battle_session_id": "bs-1", "player_battle_session_id": "pbs-1"});
    assert_eq!(
        posts,
        vec![
            (api::PATH_ACCEPT_PLAYER.to_owned(), player.clone()),
            (api::PATH_DISCONNECT_PLAYER.to_owned(), player),
            (
                api::PATH_TERMINATE_BATTLE_SESSION.to_owned(),
                serde_json::json!({"battle_session_id": "bs-1"})
            ),
            (api::PATH_PROCESS_ENDING.to_owned(), serde_json::json!({})),
        ]
    );
}

#[tokio::test]
async fn unreachable_agent_is_a_transport_error() {
    // Bind then drop a listener to get a port nobody listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let sdk = sdk(&format!("http://127.0.0.1:{port}"));
    assert!(matches!(
        sdk.process_ending().await,
        Err(SdkError::Transport(_))
    ));
}

#[test]
fn configuration_is_validated() {
    let id = || ProcessId::new_unchecked("proc-1");
    assert!(matches!(
        ServerSdk::new("not a url", id(), "t"),
        Err(SdkError::InvalidConfig {
            name: api::ENV_SDK_ENDPOINT,
            ..
        })
    ));
    assert!(matches!(
        ServerSdk::new("ftp://127.0.0.1:1", id(), "t"),
        Err(SdkError::InvalidConfig {
            name: api::ENV_SDK_ENDPOINT,
            ..
        })
    ));
    assert!(matches!(
        ServerSdk::new("http://127.0.0.1:1", id(), ""),
        Err(SdkError::InvalidConfig {
            name: api::ENV_PROCESS_TOKEN,
            ..
        })
    ));
    assert!(matches!(
        ServerSdk::new("http://127.0.0.1:1", id(), "a\nb"),
        Err(SdkError::InvalidConfig {
            name: api::ENV_PROCESS_TOKEN,
            ..
        })
    ));
    let sdk = ServerSdk::new("http://127.0.0.1:1/", id(), "t").unwrap();
    assert_eq!(
        sdk.inner.conn.url(api::PATH_HEALTH),
        "http://127.0.0.1:1/v1/health"
    );
    assert_eq!(sdk.process_id().as_str(), "proc-1");
}

#[test]
fn reconnect_delay_grows_and_is_capped() {
    assert_eq!(reconnect_delay(0), Duration::from_millis(50));
    assert_eq!(reconnect_delay(1), Duration::from_millis(100));
    assert_eq!(reconnect_delay(3), Duration::from_millis(400));
    assert_eq!(reconnect_delay(6), Duration::from_secs(2));
    assert_eq!(reconnect_delay(u32::MAX), Duration::from_secs(2));
}
