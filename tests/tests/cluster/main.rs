//! The cluster: three server nodes in one process over the transport seam,
//! simulated agents on real QUIC links, faults injected. Each property the
//! design promises is a test that fails if it breaks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use respawn_tests::cluster::*;
use respawn_tests::events::EventSink;
use respawn_tests::history::{check, summary, FinalState, Observation};
use respawn_tests::*;
use respawn_types::*;
use std::time::Duration;

mod agent_failover;
mod autoscale;
mod autoscale_randomized;
mod console_charts;
mod events;
mod fleet_failover;
mod isolation;
mod membership;
mod parallel_real;
mod partition;
mod placement;
mod randomized;
mod readiness;
mod real_agent;
mod recovery;
mod silent_leader;

const T: Duration = Duration::from_secs(30);

/// Places until a placement is accepted (attempts the cluster cannot
/// answer, during an election, are recorded and tried again); a refusal
/// fails.
async fn accepted(
    b: &Backend,
    history: &respawn_tests::history::History,
) -> anyhow::Result<String> {
    wait_for("an accepted placement", T, || async {
        match place_recorded(b, history).await {
            PlaceOutcome::Accepted(pl) => Some(Ok(pl)),
            PlaceOutcome::Refused(status, body) => {
                Some(Err(anyhow::anyhow!("placement refused: {status} {body}")))
            }
            PlaceOutcome::Unavailable(_) => None,
        }
    })
    .await?
}

async fn fulfilled(
    b: &Backend,
    history: &respawn_tests::history::History,
) -> anyhow::Result<String> {
    let pl = accepted(b, history).await?;
    wait_status_recorded(b, history, &pl, PlacementStatus::Fulfilled, T).await?;
    assert_eq!(b.describe(&pl).await?["battle_session_status"], "ACTIVE");
    Ok(pl)
}
