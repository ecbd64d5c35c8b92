//! Typed configuration of Respawn: a TOML file, then `RESPAWN_*` environment
//! variables, then command-line flags, each layer overriding the one before,
//! validated once into [`Config`]. [`Config::dev`] holds the embedded
//! defaults that `respawn dev` runs on.
//!
//! Environment variables name a key path with `__` between levels:
//! `RESPAWN_SERVER__HTTP_ADDR=0.0.0.0:8080`, `RESPAWN_DATA_DIR=/var/lib/respawn`.

mod bounds;
mod fleet;
mod layers;
mod retention;
pub mod storage;

pub use bounds::{AgentLogs, EdgeLimits};
pub use fleet::FleetSpec;
pub use layers::{unknown_env_vars, CLI_ENV_VARS};
pub use retention::RetentionSection;

use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use respawn_types::limits;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole configuration. Sections a mode does not use are ignored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where Raft's log, snapshots, certificates and DS logs live.
    pub data_dir: PathBuf,
    /// `tracing` filter, e.g. `info` or `respawn=debug,info`.
    pub log: String,
    pub server: ServerSection,
    pub agent: AgentSection,
    /// How long terminal records and unused battle session ids are kept.
    #[serde(default)]
    pub retention: RetentionSection,
    /// Title regions created at start-up if absent.
    #[serde(default)]
    pub title_regions: Vec<TitleRegionSpec>,
    /// Fleets created (or updated) at start-up.
    #[serde(default)]
    pub fleets: Vec<FleetSpec>,
    /// Virtual servers created at start-up if absent.
    #[serde(default)]
    pub virtual_servers: Vec<VirtualServerSpec>,
    /// VS storages created at start-up if absent (before the virtual servers).
    #[serde(default)]
    pub storages: Vec<storage::StorageConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// This node's Raft id (unique in the cluster, not 0).
    pub node_id: u64,
    /// The HTTP edge (standalone DS API, admin API, health, metrics).
    pub http_addr: SocketAddr,
    /// QUIC listener for agents and other nodes.
    pub quic_addr: SocketAddr,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a ServerTicket stays valid either side of its timestamp, in seconds.
    pub ticket_window_secs: u64,
    /// Raft heartbeat interval (ms). Default 50: the nodes of a cluster
    /// are a LAN apart.
    pub heartbeat_ms: u64,
    /// Raft election timeout lower bound (ms); the upper bound, which is
    /// also the leader lease, is one and a half times it
    /// ([`ServerSection::election_timeout_max_ms`]). At least three
    /// heartbeats. Default 200: a crashed leader is replaced after the
    /// lease plus a random timeout, 500–600 ms (`docs/operations.md`).
    pub election_timeout_ms: u64,
    /// Build a snapshot (and compact the log) after this many entries.
    pub snapshot_every: u64,
    /// … or after this many applied commands (an entry holds up to 512),
    /// whichever comes first; 0 turns this trigger off.
    #[serde(default = "bounds::default_snapshot_every_commands")]
    pub snapshot_every_commands: u64,
    /// … or after this many bytes of log; 0 turns this trigger off.
    #[serde(default = "bounds::default_snapshot_every_log_bytes")]
    pub snapshot_every_log_bytes: u64,
    /// Timeouts and connection cap of the HTTP edge.
    #[serde(default)]
    pub edge: EdgeLimits,
    /// Address other nodes and agents use to reach this node's QUIC listener
    /// (`host:port`; DNS names allowed). Default: `quic_addr`.
    #[serde(default)]
    pub advertise_quic: Option<String>,
    /// Address others use for this node's HTTP edge. Default: `http_addr`.
    #[serde(default)]
    pub advertise_http: Option<String>,
    /// Directory with this node's certificate (`cert.pem`, `key.pem`,
    /// `ca.pem`, common name `node-<node_id>`); see `respawn ctl pki`.
    /// Unset: a development CA and certificates under `<data_dir>/pki`.
    #[serde(default)]
    pub pki_dir: Option<std::path::PathBuf>,
    /// How the cluster is formed on first start: `single` (this node alone),
    /// `members` (the node with the lowest id in `members` initialises the
    /// cluster with all of them), or `join` (ask `join_url` to add this node).
    #[serde(default)]
    pub bootstrap: Bootstrap,
    /// The initial voters, for `bootstrap = "members"`.
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    /// HTTP edge of any member, for `bootstrap = "join"`.
    #[serde(default)]
    pub join_url: Option<String>,
    /// Take `node_id` from the host name's trailing ordinal plus one
    /// (`respawn-0` → 1), as a Kubernetes StatefulSet names its pods.
    #[serde(default)]
    pub node_id_from_hostname: bool,
    /// Bearer token for the admin API (`/admin/*`) and for joining.
    /// Unset: generated at first start and kept in `<data_dir>/admin-token`.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// `PGOS_Title_Region_Type` for virtual servers: dev, test or release.
    #[serde(default = "default_region_type")]
    pub region_type: String,
    /// `PGOS_Title_Region_Backend_API_Domain` for virtual servers (host[:port]
    /// of this cluster's edge). Unset: `advertise_http`, else `http_addr`.
    #[serde(default)]
    pub backend_api_domain: Option<String>,
    /// Repair: before starting, make this node the only member of its
    /// cluster, whatever the stored membership says (see
    /// `docs/operations.md`, "Repairing a cluster that cannot commit").
    /// Meant for one start (`respawn server --force-new-cluster`), on the
    /// survivor of a cluster whose other members are gone for good.
    #[serde(default)]
    pub force_new_cluster: bool,
}

impl ServerSection {
    /// The upper bound of the Raft election timeout, which openraft also
    /// takes as the leader lease (a follower refuses to vote for this long
    /// after its last heartbeat): one and a half times
    /// `election_timeout_ms`. A crashed leader's followers stand for
    /// election after the lease plus a random timeout in
    /// `[election_timeout_ms, election_timeout_max_ms)`.
    pub fn election_timeout_max_ms(&self) -> u64 {
        self.election_timeout_ms + self.election_timeout_ms / 2
    }
}

fn default_region_type() -> String {
    "dev".into()
}

/// Default of `agent.drain_deadline_secs`: 10 minutes.
fn default_drain_deadline_secs() -> u64 {
    600
}

/// Longest `agent.drain_deadline_secs`: one day.
pub const MAX_DRAIN_DEADLINE_SECS: u64 = 86_400;

fn default_intranet_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// How a node's cluster is formed on first start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bootstrap {
    /// A cluster of this node alone (dev, or the first node of a cluster grown with `join`).
    #[default]
    Single,
    /// All of `members` at once.
    Members,
    /// Join an existing cluster through `join_url`.
    Join,
}

/// An initial cluster member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    pub node_id: u64,
    /// QUIC address (`host:port`).
    pub quic: String,
    /// HTTP edge address (`host:port`).
    pub http: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSection {
    /// QUIC address of a server node (`host:port`; DNS names allowed).
    pub server_addr: String,
    /// More server nodes (`host:port`, DNS names allowed), tried in turn
    /// after `server_addr` when a link is lost.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Directory with this agent's certificate (common name = host id).
    /// Unset: the development certificates under `<data_dir>/pki`.
    #[serde(default)]
    pub pki_dir: Option<std::path::PathBuf>,
    /// This host's id; it must equal the common name of the agent's certificate.
    pub host_id: Option<String>,
    /// The fleet whose DS processes this host runs.
    pub fleet: String,
    /// Address game clients use to reach DS processes on this host.
    pub public_ip: String,
    /// Local SDK API listener (loopback only; port 0 picks a free one).
    pub local_api_addr: SocketAddr,
    /// After OnProcessTerminate, kill a process still alive after this long (ms).
    pub kill_grace_ms: u64,
    /// On SIGTERM the agent drains its host (no new session, idle processes
    /// end, busy ones finish their sessions) and exits when none is left;
    /// past this many seconds it ends the sessions still running
    /// (OnProcessTerminate, kill after `kill_grace_ms`). Default 600.
    #[serde(default = "default_drain_deadline_secs")]
    pub drain_deadline_secs: u64,
    /// Where virtual server instances on this host reach other virtual
    /// servers (`PGOS_VS_Intranet_Endpoint`, and `http_proxy` for the
    /// `*.virtualserver.int` names); port 0 picks a free one.
    #[serde(default = "default_intranet_addr")]
    pub intranet_addr: SocketAddr,
    /// Address Docker containers use to reach `intranet_addr` (e.g. the
    /// docker0 gateway, with `intranet_addr` bound to it or to 0.0.0.0).
    /// Unset: Docker instances get no intranet endpoint and no proxy.
    #[serde(default)]
    pub docker_intranet_host: Option<String>,
    /// Rotation and retention of DS and VS logs.
    #[serde(default)]
    pub logs: AgentLogs,
}

/// A virtual server created at start-up if absent (later changes through
/// the admin API are kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServerSpec {
    pub title_region: String,
    pub name: String,
    pub spec: VsSpec,
}

/// A title region to create at start-up. A missing key is generated once and
/// kept in the replicated state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TitleRegionSpec {
    pub id: String,
    pub title_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub title_name: String,
    /// URL of the title's logo: `PGOS_Title_Logo` for virtual servers.
    #[serde(default)]
    pub title_logo: String,
    pub secret_id: Option<String>,
    pub secret_key: Option<String>,
}

/// Id of the title region `respawn dev` creates.
pub const DEV_TITLE_REGION: &str = "tr-dev";
/// Id of the fleet `respawn dev` creates.
pub const DEV_FLEET: &str = "fleet-dev";
/// Name of the dev agent's host (and its certificate's common name).
pub const DEV_HOST: &str = "dev-agent";

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./.respawn"),
            log: "info".into(),
            server: ServerSection {
                node_id: 1,
                http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
                quic_addr: SocketAddr::from(([127, 0, 0, 1], 7600)),
                max_body_bytes: 64 * 1024,
                ticket_window_secs: 300,
                heartbeat_ms: 50,
                election_timeout_ms: 200,
                snapshot_every: 5_000,
                snapshot_every_commands: bounds::default_snapshot_every_commands(),
                snapshot_every_log_bytes: bounds::default_snapshot_every_log_bytes(),
                edge: EdgeLimits::default(),
                advertise_quic: None,
                advertise_http: None,
                pki_dir: None,
                bootstrap: Bootstrap::Single,
                members: Vec::new(),
                join_url: None,
                admin_token: None,
                node_id_from_hostname: false,
                region_type: default_region_type(),
                backend_api_domain: None,
                force_new_cluster: false,
            },
            agent: AgentSection {
                server_addr: "127.0.0.1:7600".into(),
                servers: Vec::new(),
                pki_dir: None,
                host_id: None,
                fleet: DEV_FLEET.into(),
                public_ip: "127.0.0.1".into(),
                local_api_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                kill_grace_ms: 5_000,
                drain_deadline_secs: default_drain_deadline_secs(),
                intranet_addr: default_intranet_addr(),
                docker_intranet_host: None,
                logs: AgentLogs::default(),
            },
            retention: RetentionSection::default(),
            title_regions: Vec::new(),
            fleets: Vec::new(),
            virtual_servers: Vec::new(),
            storages: Vec::new(),
        }
    }
}

impl Config {
    /// The embedded defaults of `respawn dev`: one title region and one
    /// fleet running the sample DS (`launch_path` with `args`).
    pub fn dev(launch_path: &str, args: Vec<String>) -> Config {
        Config {
            title_regions: vec![TitleRegionSpec {
                id: DEV_TITLE_REGION.into(),
                title_id: "title-dev".into(),
                name: "dev".into(),
                title_name: "Respawn dev title".into(),
                title_logo: String::new(),
                secret_id: None,
                secret_key: None,
            }],
            fleets: vec![FleetSpec {
                id: DEV_FLEET.into(),
                title_region: DEV_TITLE_REGION.into(),
                definition: FleetDefinition {
                    name: "sample DS".into(),
                    args,
                    processes_per_host: 2,
                    ..FleetDefinition::new(launch_path)
                },
            }],
            agent: AgentSection {
                host_id: Some(DEV_HOST.into()),
                ..Config::default().agent
            },
            ..Config::default()
        }
    }

    /// Layers `base`, the TOML file (if any), `RESPAWN_*` variables and
    /// `overrides` (flags, as a partial TOML-shaped value), then validates.
    /// A variable that names no configuration key is left out (see
    /// [`unknown_env_vars`]); an unknown key in the file is an error.
    pub fn load(
        base: Config,
        file: Option<&Path>,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<Config, ConfigError> {
        let cfg = Self::layered(base, file, overrides)?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// [`Config::load`] for `respawn dev`: `dev` is [`Config::dev`], and the
    /// file's title regions and fleets are added to the built-in ones (the
    /// same id replaces a built-in entry) rather than replacing the lists.
    pub fn load_dev(
        dev: Config,
        file: Option<&Path>,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<Config, ConfigError> {
        let mut cfg = Self::layered(dev.clone(), file, overrides)?;
        layers::keep_dev_entries(&dev, &mut cfg);
        cfg.validate()?;
        Ok(cfg)
    }

    fn layered(
        base: Config,
        file: Option<&Path>,
        overrides: &BTreeMap<String, toml::Value>,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(base));
        if let Some(f) = file {
            if !f.exists() {
                return Err(invalid(
                    "config file",
                    format!("{} does not exist", f.display()),
                ));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(layers::env_layer());
        for (key, value) in overrides {
            fig = fig.merge(Serialized::default(key, value));
        }
        Ok(fig.extract().map_err(Box::new)?)
    }

    /// Resolves settings that depend on the environment: `node_id` from the
    /// host name when `node_id_from_hostname` is set, and the `{node_id}` /
    /// `{host_id}` placeholders of the `pki_dir`s.
    pub fn resolve(&mut self, hostname: &str) -> Result<(), ConfigError> {
        if self.server.node_id_from_hostname {
            let ordinal = hostname
                .rsplit('-')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    invalid(
                        "server.node_id_from_hostname",
                        format!("host name '{hostname}' has no -<ordinal> suffix"),
                    )
                })?;
            self.server.node_id = ordinal + 1;
        }
        let node_id = self.server.node_id.to_string();
        if let Some(dir) = &self.server.pki_dir {
            self.server.pki_dir = Some(dir.to_string_lossy().replace("{node_id}", &node_id).into());
        }
        if let (Some(dir), Some(host)) = (&self.agent.pki_dir, &self.agent.host_id) {
            self.agent.pki_dir = Some(dir.to_string_lossy().replace("{host_id}", host).into());
        }
        self.validate()
    }

    /// Checks what serde cannot: ranges, ids, references between sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.server.node_id == 0 || self.server.node_id > limits::MAX_NODE_ID {
            return Err(invalid(
                "server.node_id",
                format!("must be between 1 and {}", limits::MAX_NODE_ID),
            ));
        }
        if !["dev", "test", "release"].contains(&self.server.region_type.as_str()) {
            return Err(invalid(
                "server.region_type",
                "must be dev, test or release",
            ));
        }
        for (i, st) in self.storages.iter().enumerate() {
            let field = format!("storages[{i}]");
            respawn_types::StorageName::parse(st.name.clone())
                .map_err(|e| invalid(format!("{field}.name"), e))?;
            st.spec
                .validate()
                .map_err(|e| invalid(format!("{field}.spec"), e))?;
            self.check_title_region(&format!("{field}.title_region"), &st.title_region)?;
        }
        for (i, v) in self.virtual_servers.iter().enumerate() {
            let field = format!("virtual_servers[{i}]");
            VsName::parse(v.name.clone()).map_err(|e| invalid(&field, e.to_string()))?;
            TitleRegionId::parse(v.title_region.clone())
                .map_err(|e| invalid(&field, e.to_string()))?;
            v.spec.validate().map_err(|e| invalid(&field, e))?;
            self.check_title_region(&format!("{field}.title_region"), &v.title_region)?;
        }
        self.server.edge.validate()?;
        self.agent.logs.validate()?;
        if !(1..=MAX_DRAIN_DEADLINE_SECS).contains(&self.agent.drain_deadline_secs) {
            return Err(invalid(
                "agent.drain_deadline_secs",
                format!("must be between 1 and {MAX_DRAIN_DEADLINE_SECS}"),
            ));
        }
        self.retention.validate()?;
        if self.server.max_body_bytes < 1024 {
            return Err(invalid("server.max_body_bytes", "must be at least 1024"));
        }
        if !(10..=3600).contains(&self.server.ticket_window_secs) {
            return Err(invalid(
                "server.ticket_window_secs",
                "must be between 10 and 3600",
            ));
        }
        if self.server.heartbeat_ms == 0
            || self.server.election_timeout_ms < 3 * self.server.heartbeat_ms
        {
            return Err(invalid(
                "server.election_timeout_ms",
                "must be at least three heartbeat_ms (> 0)",
            ));
        }
        match self.server.bootstrap {
            Bootstrap::Members => {
                if self.server.members.is_empty() {
                    return Err(invalid(
                        "server.members",
                        "bootstrap = \"members\" needs at least one member",
                    ));
                }
                if !self
                    .server
                    .members
                    .iter()
                    .any(|m| m.node_id == self.server.node_id)
                {
                    return Err(invalid(
                        "server.members",
                        "must include this node's node_id",
                    ));
                }
            }
            Bootstrap::Join if self.server.join_url.is_none() => {
                return Err(invalid(
                    "server.join_url",
                    "bootstrap = \"join\" needs join_url",
                ));
            }
            _ => {}
        }
        if self
            .server
            .admin_token
            .as_ref()
            .is_some_and(|t| t.len() < 16)
        {
            return Err(invalid(
                "server.admin_token",
                "must be at least 16 characters",
            ));
        }
        if !self.agent.local_api_addr.ip().is_loopback() {
            return Err(invalid(
                "agent.local_api_addr",
                "must be a loopback address",
            ));
        }
        FleetId::parse(self.agent.fleet.clone())
            .map_err(|e| invalid("agent.fleet", e.to_string()))?;
        if let Some(h) = &self.agent.host_id {
            HostId::parse(h.clone()).map_err(|e| invalid("agent.host_id", e.to_string()))?;
        }
        for (i, tr) in self.title_regions.iter().enumerate() {
            let f = |n: &str| format!("title_regions[{i}].{n}");
            TitleRegionId::parse(tr.id.clone()).map_err(|e| invalid(f("id"), e.to_string()))?;
            TitleId::parse(tr.title_id.clone())
                .map_err(|e| invalid(f("title_id"), e.to_string()))?;
            if let Some(s) = &tr.secret_id {
                SecretId::parse(s.clone()).map_err(|e| invalid(f("secret_id"), e.to_string()))?;
            }
            if tr.secret_key.as_ref().is_some_and(|k| k.len() < 16) {
                return Err(invalid(f("secret_key"), "must be at least 16 characters"));
            }
        }
        for (i, fl) in self.fleets.iter().enumerate() {
            let f = |n: &str| format!("fleets[{i}].{n}");
            FleetId::parse(fl.id.clone()).map_err(|e| invalid(f("id"), e.to_string()))?;
            self.check_title_region(&f("title_region"), &fl.title_region)?;
            // The admin API's checks, naming the same fields.
            fl.definition
                .validate()
                .map_err(|e| invalid(f(&e.field), e.message))?;
        }
        Ok(())
    }
}

impl Config {
    /// A fleet or virtual server names a configured title region.
    fn check_title_region(&self, field: &str, id: &str) -> Result<(), ConfigError> {
        if self.title_regions.iter().any(|t| t.id == id) {
            return Ok(());
        }
        Err(invalid(
            field,
            format!(
                "no title region '{id}' is configured; add a [[title_regions]] table with id = \"{id}\""
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_defaults_are_valid() {
        let c = Config::dev("/bin/true", vec![]);
        c.validate().unwrap();
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.fleets[0].to_fleet().activation_timeout_ms, 60_000);
        assert_eq!(c.fleets[0].to_fleet().process_ending_grace_ms, 120_000);
        assert_eq!(c.fleets[0].to_fleet().health_check_interval_ms, 5_000);
    }

    #[test]
    fn raft_timings_suit_a_lan_and_need_three_heartbeats_per_timeout() {
        let mut c = Config::dev("/bin/true", vec![]);
        assert_eq!(
            (
                c.server.heartbeat_ms,
                c.server.election_timeout_ms,
                c.server.election_timeout_max_ms()
            ),
            (50, 200, 300)
        );
        // A crashed leader: lease (the max) plus a timeout in [min, max).
        let crash = c.server.election_timeout_max_ms() + c.server.election_timeout_ms;
        assert!(crash <= 600, "{crash}");
        c.server.election_timeout_ms = 149;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("server.election_timeout_ms"), "{e}");
        c.server.election_timeout_ms = 150;
        c.validate().unwrap();
        assert_eq!(c.server.election_timeout_max_ms(), 225);
    }

    #[test]
    fn file_then_overrides_layer_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("respawn.toml");
        std::fs::write(
            &path,
            "log = \"debug\"\n[server]\nnode_id = 7\nhttp_addr = \"127.0.0.1:9000\"\n",
        )
        .unwrap();
        let mut o = BTreeMap::new();
        o.insert(
            "server.http_addr".to_string(),
            toml::Value::String("127.0.0.1:9001".into()),
        );
        let c = Config::load(Config::default(), Some(&path), &o).unwrap();
        assert_eq!(c.server.node_id, 7);
        assert_eq!(c.log, "debug");
        assert_eq!(c.server.http_addr.to_string(), "127.0.0.1:9001");
    }

    /// The commented example in deploy/ stays loadable.
    #[test]
    fn the_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/respawn.toml");
        let c = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap();
        assert_eq!(c.virtual_servers.len(), 1);
        assert_eq!(c.virtual_servers[0].spec.max_instances, 4);
        assert_eq!(c.server.region_type, "release");
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            "[[virtual_servers]]\ntitle_region = \"tr\"\nname = \"bad_name\"\n[virtual_servers.spec]\nsource = { process = { command = \"x\" } }\nlisten_port = 80\n",
        )
        .unwrap();
        let e = Config::load(Config::default(), Some(&bad), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("virtual_servers[0]"), "{e}");
    }

    #[test]
    fn resolve_takes_node_id_from_hostname_and_fills_pki_dirs() {
        let mut c = Config::default();
        c.server.node_id_from_hostname = true;
        c.server.pki_dir = Some("/pki/node-{node_id}".into());
        c.agent.host_id = Some("worker-7".into());
        c.agent.pki_dir = Some("/pki/agent-{host_id}".into());
        c.resolve("respawn-2").unwrap();
        assert_eq!(c.server.node_id, 3);
        assert_eq!(c.server.pki_dir, Some("/pki/node-3".into()));
        assert_eq!(c.agent.pki_dir, Some("/pki/agent-worker-7".into()));
        let e = c.resolve("respawn").unwrap_err();
        assert!(e.to_string().contains("ordinal"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[server]\nnode_id = 0\n").unwrap();
        let e = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("server.node_id"), "{e}");
        // Above 2^53 - 1 (a JSON number loses it): refused too.
        std::fs::write(&path, "[server]\nnode_id = 9223372036854775806\n").unwrap();
        let e = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("server.node_id"), "{e}");
        std::fs::write(&path, "[server]\nnode_idd = 3\n").unwrap();
        let e = Config::load(Config::default(), Some(&path), &BTreeMap::new()).unwrap_err();
        assert!(e.to_string().contains("node_idd"), "{e}");
        let mut c = Config::dev("/x", vec![]);
        c.fleets[0].definition.activation_timeout_secs = 601;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("activation_timeout_secs"));
        let mut c = Config::dev("/x", vec![]);
        c.fleets[0].title_region = "nope".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("title_region"));
        let e = Config::load(
            Config::default(),
            Some(Path::new("/nonexistent.toml")),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not exist"));
    }
}
