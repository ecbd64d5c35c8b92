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
