//! One task per instance: launch, watch readiness, relaunch after exits, stop.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cgroup::{self, Group};
use crate::docker::Container;
use crate::exit::{describe_exit, ExitInfo, LaunchError};
use crate::host::{Inner, Live, UsageTarget};
use crate::launch_backoff::LaunchBackoff;
use crate::listener::Listener;
use crate::logs::LogFile;
use crate::process::{self, Proc};
use crate::procfs;
use crate::spec::{AbnormalReason, InstanceSpec, InstanceState, Limits, Source, Usage};

/// The first relaunch delay; doubled after each exit up to [`MAX_BACKOFF`]
/// ([`LaunchBackoff`]).
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// An instance that ran this long before exiting is relaunched after [`INITIAL_BACKOFF`].
const RESET_AFTER: Duration = Duration::from_secs(60);

/// Readiness polling while deploying, while abnormal, and while running.
const POLL_DEPLOYING: Duration = Duration::from_millis(100);
/// The first readiness check after a launch (then doubling up to `POLL_DEPLOYING`).
const POLL_DEPLOYING_FIRST: Duration = Duration::from_millis(5);
/// Between those checks, a process instance's port is probed with a
/// connect to `127.0.0.1` this often (a refused loopback connect costs a few
/// µs; the full check reads `/proc`), during [`PROBE_WINDOW`] after its
/// launch; a probe that connects brings the full check forward. So an
/// instance is seen listening within about a millisecond of its `listen()`.
const PROBE_EVERY: Duration = Duration::from_millis(1);
/// How long after a launch the port is probed (most programs listen well
/// within it; slower ones are found by the full checks alone).
const PROBE_WINDOW: Duration = Duration::from_secs(2);
const POLL_ABNORMAL: Duration = Duration::from_millis(250);
const POLL_RUNNING: Duration = Duration::from_secs(1);
/// An abnormal listening state must persist this long before it is reported, so
/// that a server opening its ports one after the other does not flap.
const ABNORMAL_GRACE: Duration = Duration::from_millis(1000);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// What the listening sockets say about readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listening {
    /// Listens where it should: connect to one of these to confirm.
    Ready(Vec<Listener>),
    /// Listens on the expected port, but only on loopback.
    Loopback(Listener),
    /// Listens, but only on other ports (sorted).
    OtherPorts(Vec<u16>),
    Nothing,
}

pub(crate) fn classify(listeners: &[Listener], expected: u16) -> Listening {
    let at: Vec<Listener> = listeners
        .iter()
        .copied()
        .filter(|l| l.port == expected)
        .collect();
    let reachable: Vec<Listener> = at.iter().copied().filter(|l| !l.is_loopback()).collect();
    if !reachable.is_empty() {
        return Listening::Ready(reachable);
    }
    if let Some(l) = at.first() {
        return Listening::Loopback(*l);
    }
    let mut ports: Vec<u16> = listeners.iter().map(|l| l.port).collect();
    ports.sort_unstable();
    ports.dedup();
    if ports.is_empty() {
        Listening::Nothing
    } else {
        Listening::OtherPorts(ports)
    }
}

/// The next look at a deploying instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// Connect to the port; check fully only if that connects.
    Probe,
    /// Check the listening sockets (and connect to confirm).
    Full,
}

/// How long to wait before the next look at a deploying instance, and which
/// look: `since_launch` is the time since its launch, `until_full` the time
/// until its next full check (of the doubling schedule), `probe` whether its
/// port may be probed (process instances: a Docker host port is published
/// by a proxy that accepts before the container listens).
pub(crate) fn next_deploy_look(
    since_launch: Duration,
    until_full: Duration,
    probe: bool,
) -> (Duration, Look) {
    if probe && since_launch < PROBE_WINDOW && until_full > PROBE_EVERY {
        (PROBE_EVERY, Look::Probe)
    } else {
        (until_full, Look::Full)
    }
}

/// Whether something accepts connections at `127.0.0.1:port` (a probe: the
/// full check decides whether it is the instance, and where it listens).
async fn accepts(port: u16) -> bool {
    let a = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
    matches!(
        tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(a)).await,
        Ok(Ok(_))
    )
}

/// A launched instance of either driver.
enum Launched {
    Proc(Proc),
    Container(Container),
}

struct InstanceSupervisor {
    inner: Arc<Inner>,
    spec: InstanceSpec,
    cancel: CancellationToken,
    live: Arc<Mutex<Live>>,
    last: InstanceState,
    /// Process driver: the host port handed out, the cgroup and its limits.
    port: Option<u16>,
    group: Option<Arc<Group>>,
    limits: Option<Limits>,
}

/// Runs the instance until `cancel` fires; the caller emits `Stopped`.
pub(crate) async fn supervise(
    inner: Arc<Inner>,
    spec: InstanceSpec,
    cancel: CancellationToken,
    live: Arc<Mutex<Live>>,
) {
    let mut s = InstanceSupervisor {
        inner,
        spec,
        cancel,
        live,
        last: InstanceState::Deploying,
        port: None,
        group: None,
        limits: None,
    };
    s.run().await;
    s.set_target(UsageTarget::Idle);
    if let Some(g) = s.group.take() {
        g.remove().await;
    }
    if let Some(p) = s.port.take() {
        if let Ok(mut ports) = s.inner.ports.lock() {
            ports.remove(&p);
        }
    }
    if !matches!(s.spec.source, Source::Process { .. }) {
        // In case the stop interrupted a launch half-way.
        s.inner.docker.remove_by_instance(&s.spec.instance_id).await;
    }
}

impl InstanceSupervisor {
    fn set(&mut self, state: InstanceState) {
        if state != self.last {
            tracing::info!(instance = %self.spec.instance_id, ?state, "instance state");
            self.inner.emit(&self.spec.instance_id, state.clone());
            self.last = state;
        }
    }

    fn set_target(&self, target: UsageTarget) {
        if let Ok(mut l) = self.live.lock() {
            l.target = target;
            l.prev_cpu = None;
        }
    }

    /// Sleeps unless cancelled first; false when cancelled.
    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.cancel.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn run(&mut self) {
        let volume = self
            .inner
            .volume_dir(&self.spec.title_region, &self.spec.vs_name);
        let opened = std::fs::create_dir_all(&volume)
            .map_err(|e| {
                format!(
                    "cannot create the volume directory {}: {e}",
                    volume.display()
                )
            })
            .and_then(|_| {
                LogFile::open(
                    &self.inner.cfg.data_dir,
                    &self.spec,
                    self.inner.cfg.log_rotation,
                )
                .map_err(|e| format!("cannot open the log file: {e}"))
            });
        let log = match opened {
            Ok(l) => Arc::new(l),
            Err(detail) => {
                self.set(InstanceState::Abnormal {
                    reason: AbnormalReason::LaunchFailed,
                    detail,
                });
                self.cancel.cancelled().await;
                return;
            }
        };
        let mut backoff = LaunchBackoff::new(INITIAL_BACKOFF, MAX_BACKOFF);
        loop {
            self.set(InstanceState::Deploying);
            log.clear_last_stderr();
            let cancel = self.cancel.clone();
            let launched = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.launch(&log, &volume) => r,
            };
            let mut launched = match launched {
                Ok(l) => l,
                Err(e) => {
                    self.set(InstanceState::Abnormal {
                        reason: e.reason,
                        detail: e.detail,
                    });
                    if e.reason == AbnormalReason::ImageUnusable {
                        // Not retried: the same image would fail the same way.
                        self.cancel.cancelled().await;
                        return;
                    }
                    backoff.on_failure();
                    if !self.sleep(backoff.delay()).await {
                        return;
                    }
                    continue;
                }
            };
            self.set_target(match &launched {
                Launched::Proc(p) => UsageTarget::Process {
                    root: p.pid,
                    group: p.group.clone().filter(|_| p.in_group),
                },
                Launched::Container(c) => UsageTarget::Container { id: c.id.clone() },
            });
            let started = Instant::now();
            let exit = self.watch(&mut launched).await;
            self.set_target(UsageTarget::Idle);
            let Some(exit) = exit else {
                match launched {
                    Launched::Proc(p) => p.stop().await,
                    Launched::Container(c) => c.stop().await,
                }
                return;
            };
            match launched {
                Launched::Proc(mut p) => p.finish_logs().await,
                Launched::Container(c) => c.remove().await,
            }
            self.set(describe_exit(&exit, self.spec.memory_mb, log.last_stderr()));
            // Every exit of an instance is a failure; one that ran long
            // enough had got properly started, so the count starts over.
            if started.elapsed() >= RESET_AFTER {
                backoff.on_started();
            }
            backoff.on_failure();
            if !self.sleep(backoff.delay()).await {
                return;
            }
        }
    }

    /// A free host port for a process instance: the previous one while it is free.
    fn pick_port(&mut self) -> Result<u16, LaunchError> {
        let free = |p: u16| std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, p)).is_ok();
        if let Some(p) = self.port {
            if free(p) {
                return Ok(p);
            }
        }
        let mut ports = self.inner.ports.lock().map_err(|_| LaunchError {
            reason: AbnormalReason::LaunchFailed,
            detail: "internal state poisoned".into(),
        })?;
        for _ in 0..50 {
            let Ok(l) = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)) else {
                continue;
            };
            let Ok(addr) = l.local_addr() else { continue };
            let p = addr.port();
            if ports.insert(p) {
                if let Some(old) = self.port.replace(p) {
                    ports.remove(&old);
                }
                return Ok(p);
            }
        }
        Err(LaunchError {
            reason: AbnormalReason::LaunchFailed,
            detail: "no free host port could be found".into(),
        })
    }

    async fn launch(
        &mut self,
        log: &Arc<LogFile>,
        volume: &std::path::Path,
    ) -> Result<Launched, LaunchError> {
        let spec = self.spec.clone();
        match &spec.source {
            Source::Process { command } => {
                if self.limits.is_none() {
                    let name = format!(
                        "{}{}",
                        cgroup::group_prefix(&self.inner.cfg.agent_id),
                        spec.instance_id
                    );
                    let (g, limits) =
                        self.inner
                            .cgroups
                            .create(&name, spec.cpu_millicores, spec.memory_mb);
                    self.group = g.map(Arc::new);
                    self.limits = Some(limits);
                }
                let port = self.pick_port()?;
                process::launch(
                    &spec,
                    command,
                    port,
                    volume,
                    log,
                    self.group.clone(),
                    &self.inner.ledger,
                )
                .map(Launched::Proc)
                .map_err(|detail| LaunchError {
                    reason: AbnormalReason::LaunchFailed,
                    detail,
                })
            }
            _ => {
                let tmp = self.inner.cfg.data_dir.join("tmp");
                let image = self.inner.docker.prepare(&spec, &tmp).await?;
                self.inner
                    .docker
                    .launch(&spec, &image, volume, log)
                    .await
                    .map(Launched::Container)
            }
        }
    }

    /// Watches one launch until it exits (`Some`) or the instance is stopped (`None`).
    async fn watch(&mut self, l: &mut Launched) -> Option<ExitInfo> {
        let deadline = Instant::now() + self.inner.cfg.deploy_timeout;
        let mut pending: Option<(InstanceState, Instant)> = None;
        let cancel = self.cancel.clone();
        // While deploying, look early and then less often (most programs
        // listen within a few milliseconds of their start), probing the
        // port of a process instance in between (`next_deploy_look`).
        let launched = Instant::now();
        let mut deploy_poll = POLL_DEPLOYING_FIRST;
        let mut next_full = launched + deploy_poll;
        let probe_port = match l {
            Launched::Proc(_) => self.port,
            Launched::Container(_) => None,
        };
        loop {
            let (interval, look) = match self.last {
                InstanceState::Running { .. } => (POLL_RUNNING, Look::Full),
                InstanceState::Deploying => {
                    let now = Instant::now();
                    next_deploy_look(
                        now - launched,
                        next_full.saturating_duration_since(now),
                        probe_port.is_some() && pending.is_none(),
                    )
                }
                _ => (POLL_ABNORMAL, Look::Full),
            };
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return None,
                exit = wait(l) => return Some(exit),
                _ = tokio::time::sleep(interval) => {}
            }
            if look == Look::Probe {
                match probe_port {
                    Some(port) if accepts(port).await => {}
                    _ => continue,
                }
            }
            if self.last == InstanceState::Deploying {
                deploy_poll = (deploy_poll * 2).min(POLL_DEPLOYING);
                next_full = Instant::now() + deploy_poll;
            }
            let Some(target) = self.observe(l, deadline).await else {
                pending = None;
                continue;
            };
            if target == self.last {
                pending = None;
            } else if matches!(target, InstanceState::Running { .. }) {
                pending = None;
                self.set(target);
            } else {
                match &pending {
                    Some((p, since)) if *p == target => {
                        if since.elapsed() >= ABNORMAL_GRACE {
                            pending = None;
                            self.set(target);
                        }
                    }
                    _ => pending = Some((target, Instant::now())),
                }
            }
        }
    }

    /// The state the listening sockets call for, if any change is called for.
    async fn observe(&self, l: &Launched, deadline: Instant) -> Option<InstanceState> {
        let (expected, host_port, limits) = match l {
            Launched::Proc(p) => (
                self.port.unwrap_or(0),
                self.port.unwrap_or(0),
                Limits {
                    enforced: self.limits.as_ref().is_some_and(|x| x.enforced) && p.in_group,
                    ..self.limits.clone().unwrap_or(Limits {
                        mechanism: "none".into(),
                        enforced: false,
                    })
                },
            ),
            Launched::Container(c) => (self.spec.listen_port, c.host_port, c.limits.clone()),
        };
        let pids_of = match l {
            Launched::Proc(p) => {
                let pid = p.pid;
                let group = p.group.clone().filter(|_| p.in_group);
                Box::new(move || {
                    let from_group = group.map(|g| g.pids()).unwrap_or_default();
                    if from_group.is_empty() {
                        procfs::descendants(pid)
                    } else {
                        from_group
                    }
                }) as Box<dyn FnOnce() -> Vec<i32> + Send>
            }
            Launched::Container(c) => {
                let pid = c.pid;
                Box::new(move || {
                    if pid > 0 {
                        procfs::descendants(pid)
                    } else {
                        Vec::new()
                    }
                })
            }
        };
        let listeners = tokio::task::spawn_blocking(move || procfs::listeners(&pids_of()))
            .await
            .unwrap_or_default();
        let configured = self.spec.listen_port;
        let is_proc = matches!(l, Launched::Proc(_));
        match classify(&listeners, expected) {
            Listening::Ready(ls) => {
                let addrs: Vec<SocketAddr> = match l {
                    Launched::Proc(_) => ls
                        .iter()
                        .flat_map(|x| {
                            if x.is_wildcard() {
                                vec![
                                    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), expected),
                                    SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), expected),
                                ]
                            } else {
                                vec![SocketAddr::new(x.addr, expected)]
                            }
                        })
                        .collect(),
                    Launched::Container(_) => vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), host_port)],
                };
                for a in addrs {
                    if let Ok(Ok(_)) = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(a)).await {
                        return Some(InstanceState::Running {
                            port: host_port,
                            limits,
                        });
                    }
                }
                None
            }
            Listening::Loopback(x) => Some(InstanceState::Abnormal {
                reason: AbnormalReason::ListeningOnLoopback,
                detail: format!(
                    "listens on {x}, which cannot be reached from outside {}; listen on 0.0.0.0:{} instead",
                    if is_proc { "the host" } else { "the container" },
                    x.port
                ),
            }),
            Listening::OtherPorts(ports) => {
                let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(", ");
                let plural = if ports.len() > 1 { "s" } else { "" };
                let detail = if is_proc {
                    format!(
                        "listens on port{plural} {list} but not on port {expected}; a process instance must listen on \
                         the port given in $PGOS_VS_Listen_Port ({expected} for this instance, not the configured {configured})"
                    )
                } else {
                    format!(
                        "listens on port{plural} {list} but not on the configured listen port {expected}; listen on \
                         0.0.0.0:{expected} (also given in $PGOS_VS_Listen_Port) or change the configured port"
                    )
                };
                Some(InstanceState::Abnormal {
                    reason: AbnormalReason::PortMismatch,
                    detail,
                })
            }
            Listening::Nothing if Instant::now() >= deadline => Some(InstanceState::Abnormal {
                reason: AbnormalReason::NotListening,
                detail: format!(
                    "nothing listens on port {expected} {} s after the start; the server must listen on 0.0.0.0:{expected} \
                     (the port is given in $PGOS_VS_Listen_Port)",
                    self.inner.cfg.deploy_timeout.as_secs()
                ),
            }),
            Listening::Nothing => None,
        }
    }
}

async fn wait(l: &mut Launched) -> ExitInfo {
    match l {
        Launched::Proc(p) => p.wait().await,
        Launched::Container(c) => c.wait().await,
    }
}

/// Cumulative CPU nanoseconds and memory bytes of a target.
async fn sample(inner: &Inner, target: &UsageTarget) -> Option<(u64, u64)> {
    match target {
        UsageTarget::Idle => None,
        UsageTarget::Process { root, group } => {
            let (root, group) = (*root, group.clone());
            tokio::task::spawn_blocking(move || {
                let mut pids = group.as_ref().map(|g| g.pids()).unwrap_or_default();
                if pids.is_empty() {
                    pids = procfs::descendants(root);
                }
                if pids.is_empty() {
                    return None;
                }
                let mem = group
                    .as_ref()
                    .and_then(|g| g.memory_bytes())
                    .unwrap_or_else(|| procfs::rss_bytes(&pids));
                Some((procfs::cpu_ns(&pids), mem))
            })
            .await
            .ok()
            .flatten()
        }
        UsageTarget::Container { id } => inner.docker.stats(id).await,
    }
}

/// `usage()` of one instance: CPU averaged since the previous call.
pub(crate) async fn usage(inner: &Inner, live: &Mutex<Live>) -> Option<Usage> {
    let (target, prev) = {
        let l = live.lock().ok()?;
        (l.target.clone(), l.prev_cpu)
    };
    let (cpu, mut mem) = sample(inner, &target).await?;
    let now = std::time::Instant::now();
    let (c0, t0, c1, t1) = match prev {
        Some((c, t)) if c <= cpu && now > t => (c, t, cpu, now),
        _ => {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (cpu2, mem2) = sample(inner, &target).await?;
            mem = mem2;
            (cpu, now, cpu2.max(cpu), std::time::Instant::now())
        }
    };
    if let Ok(mut l) = live.lock() {
        l.prev_cpu = Some((c1, t1));
    }
    let wall = t1.duration_since(t0).as_nanos().max(1);
    let millicores = (u128::from(c1 - c0) * 1000 / wall).min(u128::from(u32::MAX)) as u32;
    Some(Usage {
        cpu_millicores: millicores,
        memory_bytes: mem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(addr: &str, port: u16) -> Listener {
        Listener {
            addr: addr.parse().unwrap(),
            port,
        }
    }

    #[test]
    fn a_deploying_process_is_probed_every_millisecond_between_full_checks() {
        let ms = Duration::from_millis;
        // Right after the launch, the first full check is 5 ms away: probe.
        assert_eq!(next_deploy_look(ms(0), ms(5), true), (ms(1), Look::Probe));
        assert_eq!(
            next_deploy_look(ms(900), ms(80), true),
            (ms(1), Look::Probe)
        );
        // The full check is due within the probe interval: do it then.
        assert_eq!(next_deploy_look(ms(4), ms(1), true), (ms(1), Look::Full));
        assert_eq!(next_deploy_look(ms(4), ms(0), true), (ms(0), Look::Full));
        // Past the window, or not probeable (a container, or a state
        // pending its grace): full checks only, on their schedule.
        assert_eq!(
            next_deploy_look(PROBE_WINDOW, ms(100), true),
            (ms(100), Look::Full)
        );
        assert_eq!(next_deploy_look(ms(0), ms(5), false), (ms(5), Look::Full));
    }

    #[tokio::test]
    async fn the_probe_sees_a_listener_and_not_a_closed_port() {
        let l = std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(accepts(port).await);
        drop(l);
        assert!(!accepts(port).await);
    }

    #[test]
    fn classifies_listeners() {
        assert_eq!(classify(&[], 8080), Listening::Nothing);
        assert_eq!(
            classify(&[l("0.0.0.0", 8080), l("127.0.0.1", 9000)], 8080),
            Listening::Ready(vec![l("0.0.0.0", 8080)])
        );
        assert_eq!(
            classify(&[l("::", 8080)], 8080),
            Listening::Ready(vec![l("::", 8080)])
        );
        assert_eq!(
            classify(&[l("127.0.0.1", 8080)], 8080),
            Listening::Loopback(l("127.0.0.1", 8080))
        );
        assert_eq!(
            classify(&[l("::1", 8080)], 8080),
            Listening::Loopback(l("::1", 8080))
        );
        assert_eq!(
            classify(
                &[l("0.0.0.0", 9090), l("::", 9090), l("127.0.0.1", 81)],
                8080
            ),
            Listening::OtherPorts(vec![81, 9090])
        );
        assert_eq!(
            classify(&[l("10.1.2.3", 8080)], 8080),
            Listening::Ready(vec![l("10.1.2.3", 8080)])
        );
    }
}
