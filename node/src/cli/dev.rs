//! `respawn dev`: a single-node server and an agent in one process, with a
//! dev title region, a fleet of sample DS processes and the sample Python
//! virtual server.

use super::launch::{
    agent_identity, common, init_tracing, overrides, print_credentials, server_identity,
    wait_for_signal, warn_unknown_env,
};
use super::{Cli, DevArgs};
use anyhow::Context;
use respawn::{AgentNode, ServerNode};
use respawn_config::Config;

/// The Python sample virtual server that `respawn dev` runs.
const PYTHON_VS: &str = include_str!("../../../examples/python-vs/vs.py");

pub async fn dev(cli: &Cli, a: &DevArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the respawn executable")?;
    let ds_args = vec![
        "sample-ds".to_string(),
        "--session-secs".to_string(),
        a.session_secs.to_string(),
    ];
    let mut base = Config::dev(&exe.display().to_string(), ds_args);
    if let Some(n) = a.processes {
        base.fleets[0].definition.processes_per_host = n;
    }

    let mut o = common(cli);
    o.extend(a.server.overrides());
    // A file adds its title regions and fleets to the dev ones (docs/operations.md).
    let mut cfg = Config::load_dev(base, cli.config.as_deref(), &overrides(&o))?;
    init_tracing(&cfg.log);
    warn_unknown_env();
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
    print_credentials(&node, &cfg)?;
    wait_for_signal().await;
    agent.shutdown().await;
    node.shutdown().await;
    Ok(())
}
