//! The VS actors' ports on a server node ([`ClusterVsPorts`]): the load the
//! autoscaler reads, and events and tasks delivered as calls through the
//! invoke path.

use crate::vs_hub::VsHub;
use crate::vs_routing::{invoke, Call};
use axum::body::Body;
use axum::http::Request;
use futures::future::BoxFuture;
use respawn_actors::{Delivery, Site, VsPorts};
use respawn_consensus::Consensus;
use respawn_proxy::Invoker;
use respawn_types::{TitleRegionId, VsName};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The VS actors' ports on a server node.
pub struct ClusterVsPorts {
    pub consensus: Consensus,
    pub hub: Arc<VsHub>,
}

impl VsPorts for ClusterVsPorts {
    fn load(&self) -> HashMap<(TitleRegionId, VsName), u32> {
        self.hub.load.cluster_peaks()
    }

    fn deliver(
        &self,
        tr: &TitleRegionId,
        vs: &VsName,
        path: &'static str,
        invoker: &'static str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Delivery> {
        let consensus = self.consensus.clone();
        let hub = self.hub.clone();
        let call = Call {
            tr: tr.clone(),
            vs: vs.clone(),
            invoker: if invoker == "task" {
                Invoker::Task
            } else {
                Invoker::Event
            },
            player: None,
            client_ip: None,
            upstream_path: path.to_string(),
            timeout,
        };
        Box::pin(async move {
            let started = Instant::now();
            let req = Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body));
            let req = match req {
                Ok(r) => r,
                Err(e) => {
                    return Delivery {
                        status: None,
                        response: e.to_string(),
                        latency_ms: 0,
                    }
                }
            };
            let res = invoke(&consensus, &hub, call, req).await;
            let status = res.status().as_u16();
            // Read at most 1 KiB of the answer for the trigger log.
            let body = axum::body::to_bytes(res.into_body(), 64 * 1024)
                .await
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(1024)]).into_owned())
                .unwrap_or_default();
            Delivery {
                status: Some(status),
                response: body,
                latency_ms: started.elapsed().as_millis() as u64,
            }
        })
    }

    fn site(&self) -> Site {
        self.hub.site.clone()
    }
}
