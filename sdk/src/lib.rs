//! The Respawn Server SDK for Rust dedicated game servers (DS).
//!
//! A DS launched by a Respawn agent finds the agent's local API in its
//! environment ([`ServerSdk::from_env`]), reports that it is ready to host
//! battle sessions ([`ServerSdk::process_ready`]) and from then on receives
//! the platform's callbacks through the [`Callbacks`] it registered:
//!
//! | seed callback            | [`Callbacks`] method                      |
//! |--------------------------|-------------------------------------------|
//! | OnHealthCheck            | [`Callbacks::on_health_check`]            |
//! | OnStartBattleSession     | [`Callbacks::on_start_battle_session`]    |
//! | OnTerminateBattleSession | [`Callbacks::on_terminate_battle_session`]|
//! | OnProcessTerminate       | [`Callbacks::on_process_terminate`]       |
//!
//! The DS answers with the calls on [`ServerSdk`]: `activate_battle_session`
//! once it can take players, `accept_player_battle_session` for every player
//! that connects, `remove_player_battle_session` when one leaves for good,
//! and `process_ending` before it exits.
//!
//! ```no_run
//! use respawn_sdk::{BattleSessionSpec, Callbacks, ServerSdk};
//!
//! struct Game { sdk: ServerSdk }
//!
//! impl Callbacks for Game {
//!     async fn on_start_battle_session(&self, session: BattleSessionSpec) {
//!         // load the map, then:
//!         let _ = self.sdk.activate_battle_session(&session.battle_session_id).await;
//!     }
//!     async fn on_process_terminate(&self, _reason: String) {
//!         std::process::exit(0);
//!     }
//! }
//!
//! # async fn run() -> Result<(), respawn_sdk::SdkError> {
//! let sdk = ServerSdk::from_env()?;
//! sdk.process_ready(7777, vec![], Game { sdk: sdk.clone() }).await?;
//! # Ok(()) }
//! ```
//!
//! The wire protocol under this crate is described in `docs/sdk-protocol.md`.

mod callbacks;
pub mod forking;
mod lines;

use futures::StreamExt;
use lines::{Line, LineSplitter};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use respawn_types::backoff::capped_exponential;
use respawn_types::sdk::{self as api, HealthAnswer, SdkEvent};
use respawn_types::text::truncate_utf8;
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

pub use callbacks::Callbacks;
pub use respawn_types::agent::{BattleSessionSpec, ErrorCode, PlayerSlot};
pub use respawn_types::sdk::{
    BattleSessionDescription, PlayerDescription, ENV_FLEET_ID, ENV_HOST_ID, ENV_LOG_DIR,
    ENV_PROCESS_ID, ENV_PROCESS_TOKEN, ENV_SDK_ENDPOINT,
};
pub use respawn_types::{BattleSessionId, PlayerBattleSessionId, PlayerId, ProcessId};

/// Longest event line the SDK accepts from the agent (1 MiB).
const MAX_EVENT_LINE: usize = 1024 * 1024;
/// Time limit of one SDK call (the agent forwards some calls to the cluster).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Everything that can go wrong in an SDK call.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// A required environment variable is missing: the process was not
    /// launched by a Respawn agent.
    #[error(
        "environment variable {name} is not set (was this process launched by a Respawn agent?)"
    )]
    MissingEnv {
        /// The variable's name.
        name: &'static str,
    },
    /// An environment variable (or the equivalent argument of
    /// [`ServerSdk::new`]) has an unusable value.
    #[error("{name} is invalid: {reason}")]
    InvalidConfig {
        /// The variable's name.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// [`ServerSdk::process_ready`] was called a second time.
    #[error("process_ready was already called")]
    AlreadyReady,
    /// The agent could not be reached, or the call timed out.
    #[error("could not reach the agent: {0}")]
    Transport(#[source] reqwest::Error),
    /// The agent (or the cluster behind it) refused the call.
    #[error("agent refused the call ({status}, {code:?}): {message}")]
    Agent {
        /// HTTP status of the answer.
        status: u16,
        /// Machine-readable reason.
        code: ErrorCode,
        /// Human-readable reason.
        message: String,
    },
    /// A [`forking::ForkingParent`] call failed at the socket.
    #[error("could not reach the agent: {0}")]
    Io(String),
    /// The agent answered something that is not the protocol.
    #[error("agent answered {status} with an unexpected body: {body}")]
    UnexpectedResponse {
        /// HTTP status of the answer.
        status: u16,
        /// The body, cut to a few hundred bytes.
        body: String,
    },
}

impl SdkError {
    /// The agent's error code, if the agent answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            SdkError::Agent { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// A virtual server's answer to [`ServerSdk::invoke_virtual_server`].
#[derive(Debug, Clone)]
pub struct VirtualServerResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The platform answers a VS call within 10 s (seed §5.6) plus a cold start.
const VS_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// What the SDK needs to talk to the agent; cheap to clone.
#[derive(Clone)]
struct Conn {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    endpoint: String,
    /// `Bearer <token>`; replaced once when a forked process gets its own token.
    auth: Arc<Mutex<HeaderValue>>,
}

impl Conn {
    fn auth(&self) -> HeaderValue {
        self.auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.endpoint, path)
    }

    async fn post<B: Serialize>(&self, path: &str, body: &B) -> Result<(), SdkError> {
        let resp = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, self.auth())
            .timeout(CALL_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(SdkError::Transport)?;
        check(resp).await.map(|_| ())
    }

    /// POSTs `body` and decodes the JSON answer.
    async fn post_for<B: Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, SdkError> {
        let resp = self
            .http
            .post(self.url(path))
            .header(AUTHORIZATION, self.auth())
            .timeout(CALL_TIMEOUT)
            .json(body)
            .send()
            .await
            .map_err(SdkError::Transport)?;
        let resp = check(resp).await?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(SdkError::Transport)?;
        serde_json::from_slice(&bytes).map_err(|_| SdkError::UnexpectedResponse {
            status,
            body: truncate_utf8(&String::from_utf8_lossy(&bytes), 300).to_owned(),
        })
    }
}

/// Turns a non-2xx answer into [`SdkError::Agent`] (or `UnexpectedResponse`).
async fn check(resp: reqwest::Response) -> Result<reqwest::Response, SdkError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let bytes = resp.bytes().await.map_err(SdkError::Transport)?;
    match serde_json::from_slice::<api::SdkError>(&bytes) {
        Ok(e) => Err(SdkError::Agent {
            status: status.as_u16(),
            code: e.error,
            message: e.message,
        }),
        Err(_) => {
            let body = truncate_utf8(&String::from_utf8_lossy(&bytes), 300).to_owned();
            Err(SdkError::UnexpectedResponse {
                status: status.as_u16(),
                body,
            })
        }
    }
}

struct Inner {
    conn: Conn,
    process_id: ProcessId,
    /// A forked process's own id, given by the agent at ProcessReady.
    forked_id: std::sync::OnceLock<ProcessId>,
    /// The event-stream task, once `process_ready` has started it.
    events: Mutex<Option<AbortHandle>>,
}

/// A handle on the agent's local API for this DS process. Cheap to clone.
/// Once [`ServerSdk::process_ready`] has started the event stream, it runs
/// in the background until [`ServerSdk::close`] (dropping the handle does
/// not stop it).
#[derive(Clone)]
pub struct ServerSdk {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServerSdk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSdk")
            .field("endpoint", &self.inner.conn.endpoint)
            .field("process_id", &self.inner.process_id)
            .finish_non_exhaustive()
    }
}

impl ServerSdk {
    /// Reads `RESPAWN_SDK_ENDPOINT`, `RESPAWN_PROCESS_ID` and
    /// `RESPAWN_PROCESS_TOKEN`, which the agent sets for every DS it launches.
    pub fn from_env() -> Result<Self, SdkError> {
        let var =
            |name: &'static str| std::env::var(name).map_err(|_| SdkError::MissingEnv { name });
        let endpoint = var(api::ENV_SDK_ENDPOINT)?;
        let process_id =
            ProcessId::parse(var(api::ENV_PROCESS_ID)?).map_err(|e| SdkError::InvalidConfig {
                name: api::ENV_PROCESS_ID,
                reason: e.to_string(),
            })?;
        let token = var(api::ENV_PROCESS_TOKEN)?;
        Self::new(&endpoint, process_id, &token)
    }

    /// Builds a handle from explicit values (what [`ServerSdk::from_env`]
    /// reads from the environment). The endpoint is an `http://` base URL.
    pub fn new(endpoint: &str, process_id: ProcessId, token: &str) -> Result<Self, SdkError> {
        let url = reqwest::Url::parse(endpoint).map_err(|e| SdkError::InvalidConfig {
            name: api::ENV_SDK_ENDPOINT,
            reason: format!("{endpoint:?} is not a URL: {e}"),
        })?;
        if url.scheme() != "http" || url.host().is_none() {
            return Err(SdkError::InvalidConfig {
                name: api::ENV_SDK_ENDPOINT,
                reason: format!("{endpoint:?} is not an http:// URL"),
            });
        }
        if token.is_empty() {
            return Err(SdkError::InvalidConfig {
                name: api::ENV_PROCESS_TOKEN,
                reason: "empty".into(),
            });
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            SdkError::InvalidConfig {
                name: api::ENV_PROCESS_TOKEN,
                reason: "contains characters not allowed in an HTTP header".into(),
            }
        })?;
        auth.set_sensitive(true);
        // The agent is on loopback: never go through a proxy from the environment.
        let http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(SdkError::Transport)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Conn {
                    http,
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    auth: Arc::new(Mutex::new(auth)),
                },
                process_id,
                forked_id: std::sync::OnceLock::new(),
                events: Mutex::new(None),
            }),
        })
    }

    /// This process's id, as the platform knows it.
    pub fn process_id(&self) -> &ProcessId {
        self.inner.forked_id.get().unwrap_or(&self.inner.process_id)
    }

    /// ProcessReady: tells the platform this process can host battle
    /// sessions on `port`, keeps `log_paths` for upload, and starts
    /// delivering callbacks to `callbacks` from a background task (which
    /// reconnects to the agent if the event stream drops). Must be called
    /// from within a Tokio runtime, once.
    pub async fn process_ready<C: Callbacks>(
        &self,
        port: u16,
        log_paths: Vec<String>,
        callbacks: C,
    ) -> Result<(), SdkError> {
        if port == 0 {
            return Err(SdkError::InvalidConfig {
                name: "port",
                reason: "must not be 0".into(),
            });
        }
        {
            let events = self
                .inner
                .events
                .lock()
                .map_err(|_| SdkError::AlreadyReady)?;
            if events.is_some() {
                return Err(SdkError::AlreadyReady);
            }
        }
        // The pid lets a forked process (forking mode), which inherited its
        // parent's token, register as itself; other processes' is ignored.
        let answer: api::ProcessReadyAnswer = self
            .inner
            .conn
            .post_for(
                api::PATH_PROCESS_READY,
                &api::ProcessReadyRequest {
                    port,
                    log_paths,
                    pid: Some(std::process::id()),
                },
            )
            .await?;
        if let (Some(id), Some(token)) = (answer.process_id, answer.process_token) {
            self.adopt_identity(id, &token)?;
        }
        let task = tokio::spawn(run_events(self.inner.conn.clone(), Arc::new(callbacks)));
        let mut events = self
            .inner
            .events
            .lock()
            .map_err(|_| SdkError::AlreadyReady)?;
        if events.is_some() {
            // A concurrent process_ready won the race; keep its stream.
            task.abort();
            return Err(SdkError::AlreadyReady);
        }
        *events = Some(task.abort_handle());
        Ok(())
    }

    /// A forked process's own id and token, from its ProcessReady.
    fn adopt_identity(&self, id: ProcessId, token: &str) -> Result<(), SdkError> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            SdkError::UnexpectedResponse {
                status: 200,
                body: "process_token is not a header value".into(),
            }
        })?;
        auth.set_sensitive(true);
        *self
            .inner
            .conn
            .auth
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = auth;
        let _ = self.inner.forked_id.set(id);
        Ok(())
    }

    /// ActivateBattleSession: the battle session given in
    /// `on_start_battle_session` is ready for players.
    pub async fn activate_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
    ) -> Result<(), SdkError> {
        self.inner
            .conn
            .post(
                api::PATH_ACTIVATE,
                &api::BattleSessionRequest {
                    battle_session_id: battle_session_id.clone(),
                },
            )
            .await
    }

    /// DescribeBattleSession: a battle session this process holds, as the
    /// cluster has it now — its status and every player battle session with
    /// its status (players added after OnStartBattleSession included).
    pub async fn describe_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
    ) -> Result<BattleSessionDescription, SdkError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            battle_session: BattleSessionDescription,
        }
        let a: Answer = self
            .inner
            .conn
            .post_for(
                api::PATH_DESCRIBE_BATTLE_SESSION,
                &api::BattleSessionRequest {
                    battle_session_id: battle_session_id.clone(),
                },
            )
            .await?;
        Ok(a.battle_session)
    }

    /// AcceptPlayerBattleSession: checks that a connecting player holds a
    /// reservation in this battle session; reject the connection on error.
    pub async fn accept_player_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
        player_battle_session_id: &PlayerBattleSessionId,
    ) -> Result<(), SdkError> {
        self.player_call(
            api::PATH_ACCEPT_PLAYER,
            battle_session_id,
            player_battle_session_id,
        )
        .await
    }

    /// DisconnectPlayerBattleSession: the player dropped but may come back
    /// (accept it again then).
    pub async fn disconnect_player_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
        player_battle_session_id: &PlayerBattleSessionId,
    ) -> Result<(), SdkError> {
        self.player_call(
            api::PATH_DISCONNECT_PLAYER,
            battle_session_id,
            player_battle_session_id,
        )
        .await
    }

    /// RemovePlayerBattleSession: the player left for good.
    pub async fn remove_player_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
        player_battle_session_id: &PlayerBattleSessionId,
    ) -> Result<(), SdkError> {
        self.player_call(
            api::PATH_REMOVE_PLAYER,
            battle_session_id,
            player_battle_session_id,
        )
        .await
    }

    /// TerminateBattleSession (parallel mode): this battle session is over;
    /// the process stays and may receive new ones.
    pub async fn terminate_battle_session(
        &self,
        battle_session_id: &BattleSessionId,
    ) -> Result<(), SdkError> {
        self.inner
            .conn
            .post(
                api::PATH_TERMINATE_BATTLE_SESSION,
                &api::BattleSessionRequest {
                    battle_session_id: battle_session_id.clone(),
                },
            )
            .await
    }

    /// ProcessEnding: the process is about to exit; its battle sessions are
    /// terminated. Exit soon after: the platform kills the process if it is
    /// still alive after the fleet's grace (2 minutes by default).
    pub async fn process_ending(&self) -> Result<(), SdkError> {
        self.inner
            .conn
            .post(api::PATH_PROCESS_ENDING, &serde_json::json!({}))
            .await
    }

    /// InvokeVirtualServer (seed §4.8): sends `body` with `method` to `path`
    /// (e.g. `/battle/settlement?x=1`) of virtual server `vs` in this DS's
    /// title region, through the agent (`ANY /v1/vs/invoke/{vs}/{path}`).
    /// The VS sees `Invoker: backend`. Any HTTP answer of the VS is returned
    /// as is (status, headers, body); errors of the platform (unknown VS:
    /// 404, no instance: 503, timeout: 504) come back the same way, with a
    /// JSON body naming the problem.
    pub async fn invoke_virtual_server(
        &self,
        vs: &str,
        path: &str,
        method: reqwest::Method,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<VirtualServerResponse, SdkError> {
        let path = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        let conn = &self.inner.conn;
        let mut req = conn
            .http
            .request(method, conn.url(&format!("/v1/vs/invoke/{vs}{path}")))
            .header(AUTHORIZATION, conn.auth())
            .timeout(VS_CALL_TIMEOUT)
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.map_err(SdkError::Transport)?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
            .collect();
        let body = resp.bytes().await.map_err(SdkError::Transport)?.to_vec();
        Ok(VirtualServerResponse {
            status,
            headers,
            body,
        })
    }

    /// Stops the event stream; no callback is delivered after this returns
    /// (one already running completes).
    pub fn close(&self) {
        if let Ok(mut events) = self.inner.events.lock() {
            if let Some(task) = events.take() {
                task.abort();
            }
        }
    }

    async fn player_call(
        &self,
        path: &str,
        battle_session_id: &BattleSessionId,
        player_battle_session_id: &PlayerBattleSessionId,
    ) -> Result<(), SdkError> {
        self.inner
            .conn
            .post(
                path,
                &api::PlayerBattleSessionRequest {
                    battle_session_id: battle_session_id.clone(),
                    player_battle_session_id: player_battle_session_id.clone(),
                },
            )
            .await
    }
}

/// Delay before reconnect attempt `attempt` (0-based) of the event stream:
/// 50 ms doubling up to 2 s.
fn reconnect_delay(attempt: u32) -> Duration {
    capped_exponential(Duration::from_millis(50), Duration::from_secs(2), attempt)
}

/// Keeps the event stream open and dispatches events until aborted.
async fn run_events<C: Callbacks>(conn: Conn, callbacks: Arc<C>) {
    // Non-health callbacks run one at a time, in order, on their own task,
    // so that health checks are answered even while one is slow.
    let (tx, rx) = mpsc::unbounded_channel();
    let sequential = tokio::spawn(run_sequential(callbacks.clone(), rx));
    // Stop the sequential task when this one is aborted.
    let _guard = AbortOnDrop(sequential.abort_handle());
    let mut attempt = 0u32;
    loop {
        match open_events(&conn).await {
            Ok(resp) => {
                tracing::debug!("event stream connected");
                attempt = 0;
                read_events(&conn, &callbacks, &tx, resp).await;
                tracing::debug!("event stream ended; reconnecting");
            }
            Err(e) => tracing::warn!(error = %e, "could not open the event stream; retrying"),
        }
        tokio::time::sleep(reconnect_delay(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}

struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn open_events(conn: &Conn) -> Result<reqwest::Response, SdkError> {
    let resp = conn
        .http
        .get(conn.url(api::PATH_EVENTS))
        .header(AUTHORIZATION, conn.auth())
        .send()
        .await
        .map_err(SdkError::Transport)?;
    check(resp).await
}

async fn read_events<C: Callbacks>(
    conn: &Conn,
    callbacks: &Arc<C>,
    tx: &mpsc::UnboundedSender<SdkEvent>,
    resp: reqwest::Response,
) {
    let mut splitter = LineSplitter::new(MAX_EVENT_LINE);
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!(error = %e, "event stream broke");
                return;
            }
        };
        for line in splitter.push(&chunk) {
            let line = match line {
                Line::Complete(l) => l,
                Line::TooLong => {
                    tracing::warn!("ignored an event line longer than {MAX_EVENT_LINE} bytes");
                    continue;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match serde_json::from_slice::<SdkEvent>(&line) {
                Ok(SdkEvent::HealthCheck { seq }) => {
                    tokio::spawn(answer_health(conn.clone(), callbacks.clone(), seq));
                }
                Ok(event) => {
                    // The receiver lives as long as this task (see run_events).
                    let _ = tx.send(event);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ignored an event the SDK does not understand")
                }
            }
        }
    }
}

async fn answer_health<C: Callbacks>(conn: Conn, callbacks: Arc<C>, seq: u64) {
    let healthy = callbacks.on_health_check().await;
    if let Err(e) = conn
        .post(api::PATH_HEALTH, &HealthAnswer { seq, healthy })
        .await
    {
        tracing::warn!(error = %e, seq, "could not answer a health check");
    }
}

async fn run_sequential<C: Callbacks>(
    callbacks: Arc<C>,
    mut rx: mpsc::UnboundedReceiver<SdkEvent>,
) {
    while let Some(event) = rx.recv().await {
        match event {
            SdkEvent::StartBattleSession { battle_session } => {
                tracing::info!(battle_session_id = %battle_session.battle_session_id, "OnStartBattleSession");
                callbacks.on_start_battle_session(battle_session).await;
            }
            SdkEvent::TerminateBattleSession { battle_session_id } => {
                tracing::info!(%battle_session_id, "OnTerminateBattleSession");
                callbacks
                    .on_terminate_battle_session(battle_session_id)
                    .await;
            }
            SdkEvent::ProcessTerminate { reason } => {
                tracing::info!(%reason, "OnProcessTerminate");
                callbacks.on_process_terminate(reason).await;
            }
            SdkEvent::BattleSessionUpdated { battle_session } => {
                tracing::info!(battle_session_id = %battle_session.battle_session_id, "OnBattleSessionUpdated");
                callbacks.on_battle_session_updated(battle_session).await;
            }
            SdkEvent::PlayerBattleSessionsTerminated {
                battle_session_id,
                player_battle_session_ids,
            } => {
                tracing::info!(%battle_session_id, players = player_battle_session_ids.len(), "OnPlayerBattleSessionsTerminated");
                callbacks
                    .on_player_battle_sessions_terminated(
                        battle_session_id,
                        player_battle_session_ids,
                    )
                    .await;
            }
            SdkEvent::BattlePlayerOffline {
                battle_session_id,
                player_id,
                player_battle_session_id,
            } => {
                tracing::info!(%battle_session_id, %player_id, "OnBattlePlayerOffline");
                callbacks
                    .on_battle_player_offline(
                        battle_session_id,
                        player_id,
                        player_battle_session_id,
                    )
                    .await;
            }
            SdkEvent::BattlePlayerBanned {
                battle_session_id,
                player_id,
                player_battle_session_id,
                reason,
            } => {
                tracing::info!(%battle_session_id, %player_id, %reason, "OnBattlePlayerBanned");
                callbacks
                    .on_battle_player_banned(
                        battle_session_id,
                        player_id,
                        player_battle_session_id,
                        reason,
                    )
                    .await;
            }
            // Answered on their own task in read_events.
            SdkEvent::HealthCheck { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests;
