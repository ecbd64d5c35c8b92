//! The Docker driver against the local engine (no registry, nothing pulled).
//!
//! The test image is `FROM scratch` with a static binary compiled here from
//! `tests/fixtures/vs_server.rs`. Each test builds its own image (a unique file in
//! the context keeps images distinct) and removes what it created.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bollard::query_parameters::{BuildImageOptions, RemoveContainerOptions, RemoveImageOptions};
use bollard::Docker;
use common::{http_get, spec, unique, Harness};
use futures::StreamExt;
use respawn_runtime::{AbnormalReason, InstanceState, LogQuery, RuntimeConfig, Source, VsRuntime};

const T: Duration = Duration::from_secs(60);
const SOCKET: &str = "/var/run/docker.sock";

/// The fixture server, compiled once per test binary (to a temporary name, then
/// renamed into place).
fn fixture_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("respawn-rt-fixture");
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!("vs.{}.tmp", std::process::id()));
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vs_server.rs");
        let st = std::process::Command::new("rustc")
            .args(["-O", "-C", "target-feature=+crt-static"])
            .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
            .arg(&tmp)
            .arg(&src)
            .status()
            .expect("rustc runs");
        assert!(st.success(), "compiling the fixture failed");
        let out = dir.join("vs");
        std::fs::rename(&tmp, &out).unwrap();
        out
    })
}

/// A build context: Dockerfile, the fixture binary, and a file unique to `tag`.
/// The unique file is the first layer, so no two images built here share a
/// layer: with a shared first layer, one test's forced image removal could
/// delete the parent another test's build was exporting onto ("unknown
/// parent image ID"), as tests in this binary build at the same time.
fn context(dir: &Path, tag: &str) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(fixture_binary(), ctx.join("vs")).unwrap();
    std::fs::write(ctx.join("id.txt"), tag).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY id.txt /id.txt\nCOPY vs /vs\nENTRYPOINT [\"/vs\"]\n",
    )
    .unwrap();
    ctx
}

async fn docker() -> Docker {
    assert!(
        Path::new(SOCKET).exists(),
        "these tests need the local Docker engine at {SOCKET}"
    );
    Docker::connect_with_unix(SOCKET, 120, bollard::API_DEFAULT_VERSION)
        .unwrap()
        .negotiate_version()
        .await
        .unwrap()
}

/// Builds `ctx` as `tag` through the engine directly (the test's own setup).
async fn build_image(ctx: &Path, tag: &str) {
    let out = std::process::Command::new("tar")
        .arg("-C")
        .arg(ctx)
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(out.status.success());
    let d = docker().await;
    let opts = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.into()),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut s = d.build_image(opts, None, Some(bollard::body_full(out.stdout.into())));
    while let Some(item) = s.next().await {
        item.expect("test image builds");
    }
}

async fn image_exists(reference: &str) -> bool {
    docker().await.inspect_image(reference).await.is_ok()
}

async fn container_exists(name: &str) -> bool {
    docker().await.inspect_container(name, None).await.is_ok()
}

/// Removes images and containers when the test ends, even by a panic.
struct Cleanup {
    images: Vec<String>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (images, containers) = (self.images.clone(), self.containers.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let d = docker().await;
                for c in containers {
                    let _ = d
                        .remove_container(
                            &c,
                            Some(RemoveContainerOptions {
                                force: true,
                                ..Default::default()
                            }),
                        )
                        .await;
                }
                for i in images {
                    let _ = d
                        .remove_image(
                            &i,
                            Some(RemoveImageOptions {
                                force: true,
                                ..Default::default()
                            }),
                            None,
                        )
                        .await;
                }
            });
        })
        .join();
    }
}

/// Build a context dir, run it, serve through the published port, crash, get
/// relaunched, stop: the container is gone.
#[tokio::test]
async fn docker_build_serves_crashes_relaunches_and_stops() {
    let mut h = Harness::new(T);
    let vs = unique("vs-build").to_lowercase();
    let tag = format!("respawn-vs-{vs}:v1");
    let _cleanup = Cleanup {
        images: vec![tag.clone()],
        containers: vec!["respawn-dbuild".into()],
    };
    let ctx = context(h.dir.path(), &tag);
    let mut s = spec("dbuild", &vs, Source::DockerBuild { context_dir: ctx });
    s.env.insert("MY_VAR".into(), "from the spec".into());
    h.rt.start(s).await.unwrap();
    let (port, limits) = h.running("dbuild", T).await;
    assert_eq!(limits.mechanism, "docker");
    assert!(limits.enforced);
    assert!(image_exists(&tag).await, "built image is tagged {tag}");
    assert!(container_exists("respawn-dbuild").await);

    assert_eq!(http_get(port, "/").await, "hello from vs");
    assert_eq!(http_get(port, "/env/MY_VAR").await, "from the spec");
    // Containers get the configured port.
    assert_eq!(http_get(port, "/env/PGOS_VS_Listen_Port").await, "8080");
    let u =
        h.rt.usage("dbuild")
            .await
            .expect("usage of a running container");
    assert!(u.memory_bytes > 0, "{u:?}");

    // Container logs are captured.
    let rt = h.rt.clone();
    let q = LogQuery {
        title_region: "tr_test".into(),
        vs_name: vs.clone(),
        version: Some(1),
        since_ms: None,
        until_ms: None,
        contains: Some("request /env/MY_VAR".into()),
        tail: None,
        limit: 10,
    };
    common::eventually("the container's request log is stored", T, || {
        rt.query_logs(&q).unwrap().len() == 1
    })
    .await;
    let started = rt
        .query_logs(&LogQuery {
            contains: Some("vs fixture listening".into()),
            ..q.clone()
        })
        .unwrap();
    assert_eq!(started[0].stream, "stderr");

    // Crash: exit status 3, then relaunched.
    let _ = common::try_get(port, "/exit/3").await;
    let detail = h.abnormal("dbuild", AbnormalReason::Crashed, T).await;
    assert!(detail.contains("exited with status 3"), "{detail}");
    h.wait_for("dbuild", "Deploying", T, |s| *s == InstanceState::Deploying)
        .await;
    let (port2, _) = h.running("dbuild", T).await;
    assert_eq!(http_get(port2, "/").await, "hello from vs");

    h.rt.stop("dbuild").await.unwrap();
    assert_eq!(
        h.state_names("dbuild"),
        [
            "deploying",
            "running",
            "crashed",
            "deploying",
            "running",
            "stopped"
        ]
    );
    assert!(
        !container_exists("respawn-dbuild").await,
        "stop removes the container"
    );
}

/// A `docker save` archive is loaded and run; a garbage archive is ImageUnusable.
#[tokio::test]
async fn docker_archive_is_loaded_and_run() {
    let mut h = Harness::new(T);
    let tag = format!("{}:v1", unique("respawn-test-archive"));
    let _cleanup = Cleanup {
        images: vec![tag.clone()],
        containers: vec!["respawn-darchive".into(), "respawn-dbadarchive".into()],
    };
    build_image(&context(h.dir.path(), &tag), &tag).await;
    // Save it, then remove it so that only the archive has it.
    let archive = h.dir.path().join("image.tar");
    {
        let d = docker().await;
        let mut s = d.export_image(&tag);
        let mut bytes = Vec::new();
        while let Some(chunk) = s.next().await {
            bytes.extend_from_slice(&chunk.unwrap());
        }
        std::fs::write(&archive, bytes).unwrap();
        d.remove_image(&tag, None::<RemoveImageOptions>, None)
            .await
            .unwrap();
    }
    assert!(!image_exists(&tag).await);

    h.rt.start(spec(
        "darchive",
        "vs-archive",
        Source::DockerArchive { path: archive },
    ))
    .await
    .unwrap();
    let (port, _) = h.running("darchive", T).await;
    assert_eq!(http_get(port, "/").await, "hello from vs");
    assert!(
        image_exists(&tag).await,
        "the archive's image is loaded under its tag"
    );

    let bad = h.dir.path().join("bad.tar");
    std::fs::write(&bad, b"this is not a tar archive").unwrap();
    h.rt.start(spec(
        "dbadarchive",
        "vs-badarchive",
        Source::DockerArchive { path: bad },
    ))
    .await
    .unwrap();
    let detail = h
        .abnormal("dbadarchive", AbnormalReason::ImageUnusable, T)
        .await;
    assert!(detail.contains("cannot be loaded"), "{detail}");

    h.rt.shutdown().await;
    assert!(!container_exists("respawn-darchive").await);
}

/// An image present in the engine runs; an absent one is ImageUnusable (never
/// pulled); listening checks work inside containers.
#[tokio::test]
async fn docker_image_present_absent_and_listen_checks() {
    let mut h = Harness::new(T);
    let tag = format!("{}:v1", unique("respawn-test-image"));
    let _cleanup = Cleanup {
        images: vec![tag.clone()],
        containers: ["dimage", "dabsent", "dloop", "dmismatch", "dbuildless"]
            .iter()
            .map(|c| format!("respawn-{c}"))
            .collect(),
    };
    build_image(&context(h.dir.path(), &tag), &tag).await;
    let image = || Source::DockerImage { image: tag.clone() };

    h.rt.start(spec("dimage", "vs-image", image()))
        .await
        .unwrap();
    let absent = "respawn-absent-image:does-not-exist";
    h.rt.start(spec(
        "dabsent",
        "vs-absent",
        Source::DockerImage {
            image: absent.into(),
        },
    ))
    .await
    .unwrap();
    let mut lo = spec("dloop", "vs-loop", image());
    lo.env.insert("VS_BIND".into(), "127.0.0.1".into());
    h.rt.start(lo).await.unwrap();
    let mut mm = spec("dmismatch", "vs-mismatch", image());
    mm.env.insert("VS_PORT".into(), "9090".into());
    h.rt.start(mm).await.unwrap();
    let nodockerfile = h.dir.path().join("empty-context");
    std::fs::create_dir_all(&nodockerfile).unwrap();
    h.rt.start(spec(
        "dbuildless",
        "vs-buildless",
        Source::DockerBuild {
            context_dir: nodockerfile,
        },
    ))
    .await
    .unwrap();

    let (port, _) = h.running("dimage", T).await;
    assert_eq!(http_get(port, "/").await, "hello from vs");

    let detail = h
        .abnormal("dabsent", AbnormalReason::ImageUnusable, T)
        .await;
    assert!(
        detail.contains(absent) && detail.contains("not present"),
        "{detail}"
    );
    assert!(!image_exists(absent).await, "nothing was pulled");

    let detail = h
        .abnormal("dloop", AbnormalReason::ListeningOnLoopback, T)
        .await;
    assert!(detail.contains("listens on 127.0.0.1:8080"), "{detail}");

    let detail = h
        .abnormal("dmismatch", AbnormalReason::PortMismatch, T)
        .await;
    assert!(
        detail.contains("9090") && detail.contains("8080"),
        "{detail}"
    );

    let detail = h
        .abnormal("dbuildless", AbnormalReason::ImageUnusable, T)
        .await;
    assert!(detail.contains("no Dockerfile"), "{detail}");

    h.rt.shutdown().await;
    for c in ["dimage", "dloop", "dmismatch"] {
        assert!(!container_exists(&format!("respawn-{c}")).await);
    }
}

/// Allocating past the container's memory limit: OutOfMemory.
#[tokio::test]
async fn docker_memory_limit_is_out_of_memory() {
    let mut h = Harness::new(T);
    let tag = format!("{}:v1", unique("respawn-test-oom"));
    let _cleanup = Cleanup {
        images: vec![tag.clone()],
        containers: vec!["respawn-doom".into()],
    };
    build_image(&context(h.dir.path(), &tag), &tag).await;
    let mut s = spec("doom", "vs-oom", Source::DockerImage { image: tag.clone() });
    s.memory_mb = 32;
    h.rt.start(s).await.unwrap();
    let (port, _) = h.running("doom", T).await;
    let _ = common::try_get(port, "/alloc/200").await;
    let detail = h.abnormal("doom", AbnormalReason::OutOfMemory, T).await;
    assert!(detail.contains("32 MiB"), "{detail}");
    h.rt.stop("doom").await.unwrap();
}

/// A new runtime with the same agent id removes the containers a previous one left.
#[tokio::test]
async fn stale_containers_of_the_agent_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let agent = unique("stale-agent");
    let tag = format!("{}:v1", unique("respawn-test-stale"));
    let _cleanup = Cleanup {
        images: vec![tag.clone()],
        containers: vec!["respawn-dstale".into()],
    };
    build_image(&context(dir.path(), &tag), &tag).await;

    // A first agent run in its own Tokio runtime, which then dies abruptly.
    let (data, ag, image) = (dir.path().to_path_buf(), agent.clone(), tag.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (r, mut rx) = VsRuntime::new(RuntimeConfig::new(data, ag));
            r.start(spec("dstale", "vs-stale", Source::DockerImage { image }))
                .await
                .unwrap();
            let deadline = tokio::time::Instant::now() + T;
            loop {
                let ev = tokio::time::timeout_at(deadline, rx.recv())
                    .await
                    .expect("the first run reaches Running")
                    .unwrap();
                if matches!(ev.state, InstanceState::Running { .. }) {
                    break;
                }
            }
        });
        // Dropping the Tokio runtime here abandons the container.
    })
    .join()
    .unwrap();
    assert!(container_exists("respawn-dstale").await);

    let (_rt, _rx) = VsRuntime::new(RuntimeConfig::new(dir.path(), agent.clone()));
    let deadline = tokio::time::Instant::now() + T;
    while container_exists("respawn-dstale").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stale container not removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
