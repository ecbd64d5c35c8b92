//! A subscriber to a test cluster's placement events: a virtual server
//! whose instances the simulated agents report RUNNING on a port this
//! harness serves ([`EventSink`]). The cluster's VS actor delivers
//! `/pgos_event` there through the real edge proxy, at least once, and each
//! placement event is recorded in the history
//! ([`Observation::EventDelivered`]) for the checker.

use crate::cluster::{TestCluster, TITLE_REGION};
use crate::history::{History, Observation};
use crate::node::python_vs_spec;
use crate::support::wait_for;
use axum::extract::State;
use axum::http::StatusCode;
use respawn_types::{PlacementId, PlacementStatus, VsInstanceStatus};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The virtual server the events go to.
pub const EVENTS_VS: &str = "vs-events";
const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// Receives `/pgos_event` deliveries and records the placement events.
pub struct EventSink {
    /// Where it listens on 127.0.0.1 (give it to the simulated agents).
    pub port: u16,
    /// Bodies that were not a well-formed placement event (must stay empty).
    pub malformed: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Sink {
    history: History,
    malformed: Arc<Mutex<Vec<String>>>,
}

impl EventSink {
    /// Listens on a free port of 127.0.0.1, recording into `history`.
    pub async fn start(history: History) -> anyhow::Result<EventSink> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let malformed = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink {
            history,
            malformed: malformed.clone(),
        };
        let app = axum::Router::new()
            .route("/pgos_event", axum::routing::post(on_event))
            .fallback(|| async { "event sink" })
            .with_state(sink);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(EventSink {
            port,
            malformed,
            task,
        })
    }

    /// What was not a well-formed placement event.
    pub fn malformed(&self) -> Vec<String> {
        self.malformed.lock().unwrap().clone()
    }
}

impl Drop for EventSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn on_event(State(sink): State<Sink>, body: String) -> StatusCode {
    let Ok(v) = serde_json::from_str::<Value>(&body) else {
        sink.malformed.lock().unwrap().push(body);
        return StatusCode::OK;
    };
    let Some(name) = v["event_name"].as_str() else {
        sink.malformed.lock().unwrap().push(body);
        return StatusCode::OK;
    };
    if !name.starts_with("event_battle_session_placement_") {
        return StatusCode::OK; // another event: not the checker's business
    }
    let placement = v["event_data"]["placement_id"].as_str();
    let status = serde_json::from_value::<PlacementStatus>(v["event_data"]["status"].clone());
    let id = v["trigger_id"].as_str();
    match (placement, status, id) {
        (Some(p), Ok(status), Some(id)) => sink.history.record(Observation::EventDelivered {
            placement: PlacementId::new_unchecked(p),
            status,
            event_id: id.to_string(),
        }),
        _ => sink.malformed.lock().unwrap().push(body),
    }
    StatusCode::OK
}

impl TestCluster {
    /// Defines [`EVENTS_VS`] and a handler of the three placement events
    /// for it, then waits until an instance of it runs (the simulated
    /// agents must have been started with the sink's port). Call before
    /// the first placement: the checker then requires every evented
    /// placement's event ([`crate::history::FinalState::with_events`]).
    pub async fn subscribe_events(&self) -> anyhow::Result<()> {
        let leader = self.wait_leader().await?;
        let b = self.backend(leader);
        let base = format!("/admin/title_regions/{TITLE_REGION}");
        let a = b
            .admin(
                ADMIN_TOKEN,
                "PUT",
                &format!("{base}/virtual_servers/{EVENTS_VS}"),
                Some(python_vs_spec(json!({}))),
            )
            .await?;
        anyhow::ensure!(a.status == 200, "PUT VS: {} {}", a.status, a.body);
        let events = [
            "event_battle_session_placement_fulfilled",
            "event_battle_session_placement_timedout",
            "event_battle_session_placement_failed",
        ];
        let a = b
            .admin(
                ADMIN_TOKEN,
                "PUT",
                &format!("{base}/event_handlers/placements"),
                Some(json!({"virtual_server": EVENTS_VS, "events": events})),
            )
            .await?;
        anyhow::ensure!(a.status == 204, "PUT handler: {} {}", a.status, a.body);
        wait_for("the events VS running", Duration::from_secs(60), || async {
            self.read(leader, |s| {
                s.vs_instances
                    .values()
                    .any(|i| i.vs.as_str() == EVENTS_VS && i.status == VsInstanceStatus::Running)
            })
            .then_some(())
        })
        .await
    }
}

impl TestCluster {
    /// Waits until the leader's outbox of [`TITLE_REGION`] is empty (every
    /// event delivered, or given up on and logged), then until all running
    /// nodes converged; returns the state.
    pub async fn wait_events_delivered(&self) -> anyhow::Result<respawn_state::ClusterState> {
        wait_for(
            "the event outbox drained",
            Duration::from_secs(120),
            || async {
                let leader = self.wait_leader().await.ok()?;
                let tr = respawn_types::TitleRegionId::new_unchecked(TITLE_REGION);
                self.read(leader, |s| s.outbox.get(&tr).is_none_or(|o| o.is_empty()))
                    .then_some(())
            },
        )
        .await?;
        self.wait_converged().await
    }
}
