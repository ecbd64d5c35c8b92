//! `respawn`: one binary for every role. See `respawn --help`.

mod bench;
mod cli;

use anyhow::bail;
use clap::Parser;
use cli::launch::{
    agent_identity, common, hostname, init_tracing, overrides, print_credentials, s,
    server_identity, wait_for_signal, warn_unknown_env,
};
use cli::{ctl, dev, pki, Cli, Cmd, CtlCmd};
use respawn::{AgentNode, ServerNode};
use respawn_config::Config;
use respawn_types::ticket::server::sign_ticket;

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
        Cmd::Dev(a) => dev::dev(&cli, a).await,
        Cmd::Server(a) => {
            let mut o = common(&cli);
            o.extend(a.server.overrides());
            o.push((
                "server.node_id",
                a.node_id.map(|n| toml::Value::Integer(n as i64)),
            ));
            let mut cfg = Config::load(Config::default(), cli.config.as_deref(), &overrides(&o))?;
            cfg.resolve(&hostname())?;
            init_tracing(&cfg.log);
            warn_unknown_env();
            let node = ServerNode::start(&cfg, &server_identity(&cfg)?).await?;
            print_credentials(&node, &cfg)?;
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
            warn_unknown_env();
            let agent = AgentNode::start(&cfg, &agent_identity(&cfg)?).await?;
            wait_for_signal().await;
            cli::launch::drain_then_exit(&agent, cfg.agent.drain_deadline_secs).await;
            agent.shutdown().await;
            Ok(())
        }
        Cmd::Ctl(CtlCmd::Pki(cmd)) => pki::pki(cmd),
        Cmd::Ctl(CtlCmd::Cluster(cmd)) => ctl::cluster_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::Vs(cmd)) => ctl::vs_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::Fleet(cmd)) => cli::fleet_ctl::fleet_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::Host(cmd)) => cli::fleet_ctl::host_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::DrainAgent { pid }) => cli::drain_agent::drain_agent(*pid).await,
        Cmd::Ctl(CtlCmd::DsLogs(cmd)) => cli::ds_logs_ctl::ds_logs_ctl(cmd).await,
        Cmd::Ctl(CtlCmd::Storage(cmd)) => cli::storage_ctl::storage_ctl(cmd).await,
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
