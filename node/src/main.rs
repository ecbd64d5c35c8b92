//! `respawn`: one binary for every role. See `respawn --help`.

mod bench;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use respawn::{AgentNode, ServerNode};
use respawn_config::Config;
use respawn_types::ticket::server::sign_ticket;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

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
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "RESPAWN_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for Raft state, certificates and DS logs [default: ./.respawn].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `respawn=debug,info` [default: info].
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    Bench(bench::BenchCmd),
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
struct ServerFlags {
    /// HTTP edge address [default: 127.0.0.1:8080].
    #[arg(long)]
    http_addr: Option<SocketAddr>,
    /// QUIC listener address for agents [default: 127.0.0.1:7600].
    #[arg(long)]
    quic_addr: Option<SocketAddr>,
}

#[derive(Args)]
struct DevArgs {
    #[command(flatten)]
    server: ServerFlags,
    /// DS processes the dev agent keeps running [default: 2].
    #[arg(long)]
    processes: Option<u32>,
    /// How long the sample DS keeps a battle session before ending it, in seconds.
    #[arg(long, default_value_t = 600)]
    session_secs: u64,
}

#[derive(Args)]
struct ServerArgs {
    #[command(flatten)]
    server: ServerFlags,
    /// This node's Raft id [default: 1].
    #[arg(long)]
    node_id: Option<u64>,
}

#[derive(Args)]
struct AgentArgs {
    /// QUIC address of a server node, `host:port` [default: 127.0.0.1:7600].
    #[arg(long)]
    server: Option<String>,
    /// Fleet whose DS processes this host runs.
    #[arg(long)]
    fleet: Option<String>,
    /// Address game clients use to reach this host [default: 127.0.0.1].
    #[arg(long)]
    public_ip: Option<String>,
    /// Host id (must equal the agent certificate's common name) [default: from the certificate].
    #[arg(long)]
    host_id: Option<String>,
}

#[derive(Subcommand)]
enum PkiCmd {
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
struct AdminFlags {
    /// HTTP edge of any server node.
    #[arg(long, env = "RESPAWN_EDGE", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// Admin token (printed at start-up; `<data_dir>/admin-token`).
    #[arg(long, env = "RESPAWN_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(clap::Args)]
struct VsFlags {
    #[command(flatten)]
    admin: AdminFlags,
    /// Title region id.
    #[arg(long = "title-region", env = "RESPAWN_TITLE_REGION_ID")]
    title_region: String,
}

#[derive(Subcommand)]
enum VsCmd {
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
    Start {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
    Stop {
        #[command(flatten)]
        flags: VsFlags,
        name: String,
    },
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
enum ClusterCmd {
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
enum CtlCmd {
    /// Cluster membership, over the admin API of any node.
    #[command(subcommand)]
    Cluster(ClusterCmd),
    /// Certificates: a cluster CA and node/agent certificates signed by it.
    #[command(subcommand)]
    Pki(PkiCmd),
    /// Virtual servers of a title region, over the admin API of any node.
    #[command(subcommand)]
    Vs(VsCmd),
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

fn overrides(pairs: &[(&str, Option<toml::Value>)]) -> BTreeMap<String, toml::Value> {
    pairs
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
        .collect()
}

fn s<T: ToString>(v: Option<T>) -> Option<toml::Value> {
    v.map(|v| toml::Value::String(v.to_string()))
}

fn common(cli: &Cli) -> Vec<(&'static str, Option<toml::Value>)> {
    vec![
        ("data_dir", s(cli.data_dir.as_ref().map(|p| p.display()))),
        ("log", s(cli.log.clone())),
    ]
}

fn init_tracing(filter: &str) {
    // openraft narrates every election at INFO; keep it to warnings unless asked.
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| {
        let spec = if filter.contains("openraft") {
            filter.to_string()
        } else {
            format!("{filter},openraft=warn")
        };
        tracing_subscriber::EnvFilter::new(spec)
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init();
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::SampleDs { args } = &cli.command {
        return sample_ds::run_with_args(
            std::iter::once("sample-ds".to_string()).chain(args.iter().cloned()),
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Cmd::Dev(a) => dev(&cli, a).await,
        Cmd::Server(a) => {
            let mut o = common(&cli);
            o.push(("server.http_addr", s(a.server.http_addr)));
            o.push(("server.quic_addr", s(a.server.quic_addr)));
            o.push((
                "server.node_id",
                a.node_id.map(|n| toml::Value::Integer(n as i64)),
            ));
            let mut cfg = Config::load(Config::default(), cli.config.as_deref(), &overrides(&o))?;
            cfg.resolve(&hostname())?;
            init_tracing(&cfg.log);
            let node = ServerNode::start(&cfg, &server_identity(&cfg)?).await?;
            print_credentials(&node, &cfg.data_dir)?;
            wait_for_signal().await;
            node.shutdown().await;
            Ok(())
        }
        Cmd::Agent(a) => {
            let mut o = common(&cli);
            o.push(("agent.server_addr", s(a.server.clone())));
            o.push(("agent.fleet", s(a.fleet.clone())));
            o.push(("agent.public_ip", s(a.public_ip.clone())));
            o.push(("agent.host_id", s(a.host_id.clone())));
            let mut cfg = Config::load(Config::default(), cli.config.as_deref(), &overrides(&o))?;
            cfg.resolve(&hostname())?;
            init_tracing(&cfg.log);
            let agent = AgentNode::start(&cfg, &agent_identity(&cfg)?).await?;
            wait_for_signal().await;
            agent.shutdown().await;
            Ok(())
        }
        Cmd::Ctl(CtlCmd::Pki(cmd)) => pki(cmd),
        Cmd::Ctl(CtlCmd::Cluster(cmd)) => cluster_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::Vs(cmd)) => vs_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::PlayerTicket {
            title_id,
            title_region_id,
            secret_key,
            player_id,
            session_id,
            valid_secs,
        }) => {
            let exp = respawn_types::now_millis() / 1000 + valid_secs;
            println!(
                "{}",
                respawn_types::ticket::player::mint(
                    secret_key,
                    title_id,
                    title_region_id,
                    player_id,
                    session_id,
                    exp
                )
            );
            Ok(())
        }
        Cmd::Ctl(CtlCmd::Ticket {
            title_id,
            title_region_id,
            secret_id,
            secret_key,
            at,
        }) => {
            let ts = at.unwrap_or_else(|| respawn_types::now_millis() as i64 / 1000);
            println!(
                "{}",
                sign_ticket(secret_key, title_id, title_region_id, secret_id, ts)
            );
            Ok(())
        }
        Cmd::Bench(b) => {
            init_tracing(cli.log.as_deref().unwrap_or("warn"));
            bench::run(b.clone()).await
        }
        Cmd::Openapi => {
            println!("{}", respawn::edge::openapi_json());
            Ok(())
        }
        Cmd::SampleDs { .. } => bail!("unreachable: handled before the runtime starts"),
    }
}

/// The Python sample virtual server that `respawn dev` runs.
const PYTHON_VS: &str = include_str!("../../examples/python-vs/vs.py");

async fn dev(cli: &Cli, a: &DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the respawn executable")?;
    let ds_args = vec![
        "sample-ds".to_string(),
        "--session-secs".to_string(),
        a.session_secs.to_string(),
    ];
    let mut base = Config::dev(&exe.display().to_string(), ds_args);
    if let Some(n) = a.processes {
        base.fleets[0].processes_per_host = n;
    }

    let mut o = common(cli);
    o.push(("server.http_addr", s(a.server.http_addr)));
    o.push(("server.quic_addr", s(a.server.quic_addr)));
    let mut cfg = Config::load(base, cli.config.as_deref(), &overrides(&o))?;
    init_tracing(&cfg.log);
    // The sample virtual server (examples/python-vs), embedded so that
    // `respawn dev` runs it from any directory.
    let script_dir = std::path::absolute(cfg.data_dir.join("examples"))?;
    std::fs::create_dir_all(&script_dir)?;
    let script = script_dir.join("python-vs.py");
    std::fs::write(&script, PYTHON_VS).with_context(|| format!("writing {}", script.display()))?;
    cfg.virtual_servers.push(respawn_config::VirtualServerSpec {
        title_region: respawn_config::DEV_TITLE_REGION.into(),
        name: "vs-sample".into(),
        spec: serde_json::from_value(serde_json::json!({
            "source": {"process": {"command": "python3"}},
            "args": [script.display().to_string()],
            "listen_port": 8080,
            "max_instances": 3,
            "access_log": true,
        }))?,
    });
    let node = ServerNode::start(&cfg, &server_identity(&cfg)?).await?;
    cfg.agent.server_addr = node.quic_addr.to_string();
    let agent = AgentNode::start(&cfg, &agent_identity(&cfg)?).await?;
    print_credentials(&node, &cfg.data_dir)?;
    wait_for_signal().await;
    agent.shutdown().await;
    node.shutdown().await;
    Ok(())
}

async fn cluster_ctl(cmd: &ClusterCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (admin, req) = match cmd {
        ClusterCmd::Status(a) => (a, client.get(format!("{}/admin/cluster", a.server.trim_end_matches('/')))),
        ClusterCmd::AddLearner { admin, node_id, quic_addr, http_addr } => (
            admin,
            client
                .post(format!("{}/admin/cluster/add_learner", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id, "quic_addr": quic_addr, "http_addr": http_addr})),
        ),
        ClusterCmd::Promote { admin, node_id } => (
            admin,
            client
                .post(format!("{}/admin/cluster/promote", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id})),
        ),
        ClusterCmd::Remove { admin, node_id } => (
            admin,
            client
                .post(format!("{}/admin/cluster/remove", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id})),
        ),
    };
    let res = req.bearer_auth(&admin.token).send().await?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

async fn vs_ctl(cmd: &VsCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = |f: &VsFlags, rest: &str| {
        format!(
            "{}/admin/title_regions/{}/{rest}",
            f.admin.server.trim_end_matches('/'),
            f.title_region
        )
    };
    let (flags, req) = match cmd {
        VsCmd::List(f) => (f, client.get(url(f, "virtual_servers"))),
        VsCmd::Get { flags, name } => (
            flags,
            client.get(url(flags, &format!("virtual_servers/{name}"))),
        ),
        VsCmd::Put { flags, name, spec } => {
            let text = if spec.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(spec)
                    .with_context(|| format!("reading {}", spec.display()))?
            };
            let body: serde_json::Value =
                serde_json::from_str(&text).context("the spec file is not JSON")?;
            (
                flags,
                client
                    .put(url(flags, &format!("virtual_servers/{name}")))
                    .json(&body),
            )
        }
        VsCmd::Start { flags, name } => (
            flags,
            client.post(url(flags, &format!("virtual_servers/{name}/start"))),
        ),
        VsCmd::Stop { flags, name } => (
            flags,
            client.post(url(flags, &format!("virtual_servers/{name}/stop"))),
        ),
        VsCmd::Delete { flags, name } => (
            flags,
            client.delete(url(flags, &format!("virtual_servers/{name}"))),
        ),
        VsCmd::Logs {
            flags,
            name,
            version,
            contains,
            tail,
        } => {
            let mut q = vec![("tail", tail.to_string())];
            if let Some(v) = version {
                q.push(("version", v.to_string()));
            }
            if let Some(c) = contains {
                q.push(("contains", c.clone()));
            }
            let enc = |v: &str| -> String {
                v.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect()
            };
            let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
            (
                flags,
                client.get(format!(
                    "{}?{}",
                    url(flags, &format!("virtual_servers/{name}/logs")),
                    qs.join("&")
                )),
            )
        }
    };
    let res = req.bearer_auth(&flags.admin.token).send().await?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if let (VsCmd::Logs { .. }, true) = (cmd, status.is_success()) {
        for l in body["lines"].as_array().into_iter().flatten() {
            println!(
                "v{} {} {}: {}",
                l["version"],
                l["instance_id"].as_str().unwrap_or(""),
                l["stream"].as_str().unwrap_or(""),
                l["line"].as_str().unwrap_or("")
            );
        }
    } else if !text.is_empty() {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

fn pki(cmd: &PkiCmd) -> anyhow::Result<()> {
    use respawn_net::{CaBundle, PeerKind, Pki};
    match cmd {
        PkiCmd::Init { dir } => {
            let ca_dir = dir.join("ca");
            if ca_dir.join("ca.pem").exists() {
                bail!(
                    "{} already holds a CA; refusing to overwrite it",
                    ca_dir.display()
                );
            }
            Pki::generate_ca("respawn cluster CA")?.write_dir(&ca_dir)?;
            println!("CA written to {}", ca_dir.display());
        }
        PkiCmd::Issue {
            dir,
            node,
            agent,
            sans,
        } => {
            let ca = CaBundle::load_dir(&dir.join("ca"))?;
            let (kind, name, out) = match (node, agent) {
                (Some(id), _) => {
                    let name = respawn_net::transport::node_name(*id);
                    (PeerKind::Node, name.clone(), dir.join(name))
                }
                (None, Some(host)) => (
                    PeerKind::Agent,
                    host.clone(),
                    dir.join(format!("agent-{host}")),
                ),
                (None, None) => bail!("give --node ID or --agent HOST_ID"),
            };
            ca.issue(kind, &name, sans)?.write_dir(&out)?;
            println!("{kind} certificate '{name}' written to {}", out.display());
        }
    }
    Ok(())
}

/// This machine's host name (`HOSTNAME`, else /etc/hostname, else empty).
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The server's identity: from `server.pki_dir`, else the dev PKI.
fn server_identity(cfg: &Config) -> anyhow::Result<respawn_net::Identity> {
    Ok(match &cfg.server.pki_dir {
        Some(dir) => respawn_net::Identity::load_dir(dir)
            .with_context(|| format!("loading {}", dir.display()))?,
        None => respawn_net::ensure_dev_pki(&cfg.data_dir)?.0,
    })
}

/// The agent's identity: from `agent.pki_dir`, else the dev PKI.
fn agent_identity(cfg: &Config) -> anyhow::Result<respawn_net::Identity> {
    Ok(match &cfg.agent.pki_dir {
        Some(dir) => respawn_net::Identity::load_dir(dir)
            .with_context(|| format!("loading {}", dir.display()))?,
        None => respawn_net::ensure_dev_pki(&cfg.data_dir)?.1,
    })
}

/// Prints each title region's credentials and writes them to
/// `<data_dir>/credentials.env` for `source`-ing in a shell.
fn print_credentials(node: &ServerNode, data_dir: &Path) -> anyhow::Result<()> {
    let mut env = String::new();
    println!("\nRespawn is up. HTTP edge: http://{}", node.http_addr);
    for r in node.title_regions() {
        println!("  title region {}  (title {})", r.id, r.title_id);
        println!("    TitleId:       {}", r.title_id);
        println!("    TitleRegionId: {}", r.id);
        println!("    SecretId:      {}", r.secret_id);
        println!("    SecretKey:     {}", r.secret_key);
        env = format!(
            "export RESPAWN_EDGE=http://{}\nexport RESPAWN_TITLE_ID={}\nexport RESPAWN_TITLE_REGION_ID={}\nexport RESPAWN_SECRET_ID={}\nexport RESPAWN_SECRET_KEY={}\nexport RESPAWN_ADMIN_TOKEN={}\n",
            node.http_addr, r.title_id, r.id, r.secret_id, r.secret_key, node.admin_token
        );
    }
    println!(
        "  admin token (for /admin/* and `respawn ctl cluster`): {}",
        node.admin_token
    );
    let path = data_dir.join("credentials.env");
    std::fs::write(&path, env).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "  (also written to {}; `source` it, then `respawn ctl ticket` prints a ServerTicket)\n",
        path.display()
    );
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}
