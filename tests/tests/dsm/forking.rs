//! Forking (shared-memory) mode through the real agent: the Python sample
//! forking DS (`examples/python-ds/forking_ds.py`) is launched once, forks
//! its children, and only they host battle sessions.

use super::*;

fn forking_fleet(spec: &mut respawn_config::FleetSpec) {
    let f = &mut spec.definition;
    f.mode = respawn_types::fleet::ModeName::Forking;
    f.launch_path = "python3".into();
    f.args = vec![python_forking_ds_script().display().to_string()];
    // Each forked DS ends its session (ProcessEnding, exit) after 2 s.
    f.env = [("DS_SESSION_SECS".to_string(), "2".to_string())].into();
}

fn forked_ready(c: &Cluster) -> Vec<DsProcess> {
    c.read(|s| {
        s.placeable_processes(&FleetId::new_unchecked(DEV_FLEET))
            .cloned()
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forking_parent_forks_the_processes_that_alone_host_battle_sessions() -> anyhow::Result<()>
{
    let c = Cluster::start(Options {
        processes: 2,
        fleet: Some(forking_fleet),
        ..Options::default()
    })
    .await?;
    let kids = wait_for("two forked processes ready", T, || async {
        let v = forked_ready(&c);
        (v.len() == 2).then_some(v)
    })
    .await?;
    let parent = c
        .read(|s| {
            s.processes
                .values()
                .map(|r| &**r)
                .find(|p| p.role == ProcessRole::ForkingParent)
                .cloned()
        })
        .expect("a forking parent");
    assert_eq!(parent.status, ProcessStatus::Ready);
    assert_eq!(parent.port, None);
    for k in &kids {
        assert_eq!(
            k.role,
            ProcessRole::Forked {
                parent: parent.id.clone()
            }
        );
        assert_ne!(k.pid, parent.pid);
        assert!(k.port.is_some());
    }
    // Three sessions on a host of two: two at once, the third once a forked
    // process has ended its session and exited and the parent forked anew.
    let mut placements = Vec::new();
    for _ in 0..3 {
        placements.push(c.backend.place(DEV_FLEET, &["p"]).await?);
    }
    let mut hosts = Vec::new();
    for pl in &placements {
        c.backend.wait_status(pl, "FULFILLED", T).await?;
        hosts.push(c.process_of(pl).expect("process"));
    }
    let third = c.process(&hosts[2]).expect("third");
    assert!(matches!(third.role, ProcessRole::Forked { .. }));
    assert!(
        !kids.iter().any(|k| k.id == third.id),
        "a new forked process"
    );
    assert!(hosts[0] != hosts[1] && hosts[1] != hosts[2] && hosts[0] != hosts[2]);
    // The parent never held one; never more than two forked processes live.
    let (parent_now, live_forked) = c.read(|s| {
        (
            s.processes[&parent.id].clone(),
            s.forked_on_host(&parent.fleet_id, &parent.host_id),
        )
    });
    assert_eq!(parent_now.sessions_hosted, 0);
    assert_eq!(parent_now.status, ProcessStatus::Ready);
    assert!(live_forked <= 2, "{live_forked} forked processes live");
    // A forked process that exits is seen exiting (the agent polls its pid).
    wait_for("the first forked process exited", T, || async {
        (c.process(&hosts[0])?.status == ProcessStatus::Exited).then_some(())
    })
    .await?;
    Ok(())
}
