//! DS output under the agent: rotated by size, and swept once the process
//! has ended.

use super::*;
use crate::LogLimits;
use respawn_runtime::retention::Retention;
use respawn_runtime::rotate::{rotated_path, Rotation};

fn size(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[tokio::test]
async fn ds_output_is_rotated_and_the_logs_of_ended_processes_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let link = Arc::new(FakeLink::default());
    let mut config = AgentConfig::new(
        HostId::new_unchecked("host-test"),
        FleetId::new_unchecked("fleet-test"),
        "127.0.0.1",
        dir.path().join("data"),
    );
    config.logs = LogLimits {
        rotation: Rotation {
            max_file_bytes: 4096,
            rotated_files: 1,
        },
        // Ended logs go at the first sweep after the process is gone.
        retention: Retention {
            max_age: Duration::ZERO,
            max_total_bytes: u64::MAX,
        },
        sweep_interval: Duration::from_millis(100),
    };
    let agent = Agent::start(config, link.clone()).await.unwrap();
    let script =
        "i=0; while [ $i -lt 3000 ]; do echo \"line $i\"; i=$((i+1)); done; exec sleep 600";
    agent.apply_fleet(fleet(sh_runtime(script), 5_000)).unwrap();
    let h = Harness { agent, link, dir };
    let id = h
        .wait_log("ProcessStarted", |log| {
            log.iter().find_map(|m| match m {
                AgentToServer::ProcessStarted { process_id, .. } => Some(process_id.clone()),
                _ => None,
            })
        })
        .await;
    let logs = h.dir.path().join("data").join("logs").join(id.as_str());
    let stdout = logs.join("stdout.log");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !std::fs::read_to_string(&stdout)
        .unwrap_or_default()
        .ends_with("line 2999\n")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the DS output never reached stdout.log"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ~30 KB written: the live file and one rotated file, each within the cap.
    assert!(size(&stdout) <= 4096, "{}", size(&stdout));
    assert!(size(&rotated_path(&stdout, 1)) > 0);
    assert!(size(&rotated_path(&stdout, 1)) <= 4096);
    assert!(!rotated_path(&stdout, 2).exists());
    // Alive (sweeps run every 100 ms, the age limit is zero): still there.
    assert!(stdout.exists(), "a live process's log was swept");

    // Ended: swept; its successor's log stays.
    let pid = h.agent.live_processes()[0].pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    h.wait_exited(&id).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while logs.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the logs of an ended process were kept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.agent.shutdown().await;
}
