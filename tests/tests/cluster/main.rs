//! The cluster: three server nodes in one process over the transport seam,
//! simulated agents on real QUIC links, faults injected. Each property the
//! design promises is a test that fails if it breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_tests::cluster::*;
use respawn_tests::history::{check, summary, FinalState, Observation};
use respawn_tests::*;
use respawn_types::*;
use std::time::Duration;

mod agent_failover;
mod partition;
mod placement;
mod randomized;
mod recovery;
mod silent_leader;

const T: Duration = Duration::from_secs(30);

async fn fulfilled(
    b: &Backend,
    history: &respawn_tests::history::History,
) -> anyhow::Result<String> {
    let pl = wait_for("an accepted placement", T, || async {
        place_recorded(b, history).await.ok().flatten()
    })
    .await?;
    let v = b.wait_status(&pl, "FULFILLED", T).await?;
    history.record(Observation::PlacementStatusSeen {
        placement: PlacementId::new_unchecked(pl.clone()),
        status: PlacementStatus::Fulfilled,
    });
    assert_eq!(v["battle_session_status"], "ACTIVE");
    Ok(pl)
}
