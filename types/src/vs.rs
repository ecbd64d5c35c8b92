//! Virtual Servers: records of the replicated state and what the API accepts.
//!
//! A virtual server (VS) is a game developer's own web server. Its definition
//! ([`VsSpec`]) is versioned: every update makes a new version, and the
//! cluster replaces instances of older versions with instances of the new
//! one. Instances run on agents; the edge proxies invocations to them.

use crate::ids::*;
use crate::UnixMillis;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Longest virtual server name.
pub const MAX_VS_NAME_LEN: usize = 63;

/// A virtual server's name: letters, digits and `-` only (seed §2).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VsName(String);

impl VsName {
    pub const KIND: &'static str = "virtual server name";

    pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(IdError::Empty { kind: Self::KIND });
        }
        if s.len() > MAX_VS_NAME_LEN {
            return Err(IdError::TooLong { kind: Self::KIND });
        }
        if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(IdError::BadCharVs);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for VsName {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl From<VsName> for String {
    fn from(n: VsName) -> String {
        n.0
    }
}

impl fmt::Display for VsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where a virtual server's program comes from and which driver runs it.
/// In JSON: `{"process": {"command": "python3"}}`, `{"docker_image": {"image": "x:v1"}}`, ...
/// (externally tagged, so the same value also crosses the bincode links).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum VsSource {
    /// Any executable on the agent's host (the `process` driver).
    Process { command: String },
    /// An image already present in the agent's Docker engine.
    DockerImage { image: String },
    /// A `docker save` archive on the agent's host, loaded into its engine.
    DockerArchive { path: String },
    /// A folder on the agent's host with a Dockerfile at its root, built by its engine.
    DockerBuild { context_dir: String },
}

impl VsSource {
    pub fn driver(&self) -> &'static str {
        match self {
            VsSource::Process { .. } => "process",
            _ => "docker",
        }
    }
}

fn default_target_concurrency() -> u32 {
    10
}
fn default_scale_down_delay_secs() -> u32 {
    60
}
fn default_cpu() -> u32 {
    500
}
fn default_memory() -> u64 {
    256
}
fn default_max_instances() -> u32 {
    1
}

/// Everything a user sets on a virtual server (seed §2). Each change makes a
/// new version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VsSpec {
    pub source: VsSource,
    /// Launch args.
    #[serde(default)]
    pub args: Vec<String>,
    /// User environment variables (names starting with `PGOS_` are reserved).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Port the program listens on, on 0.0.0.0 (inside its container for Docker).
    pub listen_port: u16,
    /// CPU per instance, in millicores (1000 = one core).
    #[serde(default = "default_cpu")]
    pub cpu_millicores: u32,
    /// Memory per instance, in MiB.
    #[serde(default = "default_memory")]
    pub memory_mb: u64,
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Refuse requests from game clients (403 at the edge).
    #[serde(default)]
    pub block_client_requests: bool,
    /// Keep an access log in nginx's default format.
    #[serde(default)]
    pub access_log: bool,
    /// URLs (paths) that get their own metrics series.
    #[serde(default)]
    pub metric_urls: Vec<String>,
    /// Autoscaling target: in-flight requests per instance.
    #[serde(default = "default_target_concurrency")]
    pub target_concurrency: u32,
    /// Remove surplus instances after this long below target.
    #[serde(default = "default_scale_down_delay_secs")]
    pub scale_down_delay_secs: u32,
    /// Names of the title region's storages this virtual server uses: each
    /// instance gets `PGOS_VS_Storage_<Name>`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub storages: Vec<crate::StorageName>,
}

/// Bounds checked when a spec is committed.
pub const VS_MAX_INSTANCES: u32 = 100;
pub const VS_CPU_RANGE: (u32, u32) = (10, 64_000);
pub const VS_MEMORY_RANGE: (u64, u64) = (16, 262_144);

impl VsSpec {
    /// Checks a spec from outside; the message names what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        let nonempty = |what: &str, v: &str| {
            if v.trim().is_empty() {
                Err(format!("source.{what} must not be empty"))
            } else {
                Ok(())
            }
        };
        match &self.source {
            VsSource::Process { command } => nonempty("command", command)?,
            VsSource::DockerImage { image } => nonempty("image", image)?,
            VsSource::DockerArchive { path } => nonempty("path", path)?,
            VsSource::DockerBuild { context_dir } => nonempty("context_dir", context_dir)?,
        }
        if self.listen_port == 0 {
            return Err("listen_port must be between 1 and 65535".into());
        }
        if !(VS_CPU_RANGE.0..=VS_CPU_RANGE.1).contains(&self.cpu_millicores) {
            return Err(format!(
                "cpu_millicores must be between {} and {}",
                VS_CPU_RANGE.0, VS_CPU_RANGE.1
            ));
        }
        if !(VS_MEMORY_RANGE.0..=VS_MEMORY_RANGE.1).contains(&self.memory_mb) {
            return Err(format!(
                "memory_mb must be between {} and {}",
                VS_MEMORY_RANGE.0, VS_MEMORY_RANGE.1
            ));
        }
        if !(1..=VS_MAX_INSTANCES).contains(&self.max_instances) {
            return Err(format!(
                "max_instances must be between 1 and {VS_MAX_INSTANCES}"
            ));
        }
        if self.target_concurrency == 0 {
            return Err("target_concurrency must be at least 1".into());
        }
        for name in self.env.keys() {
            let ok = !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !name.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(format!(
                    "environment variable name '{name}' may contain only letters, digits and '_', and must not start with a digit"
                ));
            }
            if name.to_ascii_uppercase().starts_with("PGOS_") {
                return Err(format!(
                    "environment variable '{name}': names starting with PGOS_ are set by the system"
                ));
            }
        }
        if self.storages.len() > crate::storage::MAX_STORAGES_PER_REGION {
            return Err(format!(
                "storages names more than {} storages",
                crate::storage::MAX_STORAGES_PER_REGION
            ));
        }
        for u in &self.metric_urls {
            if !u.starts_with('/') {
                return Err(format!("metric url '{u}' must start with '/'"));
            }
        }
        Ok(())
    }
}

/// Whether the user wants the VS running (start/stop, seed §2).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VsDesired {
    Running,
    Stopped,
}

/// One version of a VS definition, kept for the logs and history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsVersion {
    pub version: u64,
    pub spec: VsSpec,
    pub created_at: UnixMillis,
}

/// Most versions kept per virtual server (older ones are forgotten).
pub const VS_VERSIONS_KEPT: usize = 20;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualServer {
    pub title_region_id: TitleRegionId,
    pub name: VsName,
    /// Current version (the last update).
    pub version: u64,
    pub spec: VsSpec,
    pub desired: VsDesired,
    /// Instances the autoscaler wants (1..=max_instances).
    pub scale: u32,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
    /// Recent versions, oldest first, the current one last.
    pub versions: Vec<VsVersion>,
}

/// Instance states as in seed §2: deploying → running, or abnormal with a reason.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum VsInstanceStatus {
    Deploying,
    Running,
    Abnormal,
    /// Asked to stop; removed once the agent reports it gone.
    Stopping,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsInstance {
    pub id: VsInstanceId,
    pub title_region_id: TitleRegionId,
    pub vs: VsName,
    pub version: u64,
    pub host_id: HostId,
    pub status: VsInstanceStatus,
    /// Why it is abnormal (a reason code) and what to do about it.
    pub reason: Option<String>,
    pub detail: Option<String>,
    /// Address the edge proxies to: the host's address and the instance's host port.
    pub ip: String,
    pub port: Option<u16>,
    /// How the host enforces the CPU and memory limits ("cgroup2", "cgroup1", "docker", "none").
    pub limits: Option<String>,
    pub restarts: u32,
    pub created_at: UnixMillis,
    pub updated_at: UnixMillis,
}

/// What an agent reports about an instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VsInstanceReport {
    Deploying,
    Running { port: u16, limits: String },
    Abnormal { reason: String, detail: String },
    Stopped,
}

/// What the agent needs to run one instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsInstanceSpec {
    pub instance_id: VsInstanceId,
    pub title_region_id: TitleRegionId,
    pub vs: VsName,
    pub version: u64,
    pub spec: VsSpec,
    /// The system variables of seed §3.2 (the agent adds the intranet endpoint
    /// and the driver the listen port).
    pub system_env: BTreeMap<String, String>,
}

/// How a scheduled task fires.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TaskSchedule {
    /// Every `secs` seconds.
    Interval { secs: u64 },
    /// A five-field cron expression, UTC.
    Cron { expr: String },
}

/// A scheduled task that POSTs `/pgos_task` to a VS (seed §4.3, §5.3.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsTask {
    pub title_region_id: TitleRegionId,
    pub name: VsName,
    pub vs: VsName,
    pub schedule: TaskSchedule,
    /// JSON object passed as `args`.
    pub args: String,
    pub enabled: bool,
    /// Last time it fired (delivered or not).
    pub last_fired_at: Option<UnixMillis>,
    pub created_at: UnixMillis,
}

/// Binds PGOS events of a title region to a VS's `/pgos_event` (seed §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHandler {
    pub title_region_id: TitleRegionId,
    pub name: VsName,
    pub vs: VsName,
    /// Event names delivered; empty means every event.
    pub events: Vec<String>,
    /// JSON object passed as `args`.
    pub args: String,
}

/// The battle-session events Respawn emits to `/pgos_event`.
pub const VS_EVENT_NAMES: &[&str] = &[
    "event_battle_session_placement_fulfilled",
    "event_battle_session_placement_timedout",
    "event_battle_session_placement_failed",
    "event_battle_session_started",
    "event_battle_session_ended",
    "event_player_joined_battle_session",
    "event_player_left_battle_session",
];

/// An event waiting in its title region's outbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    pub seq: u64,
    pub trigger_id: String,
    pub handler: VsName,
    pub vs: VsName,
    pub event_name: String,
    pub event_time: UnixMillis,
    /// JSON object.
    pub event_data: String,
    /// JSON object.
    pub args: String,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerKind {
    Event,
    Task,
}

/// One delivery attempt of an event or a task (the trigger log).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriggerRecord {
    pub trigger_id: String,
    pub kind: TriggerKind,
    /// Event name or task name.
    pub name: String,
    pub vs: VsName,
    pub at: UnixMillis,
    pub attempt: u32,
    pub status_code: Option<u16>,
    /// Response body (truncated to 1 KiB) or the delivery error.
    pub response: String,
    pub latency_ms: u64,
    /// Delivered (2xx), or given up after the last attempt.
    pub outcome: TriggerOutcome,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerOutcome {
    Delivered,
    Retrying,
    GaveUp,
}

/// Trigger log records kept per title region.
pub const TRIGGER_LOG_KEPT: usize = 2_000;
/// Events kept waiting per title region before the oldest are dropped.
pub const OUTBOX_LIMIT: usize = 10_000;
