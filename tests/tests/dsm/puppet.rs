//! A "puppet" DS: the agent launches a real process (a shell that records
//! its environment and sleeps), and the test speaks the local SDK API for
//! it with the process's own endpoint and token — so a test can make the
//! calls a sample DS would never make (activate twice, act on another
//! process's session) and see every callback the agent delivers.

use super::*;
use respawn_config::{Config, DEV_TITLE_REGION};
use serde_json::Value;
use std::collections::HashMap;
use tokio::sync::mpsc;

/// Records the SDK variables, then waits to be killed.
const SCRIPT: &str = "env | grep '^RESPAWN_' > \"$RESPAWN_LOG_DIR/puppet.env\"; exec sleep 3600";

/// One launched process, driven by the test.
pub struct Puppet {
    pub id: ProcessId,
    endpoint: String,
    token: String,
    http: reqwest::Client,
    events: mpsc::UnboundedReceiver<Value>,
}

impl Puppet {
    /// POSTs to the local SDK API as this process: status and JSON body.
    pub async fn call(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let res = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await?;
        let status = res.status().as_u16();
        let v = res.json().await.unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// The next callback of `kind` (others are skipped), waiting up to `T`.
    pub async fn next_event(&mut self, kind: &str) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let e = tokio::time::timeout_at(deadline, self.events.recv())
                .await
                .map_err(|_| anyhow::anyhow!("no {kind} event for {}", self.id))?
                .ok_or_else(|| anyhow::anyhow!("event stream of {} ended", self.id))?;
            if e["type"] == kind {
                return Ok(e);
            }
        }
    }

    /// A callback of `kind` already received, if any (does not wait).
    pub fn try_event(&mut self, kind: &str) -> Option<Value> {
        while let Ok(e) = self.events.try_recv() {
            if e["type"] == kind {
                return Some(e);
            }
        }
        None
    }
}

/// A node and an agent whose fleet runs `n` puppet processes, each READY
/// (ProcessReady called, events streamed, health checks answered).
pub async fn puppets(n: u32) -> anyhow::Result<(Cluster, Vec<Puppet>)> {
    init_logs();
    let dir = tempfile::tempdir()?;
    let mut cfg = Config::dev("/bin/sh", vec!["-c".into(), SCRIPT.into()]);
    cfg.data_dir = dir.path().to_path_buf();
    cfg.server.http_addr = "127.0.0.1:0".parse()?;
    cfg.server.quic_addr = "127.0.0.1:0".parse()?;
    cfg.agent.kill_grace_ms = 1_000;
    cfg.fleets[0].definition.processes_per_host = n;
    cfg.fleets[0].definition.health_check_interval_secs = 1;
    cfg.validate()?;
    let placeholder = TitleRegion {
        id: TitleRegionId::new_unchecked(DEV_TITLE_REGION),
        title_id: TitleId::new_unchecked("x"),
        name: String::new(),
        title_name: String::new(),
        secret_id: SecretId::new_unchecked("x"),
        secret_key: String::new(),
    };
    let mut c = Cluster {
        backend: Backend::new("http://unset", &placeholder),
        dir,
        cfg,
        node: None,
        agent: None,
    };
    c.boot().await?;
    let logs = c.dir.path().join("agent/logs");
    let envs = wait_for("puppets launched", T, || async {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&logs).ok()? {
            let text = std::fs::read_to_string(entry.ok()?.path().join("puppet.env")).ok()?;
            let vars: HashMap<String, String> = text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if vars.contains_key("RESPAWN_PROCESS_TOKEN") {
                found.push(vars);
            }
        }
        (found.len() >= n as usize).then_some(found)
    })
    .await?;
    let mut out = Vec::new();
    for (i, vars) in envs.into_iter().enumerate() {
        let http = reqwest::Client::new();
        let endpoint = vars["RESPAWN_SDK_ENDPOINT"].clone();
        let token = vars["RESPAWN_PROCESS_TOKEN"].clone();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(stream_events(
            http.clone(),
            endpoint.clone(),
            token.clone(),
            tx,
        ));
        let p = Puppet {
            id: ProcessId::new_unchecked(vars["RESPAWN_PROCESS_ID"].clone()),
            endpoint,
            token,
            http,
            events: rx,
        };
        let (status, body) = p
            .call("/v1/process_ready", json!({"port": 41000 + i}))
            .await?;
        anyhow::ensure!(status == 200, "process_ready: {status} {body}");
        out.push(p);
    }
    c.wait_ready(n as usize).await?;
    Ok((c, out))
}

/// Reads a process's callback stream: answers health checks healthy and
/// hands every other callback to the test.
async fn stream_events(
    http: reqwest::Client,
    endpoint: String,
    token: String,
    tx: mpsc::UnboundedSender<Value>,
) {
    let Ok(mut res) = http
        .get(format!("{endpoint}/v1/events"))
        .bearer_auth(&token)
        .send()
        .await
    else {
        return;
    };
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = res.chunk().await {
        buf.extend_from_slice(&chunk);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let Ok(event) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if event["type"] == "health_check" {
                let _ = http
                    .post(format!("{endpoint}/v1/health"))
                    .bearer_auth(&token)
                    .json(&json!({"seq": event["seq"], "healthy": true}))
                    .send()
                    .await;
            } else if tx.send(event).is_err() {
                return;
            }
        }
    }
}

/// Which puppet got `start_battle_session` for placement `pl`, and the event.
pub async fn assigned(
    c: &Cluster,
    puppets: &mut [Puppet],
    pl: &str,
) -> anyhow::Result<(usize, Value)> {
    let owner = wait_for("session assigned", T, || async { c.process_of(pl) }).await?;
    let i = puppets
        .iter()
        .position(|p| p.id == owner)
        .ok_or_else(|| anyhow::anyhow!("{owner} is no puppet"))?;
    let e = puppets[i].next_event("start_battle_session").await?;
    Ok((i, e))
}
