//! DS log upload through the real agent and edge: a process's stdout and
//! the file it named in ProcessReady's `log_paths`, collected when it ended,
//! listed and downloaded per battle session and per process.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logs_of_an_ended_ds_are_listed_and_downloaded_per_session_and_process(
) -> anyhow::Result<()> {
    let game_logs = tempfile::tempdir()?;
    let c = Cluster::start(Options {
        processes: 1,
        session_secs: 1,
        ds_args: vec![
            "--extra-log-dir".into(),
            game_logs.path().display().to_string(),
        ],
        ..Options::default()
    })
    .await?;
    c.wait_ready(1).await?;
    let pl = c.backend.place(DEV_FLEET, &["p"]).await?;
    let v = c.backend.wait_status(&pl, "FULFILLED", T).await?;
    let bs = v["battle_session_id"].as_str().unwrap().to_string();
    let p = c.process_of(&pl).expect("process");
    // The session ends after 1 s; the DS calls ProcessEnding and exits.
    wait_for("process exited", T, || async {
        (c.process(&p)?.status == ProcessStatus::Exited).then_some(())
    })
    .await?;
    // The game's own log file was overwritten after the process ended: the
    // collected copy keeps what the process wrote.
    let game_file = game_logs.path().join(format!("{p}.log"));
    let list = wait_for("collected log listed", T, || async {
        let a = c
            .admin(
                "GET",
                &format!("/admin/title_regions/tr-dev/battle_sessions/{bs}/logs"),
                None,
            )
            .await
            .ok()?;
        let v = a.json();
        let names: Vec<String> = v["files"]
            .as_array()?
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_owned))
            .collect();
        names
            .iter()
            .any(|n| n.starts_with("collected/"))
            .then_some(v)
    })
    .await?;
    std::fs::write(&game_file, "overwritten by the next game")?;
    assert_eq!(list["process_id"], p.as_str());
    assert_eq!(list["battle_session_id"], bs.as_str());
    assert_eq!(list["status"], "EXITED");
    let names: Vec<&str> = list["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"stdout.log"), "{names:?}");
    let collected = format!("collected/0-{p}.log");
    assert!(names.contains(&collected.as_str()), "{names:?}");
    // Per process: the same files; downloads of each.
    let by_process = c
        .admin(
            "GET",
            &format!("/admin/title_regions/tr-dev/processes/{p}/logs"),
            None,
        )
        .await?;
    assert_eq!(by_process.status, 200);
    assert_eq!(by_process.json()["files"], list["files"]);
    let file = c
        .admin(
            "GET",
            &format!("/admin/title_regions/tr-dev/processes/{p}/logs/{collected}"),
            None,
        )
        .await?;
    assert_eq!(file.status, 200);
    assert_eq!(file.body, format!("sample-ds {p} started\n"));
    let stdout = c
        .admin(
            "GET",
            &format!("/admin/title_regions/tr-dev/processes/{p}/logs/stdout.log"),
            None,
        )
        .await?;
    assert_eq!(stdout.status, 200);
    assert!(stdout.body.contains("process ready"), "{}", stdout.body);
    // Bad input: a name leaving the directory, an unknown process or file.
    let bad = c
        .admin(
            "GET",
            &format!("/admin/title_regions/tr-dev/processes/{p}/logs/collected/..%2F..%2Fx"),
            None,
        )
        .await?;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let missing = c
        .admin(
            "GET",
            &format!("/admin/title_regions/tr-dev/processes/{p}/logs/nope.log"),
            None,
        )
        .await?;
    assert_eq!(missing.status, 404, "{}", missing.body);
    let unknown = c
        .admin(
            "GET",
            "/admin/title_regions/tr-dev/processes/proc-nope/logs",
            None,
        )
        .await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "not_found");
    Ok(())
}
