//! Runs virtual-server (VS) instances on one host.
//!
//! A VS is a game developer's own web server, written in any language, that the
//! platform runs and proxies HTTP to. This crate starts, watches, limits, logs and
//! stops VS instances for the host agent, through two drivers:
//!
//! - the **process driver** ([`Source::Process`]) spawns any executable directly on
//!   the host;
//! - the **Docker driver** ([`Source::DockerImage`], [`Source::DockerArchive`],
//!   [`Source::DockerBuild`]) runs a container in the local Docker engine, talking to
//!   it over its unix socket. There is no registry: images are never pulled.
//!
//! # Ports
//!
//! A VS must listen for HTTP on `0.0.0.0` (or `::`) at the port given in the
//! environment variable `PGOS_VS_Listen_Port`; the runtime always sets it.
//!
//! - **Processes share the host network**, so several instances of one VS on one
//!   host cannot all bind the configured [`InstanceSpec::listen_port`]. The process
//!   driver therefore allocates a free host port per instance and passes *that* port
//!   as `PGOS_VS_Listen_Port` (the configured `listen_port` is only used in messages).
//!   The port is kept across relaunches of the instance while it stays free.
//! - **Containers have their own network**, so the Docker driver passes the
//!   configured `listen_port` unchanged and publishes it on an ephemeral host port
//!   bound to `0.0.0.0`.
//!
//! Either way [`InstanceState::Running::port`] is the **host** port to proxy to.
//!
//! # States
//!
//! Every instance starts [`InstanceState::Deploying`]. The runtime finds the TCP
//! sockets the instance's processes listen on (from `/proc/<pid>/net/tcp{,6}` and the
//! `socket:[inode]` links in `/proc/<pid>/fd` of the instance's root process and its
//! descendants; for containers the root is the container's init process) and moves
//! the instance to:
//!
//! - `Running` once something listens on all interfaces at the expected port and a
//!   TCP connection to it succeeds;
//! - `Abnormal(ListeningOnLoopback)` when it listens on 127.0.0.1 / ::1 at that port;
//! - `Abnormal(PortMismatch)` when it listens only on other ports;
//! - `Abnormal(NotListening)` when nothing listens [`RuntimeConfig::deploy_timeout`]
//!   (30 s by default) after the launch.
//!
//! An instance that is abnormal but alive keeps being watched and becomes `Running`
//! when it fixes itself. When an instance exits it becomes `Abnormal(Crashed)` or
//! `Abnormal(OutOfMemory)` and is relaunched with exponential backoff (0.5 s doubling
//! up to 30 s, reset after 60 s of uptime), going through `Deploying` again. A
//! program that cannot be started is `Abnormal(LaunchFailed)` and is retried on the
//! same schedule. An image that cannot be used (absent, bad archive, failed build) is
//! `Abnormal(ImageUnusable)` and is *not* retried: start the instance again once the
//! image is fixed. [`VsRuntime::stop`] ends an instance for good (`Stopped`).
//!
//! # Limits
//!
//! Processes are placed in a cgroup right after they are spawned: cgroup v2 when
//! `/sys/fs/cgroup/cgroup.controllers` exists (a child group under
//! `/sys/fs/cgroup/respawn`, `memory.max` and `cpu.max`), else cgroup v1 when the
//! `memory` and `cpu` hierarchies are writable (`memory.limit_in_bytes`,
//! `cpu.cfs_quota_us`), else no limits at all ([`Limits::enforced`] is false). A
//! `cpu_millicores` or `memory_mb` of 0 means "no limit" for that resource.
//! Containers get Docker's own memory and CPU limits.
//!
//! # Environment
//!
//! A process gets the agent's `PATH`, `HOME`, `LANG`, `LC_ALL` and `TZ` (when set),
//! then [`InstanceSpec::env`], then `PGOS_VS_Listen_Port`; nothing else from the
//! agent's environment leaks in. Its working directory is the VS's persistent volume
//! directory ([`VsRuntime::volume_dir`]). A container gets `InstanceSpec::env` plus
//! `PGOS_VS_Listen_Port`, and the volume directory mounted at [`CONTAINER_VOLUME_PATH`].
//!
//! # Logs
//!
//! Standard output and error are stored line by line as JSON lines under
//! `<data_dir>/logs/<title_region>/<vs_name>/v<version>/<instance_id>.log` and read
//! back with [`VsRuntime::query_logs`].
//!
//! Each instance's file is rotated by size ([`RuntimeConfig::log_rotation`],
//! [`rotate`]); [`VsRuntime::sweep_logs`] deletes the logs of ended instances
//! by age and total size ([`retention`]).
//!
//! # Supervision
//!
//! [`LaunchBackoff`] and [`child::spawn`] are the one relaunch policy and the
//! one way to spawn a supervised child (output capture, death with the agent,
//! a record in a [`leftovers::Ledger`]) for VS process instances here and for
//! the agent's DS processes.
//!
//! # Lifecycle
//!
//! Create the [`VsRuntime`] inside a Tokio runtime. Dropping it does not stop the
//! instances: call [`VsRuntime::shutdown`]. A new runtime with the same
//! [`RuntimeConfig::agent_id`] cleans up after a previous one that died: it kills
//! the processes left in that agent's cgroups, stops the process instances its
//! ledger (`<data_dir>/children/`) names when they still run with the recorded
//! start time ([`leftovers`]), and removes that agent's containers (label
//! `respawn.agent=<agent_id>`).

mod cgroup;
pub mod child;
mod docker;
mod error;
mod exit;
pub mod foreign;
mod host;
mod launch_backoff;
pub mod leftovers;
mod listener;
mod logs;
mod process;
mod procfs;
pub mod retention;
pub mod rotate;
mod sock_diag;
mod spec;
mod supervisor;
mod tar;
mod vs_runtime;

pub use error::RuntimeError;
pub use launch_backoff::LaunchBackoff;
pub use spec::{
    AbnormalReason, InstanceEvent, InstanceSpec, InstanceState, Limits, LogLine, LogQuery,
    RuntimeConfig, Source, Usage, CONTAINER_VOLUME_PATH, DEFAULT_DEPLOY_TIMEOUT, LISTEN_PORT_ENV,
};
pub use vs_runtime::VsRuntime;
