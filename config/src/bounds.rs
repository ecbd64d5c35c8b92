//! Settings that bound what a long-running node or agent keeps: the HTTP
//! edge's connections (`[server.edge]`), snapshot triggers
//! (`server.snapshot_every_*`) and the agent's log files (`[agent.logs]`).
//! docs/operations.md ("Bounds and retention") lists each with its default.

use serde::{Deserialize, Serialize};

use crate::{invalid, ConfigError};

/// Limits of the HTTP edge's connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EdgeLimits {
    /// A connection must send a request's complete headers within this
    /// long (ms) of starting it, or it is closed.
    pub header_read_timeout_ms: u64,
    /// A keep-alive connection with no request in flight is closed after
    /// this long (ms) without one.
    pub idle_timeout_ms: u64,
    /// Most connections open at once; past it new connections are closed
    /// at once (the ones open are served).
    pub max_connections: usize,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        EdgeLimits {
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_connections: 10_000,
        }
    }
}

/// Rotation and retention of the agent's log files: DS stdout/stderr and
/// VS instance logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentLogs {
    /// A log file is rotated when it reaches this size (bytes).
    pub max_file_bytes: u64,
    /// Rotated files kept per log (`<name>.1` … `<name>.<n>`).
    pub rotated_files: usize,
    /// Logs of DS processes and VS instances that ended longer ago than
    /// this (seconds) are deleted.
    pub retention_secs: u64,
    /// Most bytes all logs together may take; the logs of the processes
    /// and instances that ended longest ago are deleted first.
    pub max_total_bytes: u64,
    /// How often the sweep runs (seconds).
    pub sweep_interval_secs: u64,
}

impl Default for AgentLogs {
    fn default() -> Self {
        AgentLogs {
            max_file_bytes: 10 * 1024 * 1024,
            rotated_files: 2,
            retention_secs: 7 * 24 * 3600,
            max_total_bytes: 2 * 1024 * 1024 * 1024,
            sweep_interval_secs: 300,
        }
    }
}

pub(crate) fn default_snapshot_every_commands() -> u64 {
    20_000
}

pub(crate) fn default_snapshot_every_log_bytes() -> u64 {
    32 * 1024 * 1024
}

impl EdgeLimits {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout_ms == 0 {
            return Err(invalid(
                "server.edge.header_read_timeout_ms",
                "must be at least 1",
            ));
        }
        if self.idle_timeout_ms == 0 {
            return Err(invalid("server.edge.idle_timeout_ms", "must be at least 1"));
        }
        if self.max_connections == 0 {
            return Err(invalid("server.edge.max_connections", "must be at least 1"));
        }
        Ok(())
    }
}

impl AgentLogs {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.max_file_bytes < 4096 {
            return Err(invalid(
                "agent.logs.max_file_bytes",
                "must be at least 4096",
            ));
        }
        if self.sweep_interval_secs == 0 {
            return Err(invalid(
                "agent.logs.sweep_interval_secs",
                "must be at least 1",
            ));
        }
        Ok(())
    }
}
