//! A Docker virtual server (the Rust sample) invoked through the edge.

use super::*;

/// The Rust sample built as a static binary into a `FROM scratch` image on
/// the local Docker engine (no registry), run by the docker driver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_vs_is_invoked_through_the_edge() -> anyhow::Result<()> {
    let ctx = tempfile::tempdir()?;
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rust-vs");
    // The package built as examples/rust-vs/build-image.sh does: a static
    // binary, in its own target directory (the static flags must not
    // rebuild the workspace's).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = std::process::Command::new(cargo)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--release", "--locked", "-p", "rust-vs"])
        .args(["--target", "x86_64-unknown-linux-gnu", "--target-dir"])
        .arg(ctx.path().join("target"))
        .arg("--manifest-path")
        .arg(src.join("Cargo.toml"))
        .output()?;
    assert!(
        out.status.success(),
        "cargo build -p rust-vs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::copy(
        ctx.path()
            .join("target/x86_64-unknown-linux-gnu/release/rust-vs"),
        ctx.path().join("rust-vs"),
    )?;
    std::fs::remove_dir_all(ctx.path().join("target"))?;
    std::fs::copy(src.join("Dockerfile"), ctx.path().join("Dockerfile"))?;

    let c = cluster().await?;
    c.put_vs(
        "vs-docker",
        json!({
            "source": {"docker_build": {"context_dir": ctx.path().display().to_string()}},
            "listen_port": 8080,
            "memory_mb": 64,
        }),
    )
    .await?;
    let inst = c.wait_vs_running("vs-docker", 1).await?;
    assert_eq!(inst[0].limits.as_deref(), Some("docker"));
    let a = c
        .backend
        .invoke(
            "POST",
            "vs-docker/hello",
            &[("Invoker", "client")],
            b"xy".to_vec(),
        )
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["invoker"], "backend");
    assert_eq!(v["vs"], "vs-docker");
    assert_eq!(v["body_len"], 2);
    let env = c
        .backend
        .invoke("GET", "vs-docker/env", &[], vec![])
        .await?
        .json();
    assert_eq!(
        env["PGOS_VS_Listen_Port"], "8080",
        "containers listen on the configured port"
    );
    // The container runs in Docker under the instance's name.
    let container = format!("respawn-{}", inst[0].id);
    let in_docker = |name: String| async move {
        let out = std::process::Command::new("docker")
            .args(["ps", "-a", "--filter", &format!("name=^/{name}$")])
            .args(["--format", "{{.Names}}"])
            .output()
            .expect("docker ps");
        assert!(out.status.success(), "docker ps failed");
        String::from_utf8_lossy(&out.stdout).trim() == name
    };
    assert!(
        in_docker(container.clone()).await,
        "{container} not in docker ps"
    );
    // Stop is accepted, the instance leaves the state and the container
    // leaves Docker.
    let a = c
        .admin("POST", &admin_path("virtual_servers/vs-docker/stop"), None)
        .await?;
    assert_eq!(a.status, 200, "{}", a.body);
    wait_for("the instance gone", T, || async {
        c.vs_instances("vs-docker").is_empty().then_some(())
    })
    .await?;
    wait_for("the container gone from Docker", T, || {
        let name = container.clone();
        async move { (!in_docker(name).await).then_some(()) }
    })
    .await?;
    Ok(())
}
