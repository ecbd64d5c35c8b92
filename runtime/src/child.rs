//! The one way supervised children are spawned, DS processes and VS process
//! instances alike: no standard input, output captured to files or pipes,
//! killed when their handle is dropped, and SIGKILLed by the kernel when the
//! agent dies (`PR_SET_PDEATHSIG`), so no child outlives the agent.

use std::fs::File;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// Where a child's standard output and error go.
#[derive(Debug)]
pub enum Output {
    /// Straight into these files (DS processes: `stdout.log`, `stderr.log`).
    Files { stdout: File, stderr: File },
    /// Into pipes the caller reads from [`Child::stdout`] and
    /// [`Child::stderr`] (VS instances: JSON-lines logs).
    Piped,
}

/// Sets up `cmd` as a supervised child writing to `output` and spawns it.
pub fn spawn(cmd: &mut Command, output: Output) -> std::io::Result<Child> {
    let (stdout, stderr) = match output {
        Output::Files { stdout, stderr } => (Stdio::from(stdout), Stdio::from(stderr)),
        Output::Piped => (Stdio::piped(), Stdio::piped()),
    };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    die_with_parent(cmd);
    cmd.spawn()
}

/// Makes the child get SIGKILL when the agent dies, so no child outlives it.
///
/// The signal is tied to the thread that forks; children are spawned from
/// Tokio runtime threads, which live as long as the runtime (the agent).
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    let parent_pid = std::process::id();
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe functions may be called. It calls prctl(2) and
    // getppid(2), plain system calls, and builds io::Errors from raw OS
    // codes, which does not allocate. It touches no locks and no memory
    // shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent died between fork and prctl: do not run orphaned.
            if libc::getppid() as u32 != parent_pid {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::time::{Duration, Instant};

    /// Set when this test binary runs as the stand-in agent of the test below.
    const STAND_IN_AGENT: &str = "RESPAWN_CHILD_TEST_STAND_IN_AGENT";
    const DEADLINE: Duration = Duration::from_secs(30);

    /// Whether `pid` is a live (not zombie) process.
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                !state.starts_with('Z')
            }
            Err(_) => false,
        }
    }

    #[test]
    fn a_child_dies_when_the_agent_is_killed() {
        if std::env::var_os(STAND_IN_AGENT).is_some() {
            // The stand-in agent: spawn a child, tell its pid, wait to be killed.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut cmd = Command::new("sleep");
                cmd.arg("600");
                let child = spawn(&mut cmd, Output::Piped).unwrap();
                println!("child-pid {}", child.id().unwrap());
                std::future::pending::<()>().await;
            });
            return;
        }
        let mut agent = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "child::tests::a_child_dies_when_the_agent_is_killed",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(STAND_IN_AGENT, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(agent.stdout.take().unwrap());
        let pid: u32 = out
            .lines()
            .map_while(Result::ok)
            .find_map(|l| {
                // libtest may print "test <name> ... " first on the same line.
                l.split_once("child-pid ")
                    .map(|(_, p)| p.trim().parse().unwrap())
            })
            .expect("the stand-in agent names its child");
        assert!(alive(pid), "the child runs while the agent does");
        agent.kill().unwrap(); // SIGKILL: the agent cannot clean up.
        agent.wait().unwrap();
        let deadline = Instant::now() + DEADLINE;
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "child {pid} outlived the agent it was spawned by"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
