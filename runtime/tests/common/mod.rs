//! Helpers shared by the integration tests: a runtime with its event stream, waiting
//! for states with deadlines, and a tiny HTTP client.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use respawn_runtime::{
    AbnormalReason, InstanceEvent, InstanceSpec, InstanceState, RuntimeConfig, Source, VsRuntime,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

pub struct Harness {
    pub rt: VsRuntime,
    pub rx: UnboundedReceiver<InstanceEvent>,
    pub dir: tempfile::TempDir,
    pub agent: String,
    /// Every event received so far, in order.
    pub history: Vec<InstanceEvent>,
    /// Per instance: the history index after the event the last wait returned.
    cursors: std::collections::HashMap<String, usize>,
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        respawn_now_ns() % 1_000_000_000
    )
}

fn respawn_now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

impl Harness {
    pub fn new(deploy_timeout: Duration) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let agent = unique("agent");
        let mut cfg = RuntimeConfig::new(dir.path(), agent.clone());
        cfg.deploy_timeout = deploy_timeout;
        let (rt, rx) = VsRuntime::new(cfg);
        Harness {
            rt,
            rx,
            dir,
            agent,
            history: Vec::new(),
            cursors: Default::default(),
        }
    }

    /// Waits for an event of `id`, later than the one the previous wait for `id`
    /// returned, whose state satisfies `pred`; panics with the history after
    /// `timeout`.
    pub async fn wait_for(
        &mut self,
        id: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&InstanceState) -> bool,
    ) -> InstanceState {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut i = self.cursors.get(id).copied().unwrap_or(0);
        loop {
            while i < self.history.len() {
                let ev = &self.history[i];
                i += 1;
                if ev.instance_id == id && pred(&ev.state) {
                    self.cursors.insert(id.to_string(), i);
                    return ev.state.clone();
                }
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => self.history.push(ev),
                Ok(None) => panic!("event channel closed while waiting for {what}"),
                Err(_) => panic!(
                    "no {what} for {id} within {timeout:?}; events: {:#?}",
                    self.history
                        .iter()
                        .filter(|e| e.instance_id == id)
                        .map(|e| &e.state)
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for `Running` and returns its host port.
    pub async fn running(&mut self, id: &str, timeout: Duration) -> (u16, respawn_runtime::Limits) {
        match self
            .wait_for(id, "Running", timeout, |s| {
                matches!(s, InstanceState::Running { .. })
            })
            .await
        {
            InstanceState::Running { port, limits } => (port, limits),
            _ => unreachable!(),
        }
    }

    /// Waits for `Abnormal(reason)` and returns its detail.
    pub async fn abnormal(
        &mut self,
        id: &str,
        reason: AbnormalReason,
        timeout: Duration,
    ) -> String {
        match self
            .wait_for(
                id,
                &format!("Abnormal({reason:?})"),
                timeout,
                |s| matches!(s, InstanceState::Abnormal { reason: r, .. } if *r == reason),
            )
            .await
        {
            InstanceState::Abnormal { detail, .. } => detail,
            _ => unreachable!(),
        }
    }

    /// Drains events already queued (without waiting).
    pub fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.history.push(ev);
        }
    }

    /// The states of `id` seen so far, as short names ("deploying", "running",
    /// "crashed", ..., "stopped").
    pub fn state_names(&mut self, id: &str) -> Vec<String> {
        self.states(id)
            .iter()
            .map(|s| match s {
                InstanceState::Deploying => "deploying".to_string(),
                InstanceState::Running { .. } => "running".to_string(),
                InstanceState::Stopped => "stopped".to_string(),
                InstanceState::Abnormal { reason, .. } => serde_json::to_value(reason)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string(),
            })
            .collect()
    }

    /// The states of `id` seen so far.
    pub fn states(&mut self, id: &str) -> Vec<InstanceState> {
        self.drain();
        self.history
            .iter()
            .filter(|e| e.instance_id == id)
            .map(|e| e.state.clone())
            .collect()
    }
}

pub fn spec(id: &str, vs: &str, source: Source) -> InstanceSpec {
    InstanceSpec {
        instance_id: id.to_string(),
        title_region: "tr_test".to_string(),
        vs_name: vs.to_string(),
        version: 1,
        source,
        args: vec![],
        env: BTreeMap::new(),
        listen_port: 8080,
        cpu_millicores: 500,
        memory_mb: 256,
    }
}

/// `GET path` on 127.0.0.1:port; returns the body. Retries connection errors for
/// a short while (a port published by Docker may take a moment).
pub async fn http_get(port: u16, path: &str) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match try_get(port, path).await {
            Ok(body) => return body,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("GET 127.0.0.1:{port}{path} failed: {e}"),
        }
    }
}

pub async fn try_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "read timed out"))??;
    let text = String::from_utf8_lossy(&buf).into_owned();
    match text.split_once("\r\n\r\n") {
        Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200 ") => {
            Ok(body.to_string())
        }
        _ => Err(std::io::Error::other(format!("bad response: {text:?}"))),
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
