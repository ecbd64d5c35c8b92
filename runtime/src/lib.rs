//! Runs virtual-server (VS) instances on one host.
//!
//! A VS is a game developer's own web server, written in any language, that the
//! platform runs and proxies HTTP to. This crate starts, watches, limits, logs and
//! stops VS instances for the host agent, through two drivers:
//!
//! - the **process driver** ([`Source::Process`]) spawns any executable directly on
//!   the host;
//! - the **Docker driver** ([`Source::DockerImage`], [`Source::DockerArchive`],
//!   [`Source::DockerBuild`]) runs a container in the local Docker engine, talking to
//!   it over its unix socket. There is no registry: images are never pulled.
//!
//! # Ports
//!
//! A VS must listen for HTTP on `0.0.0.0` (or `::`) at the port given in the
//! environment variable `PGOS_VS_Listen_Port`; the runtime always sets it.
//!
//! - **Processes share the host network**, so several instances of one VS on one
//!   host cannot all bind the configured [`InstanceSpec::listen_port`]. The process
//!   driver therefore allocates a free host port per instance and passes *that* port
//!   as `PGOS_VS_Listen_Port` (the configured `listen_port` is only used in messages).
//!   The port is kept across relaunches of the instance while it stays free.
//! - **Containers have their own network**, so the Docker driver passes the
//!   configured `listen_port` unchanged and publishes it on an ephemeral host port
//!   bound to `0.0.0.0`.
//!
//! Either way [`InstanceState::Running::port`] is the **host** port to proxy to.
//!
//! # States
//!
//! Every instance starts [`InstanceState::Deploying`]. The runtime finds the TCP
//! sockets the instance's processes listen on (from `/proc/<pid>/net/tcp{,6}` and the
//! `socket:[inode]` links in `/proc/<pid>/fd` of the instance's root process and its
//! descendants; for containers the root is the container's init process) and moves
//! the instance to:
//!
//! - `Running` once something listens on all interfaces at the expected port and a
//!   TCP connection to it succeeds;
//! - `Abnormal(ListeningOnLoopback)` when it listens on 127.0.0.1 / ::1 at that port;
//! - `Abnormal(PortMismatch)` when it listens only on other ports;
//! - `Abnormal(NotListening)` when nothing listens [`RuntimeConfig::deploy_timeout`]
//!   (30 s by default) after the launch.
//!
//! An instance that is abnormal but alive keeps being watched and becomes `Running`
//! when it fixes itself. When an instance exits it becomes `Abnormal(Crashed)` or
//! `Abnormal(OutOfMemory)` and is relaunched with exponential backoff (0.5 s doubling
//! up to 30 s, reset after 60 s of uptime), going through `Deploying` again. A
//! program that cannot be started is `Abnormal(LaunchFailed)` and is retried on the
//! same schedule. An image that cannot be used (absent, bad archive, failed build) is
//! `Abnormal(ImageUnusable)` and is *not* retried: start the instance again once the
//! image is fixed. [`Runtime::stop`] ends an instance for good (`Stopped`).
//!
//! # Limits
//!
//! Processes are placed in a cgroup right after they are spawned: cgroup v2 when
//! `/sys/fs/cgroup/cgroup.controllers` exists (a child group under
//! `/sys/fs/cgroup/respawn`, `memory.max` and `cpu.max`), else cgroup v1 when the
//! `memory` and `cpu` hierarchies are writable (`memory.limit_in_bytes`,
//! `cpu.cfs_quota_us`), else no limits at all ([`Limits::enforced`] is false). A
//! `cpu_millicores` or `memory_mb` of 0 means "no limit" for that resource.
//! Containers get Docker's own memory and CPU limits.
//!
//! # Environment
//!
//! A process gets the agent's `PATH`, `HOME`, `LANG`, `LC_ALL` and `TZ` (when set),
//! then [`InstanceSpec::env`], then `PGOS_VS_Listen_Port`; nothing else from the
//! agent's environment leaks in. Its working directory is the VS's persistent volume
//! directory ([`Runtime::volume_dir`]). A container gets `InstanceSpec::env` plus
//! `PGOS_VS_Listen_Port`, and the volume directory mounted at [`CONTAINER_VOLUME_PATH`].
//!
//! # Logs
//!
//! Standard output and error are stored line by line as JSON lines under
//! `<data_dir>/logs/<title_region>/<vs_name>/v<version>/<instance_id>.log` and read
//! back with [`Runtime::query_logs`].
//!
//! # Lifecycle
//!
//! Create the [`Runtime`] inside a Tokio runtime. Dropping it does not stop the
//! instances: call [`Runtime::shutdown`]. A new runtime with the same
//! [`RuntimeConfig::agent_id`] cleans up after a previous one that died: it kills
//! the processes left in that agent's cgroups and removes that agent's containers
//! (label `respawn.agent=<agent_id>`).

mod cgroup;
mod docker;
mod error;
mod logs;
mod process;
mod procfs;
mod supervisor;
mod tar;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use error::RuntimeError;

/// Where a container sees the VS's persistent volume directory.
pub const CONTAINER_VOLUME_PATH: &str = "/data";

/// The environment variable that carries the port a VS must listen on.
pub const LISTEN_PORT_ENV: &str = "PGOS_VS_Listen_Port";

/// How long an instance may take to listen after its launch, by default.
pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);

fn default_deploy_timeout() -> Duration {
    DEFAULT_DEPLOY_TIMEOUT
}

/// Configuration of a [`Runtime`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    /// Volumes (`volumes/`), logs (`logs/`) and scratch files (`tmp/`) live under it.
    pub data_dir: PathBuf,
    /// Labels this agent's containers and names its cgroups; stale containers with
    /// this label are removed when the runtime first reaches the Docker engine.
    pub agent_id: String,
    /// The Docker engine's unix socket; `None` means `/var/run/docker.sock`.
    pub docker_socket: Option<PathBuf>,
    /// How long after a launch an instance may go without listening before it is
    /// reported `Abnormal(NotListening)` (it stays watched after that).
    #[serde(default = "default_deploy_timeout")]
    pub deploy_timeout: Duration,
}

impl RuntimeConfig {
    /// A configuration with the default Docker socket and deploy timeout.
    pub fn new(data_dir: impl Into<PathBuf>, agent_id: impl Into<String>) -> Self {
        RuntimeConfig {
            data_dir: data_dir.into(),
            agent_id: agent_id.into(),
            docker_socket: None,
            deploy_timeout: DEFAULT_DEPLOY_TIMEOUT,
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// Any executable on the host; its arguments are [`InstanceSpec::args`]. A
    /// relative path containing `/` is taken relative to the agent's working
    /// directory; a bare name is looked up in `PATH`.
    Process { command: String },
    /// An image already present in the local Docker engine (nothing is pulled).
    DockerImage { image: String },
    /// A `docker save` tar archive to load into the engine.
    DockerArchive { path: PathBuf },
    /// A folder with a `Dockerfile` at its root, built by the engine.
    DockerBuild { context_dir: PathBuf },
}

/// One instance to run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceSpec {
    /// Unique on this host; only `[A-Za-z0-9_-]`.
    pub instance_id: String,
    pub title_region: String,
    pub vs_name: String,
    pub version: u64,
    pub source: Source,
    /// Process arguments; for containers they replace the image's `CMD` when not empty.
    pub args: Vec<String>,
    /// User and system variables; the runtime adds `PGOS_VS_Listen_Port` itself.
    pub env: BTreeMap<String, String>,
    /// The port the program must listen on inside a container (see the crate docs
    /// for processes).
    pub listen_port: u16,
    /// CPU limit in thousandths of a core; 0 = unlimited.
    pub cpu_millicores: u32,
    /// Memory limit in MiB; 0 = unlimited.
    pub memory_mb: u64,
}

/// The state of an instance, as reported in [`InstanceEvent`]s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum InstanceState {
    /// Preparing the image, launching, or waiting for the program to listen.
    Deploying,
    /// Serving: proxy to `port` on the host's address.
    Running { port: u16, limits: Limits },
    /// Something is wrong; `detail` is a sentence the user can act on.
    Abnormal {
        reason: AbnormalReason,
        detail: String,
    },
    /// Stopped by [`Runtime::stop`] or [`Runtime::shutdown`]; final.
    Stopped,
}

/// Why an instance is abnormal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbnormalReason {
    /// It listens, but not on the expected port.
    PortMismatch,
    /// It listens on the expected port, but only on a loopback address.
    ListeningOnLoopback,
    /// It exited (and will be relaunched).
    Crashed,
    /// It was killed for exceeding its memory limit (and will be relaunched).
    OutOfMemory,
    /// The Docker image is absent, the archive is bad or the build failed.
    ImageUnusable,
    /// Nothing listens, [`RuntimeConfig::deploy_timeout`] after the launch.
    NotListening,
    /// The program or container could not be started (retried with backoff).
    LaunchFailed,
}

/// How an instance's resource limits are enforced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `"cgroup2"`, `"cgroup1"`, `"docker"` or `"none"`.
    pub mechanism: String,
    /// Whether every requested limit is in force.
    pub enforced: bool,
}

/// A state change of one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEvent {
    pub instance_id: String,
    pub state: InstanceState,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Resource use of an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Average CPU use since the previous [`Runtime::usage`] call for this instance
    /// (over ~100 ms for the first call), in thousandths of a core.
    pub cpu_millicores: u32,
    pub memory_bytes: u64,
}

/// Which log lines [`Runtime::query_logs`] returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    pub title_region: String,
    pub vs_name: String,
    /// One version, or all when `None`.
    pub version: Option<u64>,
    /// Inclusive lower bound on `ts_ms`.
    pub since_ms: Option<u64>,
    /// Exclusive upper bound on `ts_ms`.
    pub until_ms: Option<u64>,
    /// Keep lines containing this substring (case-sensitive).
    pub contains: Option<String>,
    /// Return the last `tail` matching lines instead of the first ones.
    pub tail: Option<usize>,
    /// At most this many lines (0 = no cap).
    pub limit: usize,
}

/// One stored log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLine {
    pub ts_ms: u64,
    pub version: u64,
    pub instance_id: String,
    /// `"stdout"` or `"stderr"`.
    pub stream: String,
    pub line: String,
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What `usage()` samples for a live instance.
#[derive(Debug, Clone, Default)]
pub(crate) enum UsageTarget {
    /// Not launched at the moment.
    #[default]
    Idle,
    /// A process tree, maybe in a cgroup.
    Process {
        root: i32,
        group: Option<Arc<cgroup::Group>>,
    },
    /// A container, by id.
    Container { id: String },
}

/// The part of an instance that `usage()` reads while the supervisor runs it.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub target: UsageTarget,
    /// The previous CPU sample: cumulative CPU nanoseconds and when it was taken.
    pub prev_cpu: Option<(u64, Instant)>,
}

struct Handle {
    cancel: CancellationToken,
    done: watch::Receiver<bool>,
    live: Arc<Mutex<Live>>,
}

pub(crate) struct Inner {
    pub cfg: RuntimeConfig,
    pub events: mpsc::UnboundedSender<InstanceEvent>,
    instances: Mutex<HashMap<String, Handle>>,
    pub docker: docker::DockerHost,
    pub cgroups: cgroup::Mechanism,
    /// Host ports handed to process instances and not yet released.
    pub ports: Mutex<std::collections::HashSet<u16>>,
}

impl Inner {
    pub fn emit(&self, instance_id: &str, state: InstanceState) {
        let _ = self.events.send(InstanceEvent {
            instance_id: instance_id.to_string(),
            state,
            at_ms: now_ms(),
        });
    }

    pub fn volume_dir(&self, title_region: &str, vs_name: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join("volumes")
            .join(title_region)
            .join(vs_name)
    }
}

/// Runs VS instances on this host. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
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

impl Runtime {
    /// Creates the runtime and the receiver of every instance's state changes.
    ///
    /// Detects the cgroup mechanism now. When called inside a Tokio runtime it also
    /// starts connecting to the Docker engine in the background, removing containers
    /// left by a previous run of this agent (same `agent_id`); otherwise that happens
    /// on the first Docker use.
    pub fn new(mut cfg: RuntimeConfig) -> (Runtime, mpsc::UnboundedReceiver<InstanceEvent>) {
        if cfg.data_dir.is_relative() {
            if let Ok(cwd) = std::env::current_dir() {
                cfg.data_dir = cwd.join(&cfg.data_dir);
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
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
        (Runtime { inner }, rx)
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

    #[test]
    fn states_serialize_as_tagged_json() {
        let s = InstanceState::Running {
            port: 8080,
            limits: Limits {
                mechanism: "cgroup1".into(),
                enforced: true,
            },
        };
        let j = serde_json::to_value(&s).unwrap();
        assert_eq!(j["state"], "running");
        assert_eq!(j["port"], 8080);
        let back: InstanceState = serde_json::from_value(j).unwrap();
        assert_eq!(back, s);
        let src: Source = serde_json::from_str(r#"{"kind":"docker_image","image":"x:1"}"#).unwrap();
        assert_eq!(
            src,
            Source::DockerImage {
                image: "x:1".into()
            }
        );
        let cfg: RuntimeConfig =
            serde_json::from_str(r#"{"data_dir":"/d","agent_id":"a","docker_socket":null}"#)
                .unwrap();
        assert_eq!(cfg.deploy_timeout, DEFAULT_DEPLOY_TIMEOUT);
    }
}
