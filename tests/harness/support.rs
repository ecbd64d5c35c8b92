//! What every part of the harness needs: the `respawn` binary under test,
//! test logs, and waiting on a condition with a deadline (never a fixed sleep).

use anyhow::bail;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The `respawn` binary next to the running test (`target/<profile>/respawn`).
///
/// The tests using it are integration tests of the `respawn` package, so
/// cargo builds that binary, up to date, before it runs them.
pub fn respawn_bin() -> PathBuf {
    // target/<profile>/deps/<test-binary> → target/<profile>/respawn
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    let bin = dir.join("respawn");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test -p respawn`",
        bin.display()
    );
    bin
}

/// Polls `cond` until it returns `Some`, failing after `deadline`.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Logs to the test output, filtered by `RUST_LOG` (default `warn`).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_test_writer()
        .try_init();
}
