//! [`VsRuntime`]: the handle the agent uses to start, stop, sample and read the
//! logs of VS instances; each instance runs under its own supervisor task.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cgroup;
use crate::docker;
use crate::error::RuntimeError;
use crate::host::{Handle, Inner, Live};
use crate::leftovers::Ledger;
use crate::logs;
use crate::retention::Retention;
use crate::spec::{
    InstanceEvent, InstanceSpec, InstanceState, LogLine, LogQuery, RuntimeConfig, Source, Usage,
};
use crate::supervisor;

/// Runs VS instances on this host. Cheap to clone.
#[derive(Clone)]
pub struct VsRuntime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for VsRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VsRuntime")
            .field("cfg", &self.inner.cfg)
            .finish_non_exhaustive()
    }
}

/// A name is usable as a path component and in messages: `[A-Za-z0-9_.-]`, not
/// starting with a dot.
fn valid_component(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && !s.starts_with('.')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn valid_instance_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl VsRuntime {
    /// Creates the runtime and the receiver of every instance's state changes.
    ///
    /// Detects the cgroup mechanism now. When called inside a Tokio runtime it also
    /// starts connecting to the Docker engine in the background, removing containers
    /// left by a previous run of this agent (same `agent_id`); otherwise that happens
    /// on the first Docker use.
    pub fn new(mut cfg: RuntimeConfig) -> (VsRuntime, mpsc::UnboundedReceiver<InstanceEvent>) {
        if cfg.data_dir.is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                cfg.data_dir = cwd.join(&cfg.data_dir);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        // Process instances a crashed predecessor left (where no cgroup
        // caught them): stopped before anything new runs.
        let ledger_dir = cfg.data_dir.join("children");
        let ledger = match Ledger::open(&ledger_dir) {
            Ok(l) => {
                l.stop_leftovers();
                l
            }
            Err(e) => {
                tracing::warn!(dir = %ledger_dir.display(), "cannot open the child ledger: {e}");
                Ledger::disabled()
            }
        };
        let cgroups = cgroup::Mechanism::detect(Path::new(cgroup::CGROUP_ROOT));
        match &cgroups {
            cgroup::Mechanism::None { why } => {
                tracing::warn!("no cgroup mechanism usable, process limits are not enforced: {why}")
            }
            m => tracing::info!(mechanism = m.name(), "process limits via cgroups"),
        }
        let socket = cfg
            .docker_socket
            .clone()
            .unwrap_or_else(|| PathBuf::from(docker::DEFAULT_SOCKET));
        let inner = Arc::new(Inner {
            docker: docker::DockerHost::new(socket, cfg.agent_id.clone()),
            cgroups,
            ledger: Arc::new(ledger),
            events: tx,
            instances: Mutex::new(HashMap::new()),
            ports: Mutex::new(Default::default()),
            cfg,
        });
        inner
            .cgroups
            .clean_stale(&cgroup::group_prefix(&inner.cfg.agent_id));
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let bg = inner.clone();
            handle.spawn(async move { bg.docker.init_if_present().await });
        }
        (VsRuntime { inner }, rx)
    }

    /// Starts an instance. Returns once the spec is accepted (after emitting
    /// `Deploying`); launching and everything after it arrive as events.
    pub async fn start(&self, spec: InstanceSpec) -> Result<(), RuntimeError> {
        if !valid_instance_id(&spec.instance_id) {
            return Err(RuntimeError::InvalidSpec(format!(
                "instance id `{}` must be 1-128 characters of [A-Za-z0-9_-]",
                spec.instance_id
            )));
        }
        for (what, value) in [
            ("title region", &spec.title_region),
            ("VS name", &spec.vs_name),
        ] {
            if !valid_component(value) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "{what} `{value}` must be 1-128 characters of [A-Za-z0-9_.-], not starting with a dot"
                )));
            }
        }
        match &spec.source {
            Source::Process { command } if command.is_empty() => {
                return Err(RuntimeError::InvalidSpec("the command is empty".into()))
            }
            Source::DockerImage { image } if image.is_empty() => {
                return Err(RuntimeError::InvalidSpec("the image name is empty".into()))
            }
            Source::DockerImage { .. }
            | Source::DockerArchive { .. }
            | Source::DockerBuild { .. }
                if spec.listen_port == 0 =>
            {
                return Err(RuntimeError::InvalidSpec(
                    "a container's listen port must not be 0".into(),
                ))
            }
            _ => {}
        }
        if let Some((k, _)) = spec
            .env
            .iter()
            .find(|(k, v)| k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0'))
        {
            return Err(RuntimeError::InvalidSpec(format!(
                "environment variable `{k}` has an invalid name or value"
            )));
        }

        let cancel = CancellationToken::new();
        let (done_tx, done_rx) = watch::channel(false);
        let live = Arc::new(Mutex::new(Live::default()));
        {
            let mut map = self
                .inner
                .instances
                .lock()
                .map_err(|_| RuntimeError::Poisoned)?;
            if map.contains_key(&spec.instance_id) {
                return Err(RuntimeError::AlreadyExists(spec.instance_id.clone()));
            }
            map.insert(
                spec.instance_id.clone(),
                Handle {
                    cancel: cancel.clone(),
                    done: done_rx,
                    live: live.clone(),
                },
            );
        }
        self.inner.emit(&spec.instance_id, InstanceState::Deploying);
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let id = spec.instance_id.clone();
            supervisor::supervise(inner.clone(), spec, cancel, live).await;
            if let Ok(mut map) = inner.instances.lock() {
                map.remove(&id);
            }
            inner.emit(&id, InstanceState::Stopped);
            let _ = done_tx.send(true);
        });
        Ok(())
    }

    /// Stops an instance: SIGTERM then SIGKILL after 5 s for processes, stop and
    /// remove for containers. Emits `Stopped`; the volume directory persists.
    pub async fn stop(&self, instance_id: &str) -> Result<(), RuntimeError> {
        let (cancel, mut done) = {
            let map = self
                .inner
                .instances
                .lock()
                .map_err(|_| RuntimeError::Poisoned)?;
            let h = map
                .get(instance_id)
                .ok_or_else(|| RuntimeError::NotFound(instance_id.to_string()))?;
            (h.cancel.clone(), h.done.clone())
        };
        cancel.cancel();
        let _ = done.wait_for(|d| *d).await;
        Ok(())
    }

    /// CPU and memory use of a running instance; `None` if unknown or not running.
    pub async fn usage(&self, instance_id: &str) -> Option<Usage> {
        let live = {
            let map = self.inner.instances.lock().ok()?;
            map.get(instance_id)?.live.clone()
        };
        supervisor::usage(&self.inner, &live).await
    }

    /// Reads stored log lines of one VS (see [`LogQuery`]), in time order.
    pub fn query_logs(&self, q: &LogQuery) -> Result<Vec<LogLine>, RuntimeError> {
        for (what, value) in [("title region", &q.title_region), ("VS name", &q.vs_name)] {
            if !valid_component(value) {
                return Err(RuntimeError::InvalidSpec(format!(
                    "invalid {what} `{value}`"
                )));
            }
        }
        logs::query(&self.inner.cfg.data_dir, q)
    }

    /// Deletes the logs of ended instances by `retention`
    /// ([`crate::retention`]); returns the bytes freed. Blocking file work:
    /// call it from a blocking thread.
    pub fn sweep_logs(&self, retention: &Retention) -> u64 {
        let live: std::collections::HashSet<String> = self.instance_ids().into_iter().collect();
        logs::sweep(
            &self.inner.cfg.data_dir,
            &live,
            retention,
            std::time::SystemTime::now(),
        )
    }

    /// The persistent directory of one VS: `<data_dir>/volumes/<title_region>/<vs_name>`.
    /// It survives stopping and deleting instances. (Not created here.)
    pub fn volume_dir(&self, title_region: &str, vs_name: &str) -> PathBuf {
        self.inner.volume_dir(title_region, vs_name)
    }

    /// The ids of the instances currently managed.
    pub fn instance_ids(&self) -> Vec<String> {
        self.inner
            .instances
            .lock()
            .map(|m| {
                let mut v: Vec<String> = m.keys().cloned().collect();
                v.sort();
                v
            })
            .unwrap_or_default()
    }

    /// Stops every instance, concurrently.
    pub async fn shutdown(&self) {
        let ids = self.instance_ids();
        futures::future::join_all(ids.iter().map(|id| self.stop(id))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(valid_instance_id("abc-DEF_1"));
        assert!(!valid_instance_id("a/b"));
        assert!(!valid_instance_id(""));
        assert!(!valid_instance_id("a.b"));
        assert!(valid_component("euff_5tcsa_812179_dev"));
        assert!(valid_component("vs-smoke"));
        assert!(!valid_component(".."));
        assert!(!valid_component("a/b"));
        assert!(!valid_component(""));
    }
}
