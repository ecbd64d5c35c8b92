//! The one way supervised children are spawned, DS processes and VS process
//! instances alike: no standard input, output captured to files or pipes,
//! killed when their handle is dropped, SIGKILLed by the kernel when the
//! agent dies (`PR_SET_PDEATHSIG`), and recorded in a [`Ledger`] so that an
//! agent started after a crash stops what its predecessor left.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked the child exits,
//! not the process: a child forked from a thread that ends early (a
//! blocking-pool thread, a worker given up by `block_in_place`, a runtime
//! of a test) would be killed with it. So every child is forked from one
//! dedicated thread, [`on_spawner_thread`], that lives as long as the
//! process.

use std::fs::File;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::OnceLock;

use tokio::process::{Child, Command};

use crate::leftovers::{Ledger, Recorded};
use std::sync::Arc;

/// Where a child's standard output and error go.
#[derive(Debug)]
pub enum Output {
    /// Straight into these files.
    Files { stdout: File, stderr: File },
    /// Into pipes the caller reads from [`Child::stdout`] and
    /// [`Child::stderr`] (DS logs and VS instances' JSON-lines logs).
    Piped,
}

/// Sets up `cmd` as a supervised child writing to `output`, spawns it from
/// the spawner thread and records it in `ledger`. Must be called inside a
/// Tokio runtime (the child is registered with it).
pub fn spawn(
    mut cmd: Command,
    output: Output,
    ledger: &Arc<Ledger>,
) -> std::io::Result<(Child, Recorded)> {
    let (stdout, stderr) = match output {
        Output::Files { stdout, stderr } => (Stdio::from(stdout), Stdio::from(stderr)),
        Output::Piped => (Stdio::piped(), Stdio::piped()),
    };
    cmd.stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .kill_on_drop(true);
    die_with_parent(&mut cmd);
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| std::io::Error::other(format!("no Tokio runtime: {e}")))?;
    let child = on_spawner_thread(move || {
        let _entered = runtime.enter();
        cmd.spawn()
    })??;
    // `id` is `None` only once the child is reaped, which nothing did yet.
    let recorded = ledger.record(child.id().unwrap_or(0));
    Ok((child, recorded))
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the one thread children are forked from and returns what it
/// returned. That thread is started on first use and never exits (it
/// blocks on its queue), so the children it forks die with the process,
/// not with the caller's thread.
pub fn on_spawner_thread<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> std::io::Result<R> {
    static QUEUE: OnceLock<Option<std::sync::Mutex<mpsc::Sender<Job>>>> = OnceLock::new();
    let queue = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("respawn-child-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            })
            .ok()
            .map(|_| std::sync::Mutex::new(tx))
    });
    let Some(queue) = queue else {
        return Err(std::io::Error::other(
            "cannot start the child spawner thread",
        ));
    };
    let (done_tx, done_rx) = mpsc::sync_channel(1);
    let job: Job = Box::new(move || {
        let _ = done_tx.send(f());
    });
    queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send(job)
        .map_err(|_| std::io::Error::other("the child spawner thread is gone"))?;
    done_rx
        .recv()
        .map_err(|_| std::io::Error::other("the child spawner thread dropped a job"))
}

/// The `pre_exec` hook that makes a child get SIGKILL when the thread that
/// forked it ends (see the module documentation).
fn pdeathsig_hook() -> impl FnMut() -> std::io::Result<()> + Send + Sync + 'static {
    let parent_pid = std::process::id();
    move || {
        // SAFETY (of the calls below): this runs in the forked child before
        // exec, where only async-signal-safe functions may be called. It
        // calls prctl(2) and getppid(2), plain system calls, and builds
        // io::Errors from raw OS codes, which does not allocate. It touches
        // no locks and no memory shared with the parent.
        #[allow(unsafe_code)]
        let set = unsafe {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if set != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The parent died between fork and prctl: do not run orphaned.
        #[allow(unsafe_code)]
        let ppid = unsafe { libc::getppid() };
        if ppid as u32 != parent_pid {
            return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    }
}

/// Makes the child get SIGKILL when the agent dies, so no child outlives it.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    // SAFETY: the hook only makes async-signal-safe system calls (see
    // `pdeathsig_hook`).
    unsafe {
        cmd.pre_exec(pdeathsig_hook());
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
                let ledger = Arc::new(Ledger::disabled());
                let (child, _recorded) = spawn(cmd, Output::Piped, &ledger).unwrap();
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

    /// Forks `sleep 600` with the death signal set, from the current thread
    /// or from the spawner thread, in a thread that then ends; returns the
    /// child once that thread is gone.
    fn fork_from_a_thread_that_ends(via_spawner: bool) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            let tid = unsafe_free_gettid();
            let spawn = || {
                let mut cmd = std::process::Command::new("sleep");
                cmd.arg("600");
                #[allow(unsafe_code)]
                // SAFETY: the hook makes async-signal-safe calls only.
                unsafe {
                    cmd.pre_exec(pdeathsig_hook());
                }
                cmd.spawn().unwrap()
            };
            let child = if via_spawner {
                on_spawner_thread(spawn).unwrap()
            } else {
                spawn()
            };
            tx.send((tid, child)).unwrap();
        });
        let (tid, child) = rx.recv().unwrap();
        t.join().unwrap();
        // The thread is gone from the process once it has fully exited
        // (and its children got their death signal, if any).
        let deadline = Instant::now() + DEADLINE;
        while std::path::Path::new(&format!("/proc/self/task/{tid}")).exists() {
            assert!(Instant::now() < deadline, "thread {tid} never went away");
            std::thread::sleep(Duration::from_millis(5));
        }
        child
    }

    /// The calling thread's id, from /proc (no unsafe).
    fn unsafe_free_gettid() -> u32 {
        std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it() {
        use std::os::unix::process::ExitStatusExt;
        // The pitfall, shown: forked from a thread that ends, the child
        // gets SIGKILL with it.
        let mut direct = fork_from_a_thread_that_ends(false);
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(direct.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        assert_eq!(direct.wait().unwrap().signal(), Some(libc::SIGKILL));
        // Forked from the spawner thread, it lives on: our SIGTERM ends it.
        let mut via = fork_from_a_thread_that_ends(true);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(via.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(via.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
}
