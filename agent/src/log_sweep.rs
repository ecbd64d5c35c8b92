//! The sweep of old logs: every `sweep_interval`, the log directories of DS
//! processes that ended (`data_dir/logs/<process_id>/`) and the log files
//! of VS instances that ended go when older than the retention age, then
//! oldest first while all of them take more than the cap
//! ([`respawn_runtime::retention`]). DS and VS logs are capped separately,
//! each at `max_total_bytes`.

use crate::state::Shared;
use respawn_runtime::retention::{self, LogUnit, Retention};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// The DS log directories under `logs_dir`, those named in `live` marked
/// live (not measured yet).
pub(crate) fn ds_dirs(logs_dir: &Path, live: &HashSet<String>) -> Vec<(PathBuf, bool)> {
    let Ok(rd) = std::fs::read_dir(logs_dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let is_live = live.contains(e.file_name().to_string_lossy().as_ref());
            (e.path(), is_live)
        })
        .collect()
}

/// One sweep of DS and VS logs; returns the bytes freed. Blocking.
pub(crate) fn sweep_once(shared: &Shared, retention: &Retention) -> u64 {
    // Listed under the registry lock, under which a DS's directory is also
    // made and the DS registered (`supervisor::launch`): every directory
    // listed belongs to a process in the live set or to one that ended.
    let dirs = {
        let reg = shared.reg();
        let live: HashSet<String> = reg.procs.keys().map(|id| id.as_str().to_string()).collect();
        ds_dirs(&shared.logs_dir, &live)
    };
    let units: Vec<LogUnit> = dirs
        .into_iter()
        .map(|(path, live)| {
            let (bytes, last_write) = retention::measure(&path);
            LogUnit {
                paths: vec![path],
                live,
                last_write,
                bytes,
            }
        })
        .collect();
    let chosen = retention::to_delete(&units, retention, SystemTime::now());
    let freed = retention::delete(&units, &chosen);
    freed + shared.vs.sweep_logs(retention)
}

/// Sweeps every `interval` until the agent stops.
pub(crate) async fn run(shared: Arc<Shared>) {
    let limits = shared.config.logs;
    let mut tick = tokio::time::interval(limits.sweep_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let s = shared.clone();
        let retention = limits.retention;
        match tokio::task::spawn_blocking(move || sweep_once(&s, &retention)).await {
            Ok(0) => {}
            Ok(freed) => tracing::info!(freed_bytes = freed, "old DS and VS logs deleted"),
            Err(e) => tracing::warn!(error = %e, "log sweep failed"),
        }
    }
}
