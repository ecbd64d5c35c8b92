//! The process driver: a VS as a plain host process (with its descendants).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::task::JoinHandle;

use crate::cgroup::Group;
use crate::child::{self, Output};
use crate::exit::ExitInfo;
use crate::leftovers::{Ledger, Recorded};
use crate::logs::{pump, LogFile};
use crate::spec::{InstanceSpec, LISTEN_PORT_ENV};

/// Variables a process inherits from the agent (when set there and not in the spec).
const INHERITED_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

/// How long `stop` waits after SIGTERM before SIGKILL.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(5);

/// A launched process instance.
#[derive(Debug)]
pub(crate) struct Proc {
    child: tokio::process::Child,
    /// Its ledger record, removed when the instance is dropped.
    _recorded: Recorded,
    pub pid: i32,
    pub group: Option<Arc<Group>>,
    /// False when the process could not be moved into its cgroup.
    pub in_group: bool,
    pumps: Vec<JoinHandle<()>>,
    oom_baseline: Option<u64>,
    fail_baseline: Option<u64>,
    exited: bool,
}

/// Resolves a command the way the spec documents: a relative path with a `/` is
/// relative to the agent's working directory, a bare name is looked up in `PATH`.
fn resolve(command: &str) -> PathBuf {
    let p = Path::new(command);
    if command.contains('/') && p.is_relative() {
        if let Ok(cwd) = std::env::current_dir() {
            return cwd.join(p);
        }
    }
    p.to_path_buf()
}

/// Spawns the instance: `command args`, in `cwd`, with `port` as
/// `PGOS_VS_Listen_Port`, output pumped into `log`, moved into `group` at once.
pub(crate) fn launch(
    spec: &InstanceSpec,
    command: &str,
    port: u16,
    cwd: &Path,
    log: &Arc<LogFile>,
    group: Option<Arc<Group>>,
    ledger: &Arc<Ledger>,
) -> Result<Proc, String> {
    let mut cmd = tokio::process::Command::new(resolve(command));
    cmd.args(&spec.args)
        .env_clear()
        .current_dir(cwd)
        .process_group(0);
    for k in INHERITED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&spec.env).env(LISTEN_PORT_ENV, port.to_string());
    let (mut child, recorded) = child::spawn(cmd, Output::Piped, ledger)
        .map_err(|e| format!("cannot start `{command}`: {e}"))?;
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    tracing::debug!(instance = %spec.instance_id, pid, "instance process spawned");
    let mut in_group = false;
    let (mut oom_baseline, mut fail_baseline) = (None, None);
    if let Some(g) = &group {
        oom_baseline = g.oom_kills();
        fail_baseline = g.failcnt();
        match g.add(pid) {
            Ok(()) => in_group = true,
            Err(e) => {
                tracing::warn!(instance = %spec.instance_id, "cannot move pid {pid} into its cgroup: {e}")
            }
        }
    }
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, log.clone(), "stdout")));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, log.clone(), "stderr")));
    }
    Ok(Proc {
        child,
        _recorded: recorded,
        pid,
        group,
        in_group,
        pumps,
        oom_baseline,
        fail_baseline,
        exited: false,
    })
}

impl Proc {
    fn signal(&self, sig: Signal) {
        if self.pid > 0 {
            let _ = killpg(Pid::from_raw(self.pid), sig);
        }
        if let Some(g) = self.group.as_ref().filter(|_| self.in_group) {
            g.signal_all(sig);
        }
    }

    /// Waits for the main process to exit (cancel-safe), then kills what is left of
    /// the instance and tells how it ended.
    pub async fn wait(&mut self) -> ExitInfo {
        let status = self.child.wait().await;
        self.exited = true;
        self.signal(Signal::SIGKILL);
        let oom = match (&self.group, self.in_group) {
            (Some(g), true) => match (self.oom_baseline, g.oom_kills()) {
                (Some(before), Some(now)) => now > before,
                _ => {
                    let killed = matches!(&status, Ok(s) if s.signal() == Some(libc_sigkill()));
                    killed && g.failcnt().unwrap_or(0) > self.fail_baseline.unwrap_or(0)
                }
            },
            _ => false,
        };
        match status {
            _ if oom => ExitInfo::OutOfMemory,
            Ok(s) => match (s.code(), s.signal()) {
                (Some(c), _) => ExitInfo::Code(i64::from(c)),
                (None, Some(sig)) => ExitInfo::Signal(sig),
                _ => ExitInfo::Other(format!("ended ({s})")),
            },
            Err(e) => ExitInfo::Other(format!("could not be waited for: {e}")),
        }
    }

    /// Lets the output pumps drain (they end when every writer is gone).
    pub async fn finish_logs(&mut self) {
        for p in self.pumps.drain(..) {
            if tokio::time::timeout(Duration::from_secs(2), p)
                .await
                .is_err()
            {
                tracing::debug!("an output pump outlived its process");
            }
        }
    }

    /// Stops the instance: SIGTERM to its process group (and cgroup), SIGKILL after
    /// [`STOP_GRACE`], then SIGKILL to whatever is left.
    pub async fn stop(mut self) {
        if !self.exited {
            self.signal(Signal::SIGTERM);
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_err()
            {
                self.signal(Signal::SIGKILL);
                let _ = self.child.wait().await;
            }
        }
        self.signal(Signal::SIGKILL);
        self.finish_logs().await;
    }
}

fn libc_sigkill() -> i32 {
    Signal::SIGKILL as i32
}
