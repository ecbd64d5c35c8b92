//! How an agent is configured.

use respawn_runtime::retention::Retention;
use respawn_runtime::rotate::Rotation;
use respawn_types::{FleetId, HostId};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// How an agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// This host's id.
    pub host_id: HostId,
    /// The fleet this host serves.
    pub fleet_id: FleetId,
    /// Address game clients use to reach this host's DS processes.
    pub ip: String,
    /// Where the agent keeps its files; DS logs go to `data_dir/logs/<process_id>/`,
    /// the ledger of its children to `data_dir/children/`.
    pub data_dir: PathBuf,
    /// Where the local SDK API listens; must be a loopback address.
    /// Default `127.0.0.1:0` (any free port).
    pub local_api_addr: SocketAddr,
    /// After OnProcessTerminate, a process still alive this much later is
    /// killed. Default 5 s.
    pub kill_grace: Duration,
    /// How long a drain ([`crate::Agent::drain`], on SIGTERM) waits for the
    /// host's sessions to finish before ending them. Default 10 minutes.
    pub drain_deadline: Duration,
    /// Where VS instances reach other virtual servers (loopback, port 0 = any).
    pub intranet_addr: SocketAddr,
    /// Host name Docker containers use to reach `intranet_addr`.
    pub docker_intranet_host: Option<String>,
    /// Rotation and retention of DS and VS logs.
    pub logs: LogLimits,
}

/// Rotation and retention of the agent's logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogLimits {
    /// Each DS stdout/stderr file and each VS instance log.
    pub rotation: Rotation,
    /// Logs of ended DS processes and VS instances.
    pub retention: Retention,
    /// How often the retention sweep runs.
    pub sweep_interval: Duration,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            rotation: Rotation::default(),
            retention: Retention::default(),
            sweep_interval: Duration::from_secs(300),
        }
    }
}

impl From<&respawn_config::AgentLogs> for LogLimits {
    fn from(c: &respawn_config::AgentLogs) -> Self {
        LogLimits {
            rotation: Rotation {
                max_file_bytes: c.max_file_bytes,
                rotated_files: c.rotated_files,
            },
            retention: Retention {
                max_age: Duration::from_secs(c.retention_secs),
                max_total_bytes: c.max_total_bytes,
            },
            sweep_interval: Duration::from_secs(c.sweep_interval_secs),
        }
    }
}

impl AgentConfig {
    /// A configuration with the defaults for `local_api_addr` and `kill_grace`.
    pub fn new(
        host_id: HostId,
        fleet_id: FleetId,
        ip: impl Into<String>,
        data_dir: impl Into<PathBuf>,
    ) -> Self {
        Self {
            host_id,
            fleet_id,
            ip: ip.into(),
            data_dir: data_dir.into(),
            local_api_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            kill_grace: Duration::from_secs(5),
            drain_deadline: Duration::from_secs(600),
            intranet_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            docker_intranet_host: None,
            logs: LogLimits::default(),
        }
    }
}
