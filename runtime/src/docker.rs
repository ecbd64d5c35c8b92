//! The Docker driver: images (present, `docker save` archives, build contexts) and
//! containers, through the local engine's unix socket.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    BuildImageOptions, CreateContainerOptions, ImportImageOptions, ListContainersOptions,
    LogsOptions, RemoveContainerOptions, StatsOptions, StopContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::exit::{ExitInfo, LaunchError};
use crate::logs::{LineSplitter, LogFile};
use crate::spec::{
    now_ms, AbnormalReason, InstanceSpec, Limits, Source, CONTAINER_VOLUME_PATH, LISTEN_PORT_ENV,
};

/// The engine's socket when none is configured.
pub(crate) const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Label keys on this runtime's containers.
pub(crate) const LABEL_AGENT: &str = "respawn.agent";
pub(crate) const LABEL_INSTANCE: &str = "respawn.instance";

/// Seconds Docker waits after SIGTERM before SIGKILL when stopping.
const STOP_TIMEOUT_S: i32 = 5;

/// Request timeout (time to the response headers; streams may last longer).
const REQUEST_TIMEOUT_S: u64 = 600;

type ImageKey = (String, String, u64);

/// The local Docker engine, connected lazily, with the images prepared so far.
pub(crate) struct DockerHost {
    socket: PathBuf,
    agent_id: String,
    client: tokio::sync::OnceCell<Docker>,
    images: Mutex<HashMap<ImageKey, Arc<tokio::sync::Mutex<Option<String>>>>>,
}

fn unusable(detail: impl Into<String>) -> LaunchError {
    LaunchError {
        reason: AbnormalReason::ImageUnusable,
        detail: detail.into(),
    }
}

fn launch_failed(detail: impl Into<String>) -> LaunchError {
    LaunchError {
        reason: AbnormalReason::LaunchFailed,
        detail: detail.into(),
    }
}

/// The engine's own message for an error, without bollard's decoration.
pub(crate) fn engine_message(e: &DockerError) -> String {
    match e {
        DockerError::DockerResponseServerError { message, .. } => message.trim().to_string(),
        DockerError::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

fn is_not_found(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// `respawn-vs-<vs>:v<version>`, lowercased, with characters Docker refuses in a
/// repository name replaced by `-`.
pub(crate) fn build_tag(vs_name: &str, version: u64) -> String {
    let mut repo: String = vs_name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    repo = repo.trim_matches('-').to_string();
    if repo.is_empty() {
        repo = "vs".into();
    }
    format!("respawn-vs-{repo}:v{version}")
}

/// The image named by a `docker save` archive's `manifest.json` (first RepoTag, else
/// the config digest).
pub(crate) fn image_from_manifest(manifest: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(manifest).ok()?;
    let first = v.as_array()?.first()?;
    if let Some(tag) = first
        .get("RepoTags")
        .and_then(|t| t.as_array())
        .and_then(|t| t.first())
        .and_then(|t| t.as_str())
    {
        return Some(tag.to_string());
    }
    let config = first.get("Config")?.as_str()?;
    let hex = config
        .rsplit('/')
        .next()?
        .trim_end_matches(".json")
        .to_string();
    (hex.len() == 64).then(|| format!("sha256:{hex}"))
}

/// The image named in a load stream line (`Loaded image: x:1` / `Loaded image ID: sha256:..`).
fn image_from_load_output(line: &str) -> Option<String> {
    let l = line.trim();
    l.strip_prefix("Loaded image ID: ")
        .or_else(|| l.strip_prefix("Loaded image: "))
        .map(|s| s.trim().to_string())
}

impl DockerHost {
    pub fn new(socket: PathBuf, agent_id: String) -> Self {
        DockerHost {
            socket,
            agent_id,
            client: tokio::sync::OnceCell::new(),
            images: Mutex::new(HashMap::new()),
        }
    }

    /// Connects (and cleans stale containers) now if the socket exists.
    pub async fn init_if_present(&self) {
        if !self.socket.exists() {
            tracing::debug!(socket = %self.socket.display(), "no Docker engine socket; the Docker driver is unavailable");
            return;
        }
        if let Err(e) = self.client().await {
            tracing::warn!("{e}");
        }
    }

    /// The connected client; the first success also removes this agent's stale
    /// containers.
    pub async fn client(&self) -> Result<&Docker, String> {
        self.client
            .get_or_try_init(|| async {
                let path = self.socket.to_string_lossy().into_owned();
                let unreachable = |e: &DockerError| {
                    format!(
                        "the Docker engine is not reachable at {path}: {}",
                        engine_message(e)
                    )
                };
                let d = Docker::connect_with_unix(
                    &path,
                    REQUEST_TIMEOUT_S,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(|e| unreachable(&e))?
                .negotiate_version()
                .await
                .map_err(|e| unreachable(&e))?;
                self.remove_stale(&d).await;
                Ok(d)
            })
            .await
    }

    async fn remove_stale(&self, d: &Docker) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{LABEL_AGENT}={}", self.agent_id)],
        )]);
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        };
        match d.list_containers(Some(opts)).await {
            Ok(list) => {
                for c in list {
                    let Some(id) = c.id else { continue };
                    let rm = RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    };
                    match d.remove_container(&id, Some(rm)).await {
                        Ok(()) => tracing::info!(container = %id, "removed a stale container"),
                        Err(e) => {
                            tracing::warn!(container = %id, "cannot remove a stale container: {}", engine_message(&e))
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("cannot list stale containers: {}", engine_message(&e)),
        }
    }

    /// Makes the spec's image available and returns its id. Prepared once per
    /// (title region, VS, version); a failure is not cached.
    pub async fn prepare(
        &self,
        spec: &InstanceSpec,
        tmp_dir: &Path,
    ) -> Result<String, LaunchError> {
        let d = self.client().await.map_err(launch_failed)?;
        let key = (
            spec.title_region.clone(),
            spec.vs_name.clone(),
            spec.version,
        );
        let slot = {
            let mut m = self
                .images
                .lock()
                .map_err(|_| launch_failed("internal state poisoned"))?;
            m.entry(key).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(id) = cached.as_ref() {
            if d.inspect_image(id).await.is_ok() {
                return Ok(id.clone());
            }
        }
        let reference = match &spec.source {
            Source::DockerImage { image } => image.clone(),
            Source::DockerArchive { path } => load_archive(d, path).await?,
            Source::DockerBuild { context_dir } => build(d, spec, context_dir, tmp_dir).await?,
            Source::Process { .. } => return Err(launch_failed("not a Docker source")),
        };
        let id = match d.inspect_image(&reference).await {
            Ok(info) => info.id.unwrap_or(reference),
            Err(e) if is_not_found(&e) => {
                return Err(unusable(match &spec.source {
                    Source::DockerImage { image } => format!(
                        "image `{image}` is not present in the local Docker engine and cannot be pulled \
                         (there is no registry); upload it as a `docker save` archive or as a build context instead"
                    ),
                    _ => format!("image `{reference}` is missing after it was prepared: {}", engine_message(&e)),
                }))
            }
            Err(e) => return Err(launch_failed(format!("cannot inspect image `{reference}`: {}", engine_message(&e)))),
        };
        *cached = Some(id.clone());
        Ok(id)
    }

    /// Creates and starts the instance's container from `image`.
    pub async fn launch(
        &self,
        spec: &InstanceSpec,
        image: &str,
        volume_dir: &Path,
        log: &Arc<LogFile>,
    ) -> Result<Container, LaunchError> {
        let d = self.client().await.map_err(launch_failed)?.clone();
        let name = container_name(&spec.instance_id);
        // A container left by an earlier launch (or an earlier agent) goes first.
        let _ = d
            .remove_container(
                &name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        let port_key = format!("{}/tcp", spec.listen_port);
        let mut env: Vec<String> = spec
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != LISTEN_PORT_ENV)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("{LISTEN_PORT_ENV}={}", spec.listen_port));
        let mem = (spec.memory_mb > 0).then(|| (spec.memory_mb as i64).saturating_mul(1024 * 1024));
        let labels = HashMap::from([
            (LABEL_AGENT.to_string(), self.agent_id.clone()),
            (LABEL_INSTANCE.to_string(), spec.instance_id.clone()),
            (
                "respawn.title_region".to_string(),
                spec.title_region.clone(),
            ),
            ("respawn.vs".to_string(), spec.vs_name.clone()),
            ("respawn.version".to_string(), spec.version.to_string()),
        ]);
        let remove = |d: Docker, id: String| async move {
            let _ = d
                .remove_container(
                    &id,
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        };
        // With Docker's init (tini) as PID 1 the program gets default signal
        // handling, so SIGTERM stops a program that installs no handler; engines
        // without docker-init get the program as PID 1.
        let mut started = None;
        for init in [true, false] {
            let host_config = HostConfig {
                memory: mem,
                memory_swap: mem,
                nano_cpus: (spec.cpu_millicores > 0)
                    .then(|| i64::from(spec.cpu_millicores) * 1_000_000),
                port_bindings: Some(HashMap::from([(
                    port_key.clone(),
                    Some(vec![PortBinding {
                        host_ip: Some("0.0.0.0".into()),
                        host_port: Some(String::new()),
                    }]),
                )])),
                binds: Some(vec![format!(
                    "{}:{CONTAINER_VOLUME_PATH}",
                    volume_dir.display()
                )]),
                init: Some(init),
                ..Default::default()
            };
            let body = ContainerCreateBody {
                image: Some(image.to_string()),
                env: Some(env.clone()),
                cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
                exposed_ports: Some(vec![port_key.clone()]),
                labels: Some(labels.clone()),
                host_config: Some(host_config),
                ..Default::default()
            };
            let created = d
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name.clone()),
                        ..Default::default()
                    }),
                    body,
                )
                .await
                .map_err(|e| {
                    launch_failed(format!(
                        "cannot create the container: {}",
                        engine_message(&e)
                    ))
                })?;
            match d.start_container(&created.id, None).await {
                Ok(()) => {
                    started = Some(created);
                    break;
                }
                Err(e) => {
                    remove(d.clone(), created.id.clone()).await;
                    let msg = engine_message(&e);
                    if !(init && msg.contains("docker-init")) {
                        return Err(launch_failed(format!("cannot start the container: {msg}")));
                    }
                    tracing::warn!(
                        "docker-init is unavailable, running the program as PID 1: {msg}"
                    );
                }
            }
        }
        let Some(created) = started else {
            return Err(launch_failed("cannot start the container"));
        };
        let id = created.id;
        let limit_warnings: Vec<String> = created
            .warnings
            .into_iter()
            .filter(|w| {
                let w = w.to_ascii_lowercase();
                w.contains("memory") || w.contains("cpu") || w.contains("limit")
            })
            .collect();
        for w in &limit_warnings {
            tracing::warn!(instance = %spec.instance_id, "docker: {w}");
        }
        // The stream starts with everything logged since the start, so nothing is lost.
        let (done_tx, done_rx) = oneshot::channel();
        let log_task = tokio::spawn(follow_logs(d.clone(), id.clone(), log.clone(), done_tx));
        let info = match d.inspect_container(&id, None).await {
            Ok(i) => i,
            Err(e) => {
                log_task.abort();
                remove(d.clone(), id.clone()).await;
                return Err(launch_failed(format!(
                    "cannot inspect the container: {}",
                    engine_message(&e)
                )));
            }
        };
        let pid = info.state.as_ref().and_then(|s| s.pid).unwrap_or(0) as i32;
        let host_port = info
            .network_settings
            .as_ref()
            .and_then(|n| n.ports.as_ref())
            .and_then(|p| p.get(&port_key).cloned().flatten())
            .and_then(|b| {
                b.iter()
                    .find_map(|b| b.host_port.as_deref()?.parse::<u16>().ok())
            })
            .unwrap_or(0);
        Ok(Container {
            docker: d,
            id,
            pid,
            host_port,
            limits: Limits {
                mechanism: "docker".into(),
                enforced: limit_warnings.is_empty(),
            },
            log_task: Some(log_task),
            log_done: Some(done_rx),
            next_inspect: Instant::now() + Duration::from_secs(1),
            exited: false,
        })
    }

    /// Cumulative CPU nanoseconds and memory bytes of a container (one-shot stats).
    pub async fn stats(&self, id: &str) -> Option<(u64, u64)> {
        let d = self.client().await.ok()?;
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let s = d.stats(id, Some(opts)).next().await?.ok()?;
        let cpu = s.cpu_stats.as_ref()?.cpu_usage.as_ref()?.total_usage?;
        let m = s.memory_stats.as_ref()?;
        let inactive = m
            .stats
            .as_ref()
            .and_then(|st| {
                st.get("total_inactive_file")
                    .or_else(|| st.get("inactive_file"))
                    .copied()
            })
            .unwrap_or(0);
        Some((cpu, m.usage.unwrap_or(0).saturating_sub(inactive)))
    }

    /// Removes the instance's container by name, if any (best effort).
    pub async fn remove_by_instance(&self, instance_id: &str) {
        if let Some(d) = self.client.get() {
            let _ = d
                .remove_container(
                    &container_name(instance_id),
                    Some(RemoveContainerOptions {
                        force: true,
                        ..Default::default()
                    }),
                )
                .await;
        }
    }
}

pub(crate) fn container_name(instance_id: &str) -> String {
    format!("respawn-{instance_id}")
}

async fn follow_logs(d: Docker, id: String, log: Arc<LogFile>, done: oneshot::Sender<()>) {
    let opts = LogsOptions {
        follow: true,
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let mut stream = d.logs(&id, Some(opts));
    let (mut out, mut err) = (LineSplitter::default(), LineSplitter::default());
    while let Some(item) = stream.next().await {
        match item {
            Ok(bollard::container::LogOutput::StdOut { message })
            | Ok(bollard::container::LogOutput::Console { message }) => {
                out.feed(&message, |l| log.write("stdout", l))
            }
            Ok(bollard::container::LogOutput::StdErr { message }) => {
                err.feed(&message, |l| log.write("stderr", l))
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(container = %id, "log stream ended: {}", engine_message(&e));
                break;
            }
        }
    }
    out.finish(|l| log.write("stdout", l));
    err.finish(|l| log.write("stderr", l));
    let _ = done.send(());
}

/// Loads a `docker save` archive; returns the loaded image's reference.
async fn load_archive(d: &Docker, path: &Path) -> Result<String, LaunchError> {
    let file = tokio::fs::File::open(path).await.map_err(|e| {
        unusable(format!(
            "cannot read the image archive {}: {e}",
            path.display()
        ))
    })?;
    let body = tokio_util::io::ReaderStream::new(file);
    let mut stream = d.import_image_stream(ImportImageOptions::default(), body, None);
    let mut loaded = None;
    let mut output = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                for line in info.stream.iter().chain(info.status.iter()) {
                    if let Some(img) = image_from_load_output(line) {
                        loaded = Some(img);
                    }
                    output.push(line.trim().to_string());
                }
            }
            Err(e) => {
                return Err(unusable(format!(
                    "the image archive {} cannot be loaded: {}",
                    path.display(),
                    engine_message(&e)
                )))
            }
        }
    }
    if let Some(img) = loaded {
        return Ok(img);
    }
    let p = path.to_path_buf();
    let manifest =
        tokio::task::spawn_blocking(move || crate::tar::read_file(&p, "manifest.json", 16 << 20))
            .await
            .ok()
            .and_then(|r| r.ok())
            .flatten();
    manifest
        .as_deref()
        .and_then(image_from_manifest)
        .ok_or_else(|| {
            unusable(format!(
            "the image archive {} loaded no image ({}); make it with `docker save IMAGE -o FILE`",
            path.display(),
            output.join(" ").trim()
        ))
        })
}

/// Builds the context directory with the legacy builder, tagged
/// `respawn-vs-<vs>:v<version>`; returns the tag.
async fn build(
    d: &Docker,
    spec: &InstanceSpec,
    context: &Path,
    tmp_dir: &Path,
) -> Result<String, LaunchError> {
    if !context.join("Dockerfile").is_file() {
        return Err(unusable(format!(
            "the build context {} has no Dockerfile at its root",
            context.display()
        )));
    }
    tokio::fs::create_dir_all(tmp_dir)
        .await
        .map_err(|e| launch_failed(format!("cannot create {}: {e}", tmp_dir.display())))?;
    let tar_path = tmp_dir.join(format!("build-{}-{}.tar", spec.instance_id, now_ms()));
    let (ctx, out) = (context.to_path_buf(), tar_path.clone());
    let written = tokio::task::spawn_blocking(move || crate::tar::write_dir(&ctx, &out))
        .await
        .map_err(|e| launch_failed(format!("archiving the build context failed: {e}")))
        .and_then(|r| {
            r.map_err(|e| {
                unusable(format!(
                    "cannot archive the build context {}: {e}",
                    context.display()
                ))
            })
        });
    let result = match written {
        Ok(()) => run_build(d, spec, &tar_path).await,
        Err(e) => Err(e),
    };
    let _ = tokio::fs::remove_file(&tar_path).await;
    result
}

async fn run_build(
    d: &Docker,
    spec: &InstanceSpec,
    tar_path: &Path,
) -> Result<String, LaunchError> {
    let tag = build_tag(&spec.vs_name, spec.version);
    let file = tokio::fs::File::open(tar_path)
        .await
        .map_err(|e| launch_failed(format!("cannot read {}: {e}", tar_path.display())))?;
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(file));
    let opts = BuildImageOptions {
        dockerfile: "Dockerfile".into(),
        t: Some(tag.clone()),
        rm: true,
        forcerm: true,
        labels: Some(HashMap::from([
            (
                "respawn.title_region".to_string(),
                spec.title_region.clone(),
            ),
            ("respawn.vs".to_string(), spec.vs_name.clone()),
            ("respawn.version".to_string(), spec.version.to_string()),
        ])),
        ..Default::default()
    };
    let mut stream = d.build_image(opts, None, Some(body));
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(s) = info.stream {
                    for l in s.lines().map(str::trim).filter(|l| !l.is_empty()) {
                        tail.push(l.to_string());
                        if tail.len() > 5 {
                            tail.remove(0);
                        }
                    }
                }
            }
            Err(e) => {
                let mut msg = format!("building the image failed: {}", engine_message(&e));
                if !tail.is_empty() {
                    msg.push_str(&format!(" (last build output: {})", tail.join(" | ")));
                }
                return Err(unusable(msg));
            }
        }
    }
    Ok(tag)
}

/// A started container.
pub(crate) struct Container {
    docker: Docker,
    pub id: String,
    /// The container's init process, as seen from the host (0 if unknown).
    pub pid: i32,
    pub host_port: u16,
    pub limits: Limits,
    log_task: Option<JoinHandle<()>>,
    log_done: Option<oneshot::Receiver<()>>,
    next_inspect: Instant,
    exited: bool,
}

impl Container {
    /// Returns how the container ended, once it has (cancel-safe: wakes on the end
    /// of the log stream, and inspects the container at least every second).
    pub async fn wait(&mut self) -> ExitInfo {
        loop {
            match self.log_done.as_mut() {
                Some(rx) => {
                    tokio::select! {
                        _ = rx => { self.log_done = None; }
                        _ = tokio::time::sleep_until(self.next_inspect) => {}
                    }
                }
                None => tokio::time::sleep_until(self.next_inspect).await,
            }
            self.next_inspect = Instant::now() + Duration::from_secs(1);
            match self.docker.inspect_container(&self.id, None).await {
                Ok(info) => {
                    let Some(state) = info.state else { continue };
                    if state.running == Some(true) {
                        continue;
                    }
                    self.exited = true;
                    if state.oom_killed == Some(true) {
                        return ExitInfo::OutOfMemory;
                    }
                    if let Some(err) = state.error.filter(|e| !e.is_empty()) {
                        return ExitInfo::Other(format!("failed: {err}"));
                    }
                    return match state.exit_code.unwrap_or(0) {
                        c if (129..=192).contains(&c) => ExitInfo::Other(format!(
                            "exited with status {c} (killed by signal {})",
                            c - 128
                        )),
                        c => ExitInfo::Code(c),
                    };
                }
                Err(e) if is_not_found(&e) => {
                    self.exited = true;
                    return ExitInfo::Other("its container disappeared".into());
                }
                Err(e) => {
                    tracing::debug!(container = %self.id, "inspect failed: {}", engine_message(&e))
                }
            }
        }
    }

    /// Waits a little for the log stream to deliver the last lines.
    async fn finish_logs(&mut self) {
        if let Some(t) = self.log_task.take() {
            if tokio::time::timeout(Duration::from_secs(2), t)
                .await
                .is_err()
            {
                tracing::debug!(container = %self.id, "log stream outlived the container");
            }
        }
    }

    /// Removes an exited container (after its last log lines are in).
    pub async fn remove(mut self) {
        self.finish_logs().await;
        self.force_remove().await;
    }

    async fn force_remove(&self) {
        if let Err(e) = self
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            if !is_not_found(&e) {
                tracing::warn!(container = %self.id, "cannot remove the container: {}", engine_message(&e));
            }
        }
    }

    /// Stops (SIGTERM, SIGKILL after 5 s) and removes the container.
    pub async fn stop(mut self) {
        if !self.exited {
            let opts = StopContainerOptions {
                t: Some(STOP_TIMEOUT_S),
                ..Default::default()
            };
            if let Err(e) = self.docker.stop_container(&self.id, Some(opts)).await {
                tracing::debug!(container = %self.id, "stop: {}", engine_message(&e));
            }
        }
        self.finish_logs().await;
        self.force_remove().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_valid_references() {
        assert_eq!(build_tag("Vs-Smoke", 3), "respawn-vs-vs-smoke:v3");
        assert_eq!(build_tag("a_b", 1), "respawn-vs-a-b:v1");
        assert_eq!(build_tag("__", 1), "respawn-vs-vs:v1");
    }

    #[test]
    fn reads_manifests_and_load_output() {
        let m = br#"[{"Config":"blobs/sha256/0123456789012345678901234567890123456789012345678901234567890123","RepoTags":["x:1"],"Layers":[]}]"#;
        assert_eq!(image_from_manifest(m).as_deref(), Some("x:1"));
        let m = br#"[{"Config":"0123456789012345678901234567890123456789012345678901234567890123.json","RepoTags":null}]"#;
        assert_eq!(
            image_from_manifest(m).as_deref(),
            Some("sha256:0123456789012345678901234567890123456789012345678901234567890123")
        );
        assert_eq!(image_from_manifest(b"{}"), None);
        assert_eq!(
            image_from_load_output("Loaded image: a/b:c\n").as_deref(),
            Some("a/b:c")
        );
        assert_eq!(
            image_from_load_output("Loaded image ID: sha256:ab").as_deref(),
            Some("sha256:ab")
        );
        assert_eq!(image_from_load_output("Loading layer"), None);
    }
}
