//! The command line of `respawn`: its commands and flags (clap), and the
//! modules that carry them out besides starting a node: [`ctl`] (the admin
//! API's HTTP client), [`dev`], [`pki`], and [`launch`] (what starting a
//! server or an agent needs: configuration, tracing, identities, signals).

pub mod ctl;
pub mod dev;
pub mod drain_agent;
pub mod ds_logs_ctl;
pub mod fleet_ctl;
pub mod launch;
pub mod pki;
pub mod storage_ctl;

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "respawn",
    version,
    about = "Respawn: a self-hosted game backend (PGOS DS Hosting).",
    long_about = "Respawn hosts dedicated game servers (DS) on fleets of hosts and places battle sessions on them \
through the PGOS standalone DS HTTP API.\n\nStart with `respawn dev`: one process with a server node, an agent and \
a sample DS fleet, state under ./.respawn.\n\nConfiguration is layered: built-in defaults, then the TOML file of \
--config, then RESPAWN_* environment variables (RESPAWN_SERVER__HTTP_ADDR=..., `__` between levels), then flags."
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "RESPAWN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for Raft state, certificates and DS logs [default: ./.respawn].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `respawn=debug,info` [default: info].
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand)]
pub enum Cmd {
    /// Run a single-node server and an agent in one process, with a dev title
    /// region (credentials printed at start-up) and a fleet of sample DS processes.
    Dev(DevArgs),
    /// Run a server node: Raft member, actors, QUIC listener for agents, HTTP edge.
    Server(ServerArgs),
    /// Run an agent: launch a fleet's DS processes on this host and link them to a server.
    Agent(AgentArgs),
    /// Admin helpers.
    #[command(subcommand)]
    Ctl(CtlCmd),
    /// Benchmarks (results go to docs/benchmarks.md).
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
    /// Print the OpenAPI document of the HTTP edge.
    Openapi,
    /// The sample dedicated game server (what `respawn dev` launches).
    #[command(hide = true, disable_help_flag = true)]
    SampleDs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Args)]
pub struct ServerFlags {
    /// HTTP edge address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub http_addr: Option<SocketAddr>,
    /// QUIC listener address for agents [default: 127.0.0.1:7600].
    #[arg(long)]
    pub quic_addr: Option<SocketAddr>,
    /// Repair: make this node the only member of its cluster before it
    /// starts, whatever its stored membership (when the other voters are
    /// gone for good and nothing can commit). See docs/operations.md.
    #[arg(long)]
    pub force_new_cluster: bool,
}

impl ServerFlags {
    /// The configuration overrides these flags make.
    pub fn overrides(&self) -> Vec<(&'static str, Option<toml::Value>)> {
        vec![
            ("server.http_addr", launch::s(self.http_addr)),
            ("server.quic_addr", launch::s(self.quic_addr)),
            (
                "server.force_new_cluster",
                self.force_new_cluster.then_some(toml::Value::Boolean(true)),
            ),
        ]
    }
}

#[derive(Args)]
pub struct DevArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// DS processes the dev agent keeps running [default: 2].
    #[arg(long)]
    pub processes: Option<u32>,
    /// How long the sample DS keeps a battle session before ending it, in seconds.
    #[arg(long, default_value_t = 600)]
    pub session_secs: u64,
}

#[derive(Args)]
pub struct ServerArgs {
    #[command(flatten)]
    pub server: ServerFlags,
    /// This node's Raft id [default: 1].
    #[arg(long)]
    pub node_id: Option<u64>,
}

#[derive(Args)]
pub struct AgentArgs {
    /// QUIC address of a server node, `host:port` [default: 127.0.0.1:7600].
    #[arg(long)]
    pub server: Option<String>,
    /// Fleet whose DS processes this host runs.
    #[arg(long)]
    pub fleet: Option<String>,
    /// Address game clients use to reach this host [default: 127.0.0.1].
    #[arg(long)]
    pub public_ip: Option<String>,
    /// Host id (must equal the agent certificate's common name) [default: from the certificate].
    #[arg(long)]
    pub host_id: Option<String>,
}

#[derive(Subcommand)]
pub enum PkiCmd {
    /// Create a cluster CA in `<dir>/ca/` (ca.pem, ca.key). Keep ca.key private.
    Init {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Issue a certificate signed by the CA in `<dir>/ca/`: for a server node
    /// (`--node ID`, common name `node-ID`, into `<dir>/node-ID/`) or an agent
    /// (`--agent HOST_ID`, common name HOST_ID, into `<dir>/agent-HOST_ID/`).
    Issue {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, conflicts_with = "agent", required_unless_present = "agent")]
        node: Option<u64>,
        #[arg(long)]
        agent: Option<String>,
        /// Extra DNS names or IP addresses for the certificate.
        #[arg(long = "san")]
        sans: Vec<String>,
    },
}

#[derive(Args)]
pub struct AdminFlags {
    /// HTTP edge of any server node.
    #[arg(long, env = "RESPAWN_EDGE", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Admin token (printed at start-up; `<data_dir>/admin-token`).
    #[arg(long, env = "RESPAWN_ADMIN_TOKEN", hide_env_values = true)]
    pub token: String,
}

#[derive(clap::Args)]
pub struct VsFlags {
    #[command(flatten)]
    pub admin: AdminFlags,
    /// Title region id.
    #[arg(long = "title-region", env = "RESPAWN_TITLE_REGION_ID")]
    pub title_region: String,
}

#[derive(Subcommand)]
pub enum VsCmd {
    /// List the title region's virtual servers with their instances.
    List(VsFlags),
    /// Show one virtual server.
    Get {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    /// Create or update a virtual server from a JSON spec file (`-` = stdin).
    Put {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
        /// JSON file with the spec (see docs/virtual-servers.md).
        #[arg(long)]
        spec: PathBuf,
    },
    /// Start a stopped virtual server (one instance first, then autoscaling).
    Start {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    /// Stop every instance of a virtual server and free their resources (calls answer 503 until `start`).
    Stop {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    /// Delete a virtual server and its versions; its instances are stopped.
    Delete {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    /// Console output of the instances.
    Logs {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
        /// Only one version.
        #[arg(long)]
        version: Option<u64>,
        /// Only lines containing this text.
        #[arg(long)]
        contains: Option<String>,
        /// The last N lines.
        #[arg(long, default_value_t = 100)]
        tail: usize,
    },
}

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Members, roles, leader and this node's Raft state.
    Status(AdminFlags),
    /// Add a node as a learner (it replicates the log but does not vote).
    AddLearner {
        #[command(flatten)]
        admin: AdminFlags,
        #[arg(long)]
        node_id: u64,
        /// The node's QUIC address, `host:port`.
        #[arg(long)]
        quic_addr: String,
        /// The node's HTTP edge address, `host:port`.
        #[arg(long)]
        http_addr: String,
    },
    /// Make a learner a voter.
    Promote {
        #[command(flatten)]
        admin: AdminFlags,
        #[arg(long)]
        node_id: u64,
    },
    /// Remove a node from the cluster (then add its replacement).
    Remove {
        #[command(flatten)]
        admin: AdminFlags,
        #[arg(long)]
        node_id: u64,
    },
}

#[derive(Subcommand)]
pub enum CtlCmd {
    /// Cluster membership, over the admin API of any node.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Certificates: a cluster CA and node/agent certificates signed by it.
    #[command(subcommand)]
    Pki(PkiCmd),
    /// Virtual servers of a title region, over the admin API of any node.
    #[command(subcommand)]
    Vs(VsCmd),
    /// Fleets of a title region, over the admin API of any node.
    #[command(subcommand)]
    Fleet(fleet_ctl::FleetCmd),
    /// VS storages (Redis, MongoDB) of a title region, over the admin API of any node.
    #[command(subcommand)]
    Storage(storage_ctl::StorageCmd),
    /// Hosts (agents): list, drain, undrain.
    #[command(subcommand)]
    Host(fleet_ctl::HostCmd),
    /// Drain the `respawn agent` running on this machine (SIGTERM to its
    /// process: no new session, idle DS processes end, busy ones finish) and
    /// wait until it has exited; the preStop hook of deploy/k8s/agents.yaml.
    DrainAgent {
        /// The agent's process id (1 in a container).
        #[arg(long, default_value_t = 1)]
        pid: i32,
    },
    /// Logs of DS processes (stdout, stderr, collected log_paths): list, get.
    #[command(subcommand)]
    DsLogs(ds_logs_ctl::DsLogsCmd),
    /// Print a PlayerTicket for a game client to invoke virtual servers
    /// (what a game backend mints; format in docs/virtual-servers.md).
    PlayerTicket {
        #[arg(long, env = "RESPAWN_TITLE_ID")]
        title_id: String,
        #[arg(long, env = "RESPAWN_TITLE_REGION_ID")]
        title_region_id: String,
        #[arg(long, env = "RESPAWN_SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        #[arg(long)]
        player_id: String,
        #[arg(long)]
        session_id: String,
        /// Validity in seconds (at most 86400).
        #[arg(long, default_value_t = 3600)]
        valid_secs: u64,
    },
    /// Print a ServerTicket for the backend API (valid ±5 minutes by default).
    Ticket {
        #[arg(long, env = "RESPAWN_TITLE_ID")]
        title_id: String,
        #[arg(long, env = "RESPAWN_TITLE_REGION_ID")]
        title_region_id: String,
        #[arg(long, env = "RESPAWN_SECRET_ID")]
        secret_id: String,
        #[arg(long, env = "RESPAWN_SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        /// Unix time to sign for [default: now].
        #[arg(long)]
        at: Option<i64>,
    },
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every subcommand `--help` lists has a description (`respawn ctl vs
    /// --help` once showed `start`, `stop` and `delete` bare).
    #[test]
    fn every_listed_subcommand_is_described() {
        fn walk(cmd: &clap::Command, path: &str, bare: &mut Vec<String>) {
            for sub in cmd.get_subcommands() {
                let p = format!("{path} {}", sub.get_name());
                if !sub.is_hide_set() && sub.get_about().is_none() && sub.get_name() != "help" {
                    bare.push(p.clone());
                }
                walk(sub, &p, bare);
            }
        }
        let mut bare = Vec::new();
        walk(&Cli::command(), "respawn", &mut bare);
        assert!(
            bare.is_empty(),
            "subcommands without a description: {bare:?}"
        );
        let help = Cli::command()
            .find_subcommand_mut("ctl")
            .and_then(|c| c.find_subcommand_mut("vs"))
            .map(|c| c.render_help().to_string())
            .unwrap();
        for line in help.lines().filter(|l| {
            ["start", "stop", "delete"]
                .iter()
                .any(|n| l.trim_start().starts_with(&format!("{n} ")))
        }) {
            assert!(line.split_whitespace().count() > 1, "{line}");
        }
    }
}
