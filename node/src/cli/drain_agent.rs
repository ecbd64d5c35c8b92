//! `respawn ctl drain-agent`: drain a running `respawn agent` on this
//! machine and wait until it has exited — the preStop hook of the agents in
//! `deploy/k8s/agents.yaml` (the image has no shell).

use anyhow::Context;
use nix::errno::Errno;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::time::Duration;

/// How often the agent's process is checked for.
const POLL: Duration = Duration::from_millis(500);

/// Sends SIGTERM to the agent's process `pid` (it then drains its host,
/// see docs/operations.md) and returns once that process is gone.
pub async fn drain_agent(pid: i32) -> anyhow::Result<()> {
    let pid = Pid::from_raw(pid);
    match kill(pid, Signal::SIGTERM) {
        Err(Errno::ESRCH) => {
            println!("no process {pid}: nothing to drain");
            return Ok(());
        }
        r => r.with_context(|| format!("cannot signal process {pid}"))?,
    }
    println!("asked the agent (pid {pid}) to drain; waiting until it exits");
    // Signal 0 only checks that the process still exists.
    while kill(pid, None).is_ok() {
        tokio::time::sleep(POLL).await;
    }
    println!("the agent has exited");
    Ok(())
}
