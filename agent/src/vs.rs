//! Virtual server instances on this host: the agent runs them through
//! [`respawn_runtime`] (process and Docker drivers), reports their state to
//! the cluster in order, answers log queries, samples their CPU and memory,
//! and calls virtual servers for its DS processes and VS instances:
//!
//! - each instance gets a secret token naming it, and with it
//!   `PGOS_VS_Intranet_Endpoint` = `http://<intranet_addr>/i/<token>` and
//!   `http_proxy` = `http://intranet:<token>@<intranet_addr>`: the intranet
//!   listener (`intranet.rs`) serves `$PGOS_VS_Intranet_Endpoint/<vs>/<path>`
//!   and `http://<vs>.<title region>.<title>.virtualserver.int/<path>`; the
//!   callee sees `Invoker: intranet`. The token names the calling instance,
//!   so a VS only reaches virtual servers of its own title region;
//! - `/v1/vs/invoke/<vs>/<path>` on the local SDK API for DS processes
//!   (`Invoker: backend`), see `docs/sdk-protocol.md`.
//!
//! Both resolve the VS's running instances through the cluster (cached for
//! a second) and proxy straight to one of them ([`VsHost::call`]).

use crate::link::ServerLink;
use crate::reporter::Reporter;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{Response, StatusCode};
use axum::Router;
use rand::RngCore;
use respawn_proxy::{json_error, reserved_uri, InvokeContext, Invoker, Proxy};
use respawn_runtime::{InstanceEvent, InstanceState, LogQuery, RuntimeConfig, Source, VsRuntime};
use respawn_types::agent::{AgentToServer, ServerReply, VsUsageSample, WireError};
use respawn_types::*;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How long a resolved VS address list is reused.
const RESOLVE_TTL: Duration = Duration::from_secs(1);
/// How often instance usage is sampled and reported.
const USAGE_EVERY: Duration = Duration::from_secs(5);

/// Where the agent's VS machinery listens and keeps its files.
#[derive(Clone, Debug)]
pub struct VsConfig {
    pub data_dir: PathBuf,
    pub host_id: HostId,
    pub intranet_addr: SocketAddr,
    /// Host name containers use to reach the intranet listener.
    pub docker_intranet_host: Option<String>,
    /// Size cap and rotated files of each instance's log.
    pub log_rotation: respawn_runtime::rotate::Rotation,
}

struct Inst {
    token: String,
}

/// The instance an intranet token names, as the intranet listener needs it.
#[derive(Clone, Debug)]
pub struct Caller {
    pub region: TitleRegionId,
    /// `<title region>.<title>.virtualserver.int`: the suffix of the
    /// intranet names of its title region's virtual servers.
    pub domain: String,
    /// A Docker instance: the agent host's loopback is not its own.
    pub container: bool,
}

#[derive(Default)]
struct Reg {
    instances: HashMap<VsInstanceId, Inst>,
    tokens: HashMap<String, Caller>,
    resolved: HashMap<(TitleRegionId, VsName), (Instant, String, Vec<SocketAddr>)>,
}

pub struct VsHost {
    runtime: VsRuntime,
    link: Arc<dyn ServerLink>,
    reporter: Reporter,
    proxy: Proxy,
    reg: Mutex<Reg>,
    /// `host:port` of the intranet listener for process instances.
    intranet_addr: String,
    /// `host:port` of the intranet listener for containers, when known.
    docker_intranet_addr: Option<String>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

fn new_token() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    hex::encode(b)
}

impl VsHost {
    /// Starts the runtime and the intranet listener, served by the routes
    /// `router` makes (`intranet::router`).
    pub async fn start(
        cfg: VsConfig,
        link: Arc<dyn ServerLink>,
        router: fn(Arc<VsHost>) -> Router,
    ) -> std::io::Result<Arc<VsHost>> {
        // The runtime removes what an earlier run with the same id left
        // behind (containers, cgroups): the id names this host *and* its data
        // directory, so two agents on one machine never clean up each other's.
        let h = fnv1a64(cfg.data_dir.as_os_str().as_encoded_bytes().iter().copied());
        let runtime_id = format!("{}-{:08x}", cfg.host_id, h as u32);
        let mut rt_cfg = RuntimeConfig::new(cfg.data_dir.clone(), runtime_id);
        rt_cfg.log_rotation = cfg.log_rotation;
        let (runtime, events) = VsRuntime::new(rt_cfg);
        let listener = tokio::net::TcpListener::bind(cfg.intranet_addr).await?;
        let local = listener.local_addr()?;
        let (reporter, reporter_task) = Reporter::start(link.clone());
        let host = Arc::new(VsHost {
            runtime,
            link,
            reporter,
            proxy: Proxy::new(),
            reg: Mutex::new(Reg::default()),
            intranet_addr: local.to_string(),
            docker_intranet_addr: cfg
                .docker_intranet_host
                .map(|h| format!("{h}:{}", local.port())),
            tasks: Mutex::new(Vec::new()),
        });
        let app = router(host.clone());
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "intranet endpoint stopped");
            }
        });
        let pump = tokio::spawn(pump(host.clone(), events));
        let usage = tokio::spawn(sample_usage(host.clone()));
        host.lock_tasks()
            .extend([server, pump, usage, reporter_task]);
        tracing::info!(intranet = %host.intranet_addr, "virtual server runtime ready");
        Ok(host)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reg> {
        // Every critical section is a few map operations: a panicked holder
        // cannot leave them half done in a way that matters.
        self.reg.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Instances running here, for the Hello.
    pub fn live(&self) -> Vec<VsInstanceId> {
        let mut v: Vec<VsInstanceId> = self.lock().instances.keys().cloned().collect();
        v.sort();
        v
    }

    /// The link is back: deliver queued reports now.
    pub fn link_up(&self) {
        self.reporter.nudge();
    }

    /// StartVsInstance: idempotent.
    pub async fn start_instance(&self, spec_json: &str) -> Result<(), WireError> {
        let spec: VsInstanceSpec = serde_json::from_str(spec_json)
            .map_err(|e| WireError::new(agent_err(), format!("undecodable instance spec: {e}")))?;
        if self.lock().instances.contains_key(&spec.instance_id) {
            return Ok(());
        }
        let token = new_token();
        let docker = !matches!(spec.spec.source, VsSource::Process { .. });
        let mut env = spec.spec.env.clone();
        env.extend(spec.system_env.clone());
        let listener = if docker {
            self.docker_intranet_addr.as_deref()
        } else {
            Some(self.intranet_addr.as_str())
        };
        if let Some(addr) = listener {
            intranet_env(&mut env, addr, &token);
        }
        let title = spec
            .system_env
            .get("PGOS_Title_ID")
            .map(|t| TitleId::new_unchecked(t.as_str()));
        let caller = Caller {
            region: spec.title_region_id.clone(),
            domain: title
                .map(|t| respawn_types::intranet::region_domain(&spec.title_region_id, &t))
                .unwrap_or_default(),
            container: docker,
        };
        let source = match &spec.spec.source {
            VsSource::Process { command } => Source::Process {
                command: command.clone(),
            },
            VsSource::DockerImage { image } => Source::DockerImage {
                image: image.clone(),
            },
            VsSource::DockerArchive { path } => Source::DockerArchive { path: path.into() },
            VsSource::DockerBuild { context_dir } => Source::DockerBuild {
                context_dir: context_dir.into(),
            },
        };
        let rs = respawn_runtime::InstanceSpec {
            instance_id: spec.instance_id.to_string(),
            title_region: spec.title_region_id.to_string(),
            vs_name: spec.vs.to_string(),
            version: spec.version,
            source,
            args: spec.spec.args.clone(),
            env,
            listen_port: spec.spec.listen_port,
            cpu_millicores: spec.spec.cpu_millicores,
            memory_mb: spec.spec.memory_mb,
        };
        {
            let mut reg = self.lock();
            reg.tokens.insert(token.clone(), caller);
            reg.instances
                .insert(spec.instance_id.clone(), Inst { token });
        }
        tracing::info!(instance = %spec.instance_id, vs = %spec.vs, version = spec.version, "starting virtual server instance");
        match self.runtime.start(rs).await {
            Ok(()) | Err(respawn_runtime::RuntimeError::AlreadyExists(_)) => Ok(()),
            Err(e) => {
                self.forget(&spec.instance_id);
                // Tell the cluster, so the instance shows why.
                self.reporter.send(AgentToServer::VsInstanceReport {
                    instance_id: spec.instance_id.clone(),
                    report: VsInstanceReport::Abnormal {
                        reason: "launch_failed".into(),
                        detail: e.to_string(),
                    },
                });
                Err(WireError::new(agent_err(), e.to_string()))
            }
        }
    }

    fn forget(&self, id: &VsInstanceId) {
        let mut reg = self.lock();
        if let Some(i) = reg.instances.remove(id) {
            reg.tokens.remove(&i.token);
        }
    }

    /// StopVsInstance: stops it, or reports `Stopped` for one not running here.
    pub async fn stop_instance(&self, id: &VsInstanceId) {
        match self.runtime.stop(id.as_str()).await {
            Ok(()) => {}
            Err(_) => {
                self.forget(id);
                self.reporter.send(AgentToServer::VsInstanceReport {
                    instance_id: id.clone(),
                    report: VsInstanceReport::Stopped,
                });
            }
        }
    }

    /// Deletes the logs of ended instances by `retention`; returns the
    /// bytes freed. Blocking.
    pub fn sweep_logs(&self, retention: &respawn_runtime::retention::Retention) -> u64 {
        self.runtime.sweep_logs(retention)
    }

    pub async fn query_logs(&self, query_json: &str) -> Result<String, WireError> {
        let q: LogQuery = serde_json::from_str(query_json)
            .map_err(|e| WireError::new(agent_err(), format!("bad log query: {e}")))?;
        let rt = self.runtime.clone();
        let lines = tokio::task::spawn_blocking(move || rt.query_logs(&q))
            .await
            .map_err(|e| WireError::new(agent_err(), e.to_string()))?
            .map_err(|e| WireError::new(agent_err(), e.to_string()))?;
        serde_json::to_string(&lines).map_err(|e| WireError::new(agent_err(), e.to_string()))
    }

    pub async fn shutdown(&self) {
        self.runtime.shutdown().await;
        for t in self.lock_tasks().drain(..) {
            t.abort();
        }
    }

    /// Running instances of a VS of this title region, from the cluster.
    async fn resolve(
        &self,
        tr: &TitleRegionId,
        vs: &VsName,
    ) -> Result<(String, Vec<SocketAddr>), Response<Body>> {
        let key = (tr.clone(), vs.clone());
        if let Some((at, title, addrs)) = self.lock().resolved.get(&key) {
            if at.elapsed() < RESOLVE_TTL && !addrs.is_empty() {
                return Ok((title.clone(), addrs.clone()));
            }
        }
        let deadline = Instant::now() + respawn_proxy::COLD_START_WAIT;
        loop {
            let reply = self
                .link
                .call(AgentToServer::ResolveVs {
                    title_region_id: tr.clone(),
                    vs: vs.clone(),
                })
                .await;
            match reply {
                Ok(ServerReply::VsEndpoints {
                    exists,
                    running,
                    title_id,
                    endpoints,
                    reason,
                }) => {
                    if !exists {
                        return Err(json_error(StatusCode::NOT_FOUND, "not_found", &reason));
                    }
                    let addrs: Vec<SocketAddr> =
                        endpoints.iter().filter_map(|e| e.parse().ok()).collect();
                    if !addrs.is_empty() {
                        self.lock()
                            .resolved
                            .insert(key, (Instant::now(), title_id.clone(), addrs.clone()));
                        return Ok((title_id, addrs));
                    }
                    if !running || Instant::now() >= deadline {
                        return Err(json_error(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "unavailable",
                            &reason,
                        ));
                    }
                }
                Ok(ServerReply::Err(e)) => {
                    return Err(json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        &e.message,
                    ))
                }
                Ok(_) => {
                    return Err(json_error(
                        StatusCode::BAD_GATEWAY,
                        "bad_gateway",
                        "unexpected answer from the cluster",
                    ))
                }
                Err(down) => {
                    return Err(json_error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        &format!("the cluster is not reachable: {down}"),
                    ))
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Proxies a call from this host (a DS or a VS instance) to a VS.
    pub async fn call(
        &self,
        tr: TitleRegionId,
        vs_raw: &str,
        invoker: Invoker,
        upstream_path: String,
        req: Request,
    ) -> Response<Body> {
        let vs = match VsName::parse(vs_raw) {
            Ok(v) => v,
            Err(e) => return json_error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
        };
        if let Some(uri) = reserved_uri(&upstream_path) {
            return json_error(
                StatusCode::FORBIDDEN,
                "forbidden",
                &format!("{uri} is reserved for PGOS"),
            );
        }
        let (title_id, addrs) = match self.resolve(&tr, &vs).await {
            Ok(v) => v,
            Err(r) => return r,
        };
        // Spread calls: a random running instance.
        // The agent does not count its calls per instance: all loads are
        // equal, so the shared picker starts at a random instance.
        let start = (rand::thread_rng().next_u32() as usize) % addrs.len().max(1);
        let Some(addr) = respawn_proxy::pick_instance(addrs.iter().map(|a| (*a, 0)), start) else {
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "no instance",
            );
        };
        let ctx = InvokeContext::new(title_id, tr.as_str(), vs.as_str(), invoker, upstream_path);
        self.proxy.forward(addr, req, ctx).await
    }

    /// The instance holding an intranet token.
    pub fn caller(&self, token: &str) -> Option<Caller> {
        self.lock().tokens.get(token).cloned()
    }
}

/// The intranet variables of an instance whose listener is `addr`
/// (`host:port`) and whose token is `token`: `PGOS_VS_Intranet_Endpoint`,
/// and the proxy variables that make intranet names work (`http_proxy`,
/// `HTTP_PROXY`, with the token as the proxy password; `no_proxy`,
/// `NO_PROXY`: loopback and the listener itself go direct). A VS whose own
/// `env` sets `http_proxy` or `HTTP_PROXY` (or `no_proxy`/`NO_PROXY`) keeps
/// its own pair. No `https_proxy`: HTTPS is untouched.
pub fn intranet_env(env: &mut BTreeMap<String, String>, addr: &str, token: &str) {
    env.insert(
        "PGOS_VS_Intranet_Endpoint".into(),
        format!("http://{addr}/i/{token}"),
    );
    let mine = |env: &BTreeMap<String, String>, a: &str, b: &str| {
        !env.contains_key(a) && !env.contains_key(b)
    };
    if mine(env, "http_proxy", "HTTP_PROXY") {
        let proxy = format!("http://intranet:{token}@{addr}");
        env.insert("http_proxy".into(), proxy.clone());
        env.insert("HTTP_PROXY".into(), proxy);
    }
    if mine(env, "no_proxy", "NO_PROXY") {
        let mut hosts = vec!["localhost", "127.0.0.1", "::1"];
        let own = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let own = own.trim_start_matches('[').trim_end_matches(']');
        if !hosts.contains(&own) {
            hosts.push(own);
        }
        let list = hosts.join(",");
        env.insert("no_proxy".into(), list.clone());
        env.insert("NO_PROXY".into(), list);
    }
}

fn agent_err() -> respawn_types::agent::ErrorCode {
    respawn_types::agent::ErrorCode::BadRequest
}

/// The path after `/<prefix>/<a>/<b>` (two segments), with the query.
pub fn rest_after(uri: &axum::http::Uri, segments: usize) -> String {
    let mut parts = uri.path().splitn(segments + 2, '/');
    for _ in 0..=segments {
        parts.next();
    }
    let mut out = format!("/{}", parts.next().unwrap_or(""));
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// Runtime events become ordered reports to the cluster.
async fn pump(host: Arc<VsHost>, mut events: tokio::sync::mpsc::UnboundedReceiver<InstanceEvent>) {
    while let Some(ev) = events.recv().await {
        let id = VsInstanceId::new_unchecked(ev.instance_id.clone());
        let report = match ev.state {
            InstanceState::Deploying => VsInstanceReport::Deploying,
            InstanceState::Running { port, limits } => VsInstanceReport::Running {
                port,
                // "none" unless the limits really apply to this instance.
                limits: if limits.enforced {
                    limits.mechanism
                } else {
                    "none".into()
                },
            },
            InstanceState::Abnormal { reason, detail } => VsInstanceReport::Abnormal {
                reason: serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".into()),
                detail,
            },
            InstanceState::Stopped => {
                host.forget(&id);
                VsInstanceReport::Stopped
            }
        };
        tracing::debug!(instance = %id, ?report, "instance report");
        host.reporter.send(AgentToServer::VsInstanceReport {
            instance_id: id,
            report,
        });
    }
}

async fn sample_usage(host: Arc<VsHost>) {
    let mut tick = tokio::time::interval(USAGE_EVERY);
    loop {
        tick.tick().await;
        let ids: Vec<VsInstanceId> = host.lock().instances.keys().cloned().collect();
        let mut samples = Vec::new();
        for id in ids {
            if let Some(u) = host.runtime.usage(id.as_str()).await {
                samples.push(VsUsageSample {
                    instance_id: id,
                    cpu_millicores: u.cpu_millicores,
                    memory_bytes: u.memory_bytes,
                });
            }
        }
        if !samples.is_empty() {
            // Best effort: a lost sample is replaced by the next.
            let _ = host.link.call(AgentToServer::VsUsage { samples }).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_after_keeps_path_and_query() {
        let u = |s: &str| s.parse::<axum::http::Uri>().unwrap();
        assert_eq!(rest_after(&u("/i/tok/vs-b/a/b?x=1"), 3), "/a/b?x=1");
        assert_eq!(rest_after(&u("/i/tok/vs-b"), 3), "/");
        assert_eq!(rest_after(&u("/i/tok/vs-b/"), 3), "/");
    }

    #[test]
    fn instances_get_the_endpoint_and_the_proxy() {
        let mut env = BTreeMap::new();
        intranet_env(&mut env, "127.0.0.1:7781", "t0k");
        let get = |env: &BTreeMap<String, String>, k: &str| env.get(k).cloned().unwrap_or_default();
        assert_eq!(
            get(&env, "PGOS_VS_Intranet_Endpoint"),
            "http://127.0.0.1:7781/i/t0k"
        );
        assert_eq!(
            get(&env, "http_proxy"),
            "http://intranet:t0k@127.0.0.1:7781"
        );
        assert_eq!(get(&env, "HTTP_PROXY"), get(&env, "http_proxy"));
        assert_eq!(get(&env, "no_proxy"), "localhost,127.0.0.1,::1");
        assert!(!env.contains_key("https_proxy"));
        // A container's listener address goes direct too.
        let mut env = BTreeMap::new();
        intranet_env(&mut env, "172.17.0.1:7781", "t0k");
        assert_eq!(get(&env, "NO_PROXY"), "localhost,127.0.0.1,::1,172.17.0.1");
        // The VS's own proxy settings win.
        let mut env = BTreeMap::from([("HTTP_PROXY".to_string(), "http://corp:3128".to_string())]);
        intranet_env(&mut env, "127.0.0.1:7781", "t0k");
        assert_eq!(get(&env, "HTTP_PROXY"), "http://corp:3128");
        assert!(!env.contains_key("http_proxy"));
        assert_eq!(get(&env, "no_proxy"), "localhost,127.0.0.1,::1");
    }
}
