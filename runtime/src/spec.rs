//! What the runtime is asked to run and what it reports: instance specs,
//! states, limits, usage, log queries, and the runtime's configuration.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a container sees the VS's persistent volume directory.
pub const CONTAINER_VOLUME_PATH: &str = "/data";

/// The environment variable that carries the port a VS must listen on.
pub const LISTEN_PORT_ENV: &str = "PGOS_VS_Listen_Port";

/// How long an instance may take to listen after its launch, by default.
pub const DEFAULT_DEPLOY_TIMEOUT: Duration = Duration::from_secs(30);

fn default_deploy_timeout() -> Duration {
    DEFAULT_DEPLOY_TIMEOUT
}

/// Configuration of a `VsRuntime`.
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
    /// Size cap and rotated files of each instance's log.
    #[serde(default)]
    pub log_rotation: crate::rotate::Rotation,
}

impl RuntimeConfig {
    /// A configuration with the default Docker socket and deploy timeout.
    pub fn new(data_dir: impl Into<PathBuf>, agent_id: impl Into<String>) -> Self {
        RuntimeConfig {
            data_dir: data_dir.into(),
            agent_id: agent_id.into(),
            docker_socket: None,
            deploy_timeout: DEFAULT_DEPLOY_TIMEOUT,
            log_rotation: crate::rotate::Rotation::default(),
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
    /// Stopped by `VsRuntime::stop` or `VsRuntime::shutdown`; final.
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
    /// Average CPU use since the previous `VsRuntime::usage` call for this instance
    /// (over ~100 ms for the first call), in thousandths of a core.
    pub cpu_millicores: u32,
    pub memory_bytes: u64,
}

/// Which log lines `VsRuntime::query_logs` returns.
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

#[cfg(test)]
mod tests {
    use super::*;

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
