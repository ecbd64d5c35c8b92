//! How an agent is configured.

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
    /// Where the agent keeps its files; DS logs go to `data_dir/logs/<process_id>/`.
    pub data_dir: PathBuf,
    /// Where the local SDK API listens; must be a loopback address.
    /// Default `127.0.0.1:0` (any free port).
    pub local_api_addr: SocketAddr,
    /// After OnProcessTerminate, a process still alive this much later is
    /// killed. Default 5 s.
    pub kill_grace: Duration,
    /// Where VS instances reach other virtual servers (loopback, port 0 = any).
    pub intranet_addr: SocketAddr,
    /// Host name Docker containers use to reach `intranet_addr`.
    pub docker_intranet_host: Option<String>,
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
            intranet_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            docker_intranet_host: None,
        }
    }
}
