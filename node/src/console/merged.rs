//! VS charts merged across the cluster's nodes (see `respawn_console::merge`).
//!
//! The page's node asks every other member, over HTTP with the cluster's
//! admin token, for its part of the VS's series
//! (`GET /console/internal/vs_part/{tr}/{name}`), all at once, each within
//! [`PEER_TIMEOUT`], and merges the answers with its own. A node that does
//! not answer in time is left out and named on the page. Bounded: one
//! request per member (the membership is small), each answer at most
//! [`MAX_PART_BYTES`].

use super::{ConsoleState, PageError};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use respawn_console::merge::{merge, VsPart};
use respawn_console::sample::{vs_charts_of, Chart};
use respawn_console::session::same;
use serde::Serialize;
use std::time::Duration;

/// How long the page waits for a peer's part.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from a peer (an hour of 11 series and a histogram
/// is about 100 KiB of JSON).
pub const MAX_PART_BYTES: usize = 1024 * 1024;

/// Which nodes' figures a page's charts hold.
#[derive(Debug, Default, Serialize)]
pub struct Coverage {
    /// Nodes whose figures are in (this one first).
    pub merged: Vec<u64>,
    /// Peers that did not answer in time, and why.
    pub missing: Vec<(u64, String)>,
}

/// `GET /console/internal/vs_part/{tr}/{name}` (`Authorization: Bearer
/// <admin token>`): this node's part of a VS's figures, for its peers.
pub async fn vs_part(
    State(c): State<ConsoleState>,
    headers: HeaderMap,
    Path((tr, name)): Path<(String, String)>,
) -> Response {
    let ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t, &c.edge.admin_token));
    if !ok {
        return crate::edge::error::ApiError::unauthorized("wrong or missing admin token")
            .into_response();
    }
    Json(c.sampler().vs_part(&(tr, name))).into_response()
}

async fn fetch(
    http: &reqwest::Client,
    addr: &str,
    token: &str,
    tr: &str,
    name: &str,
) -> Result<VsPart, String> {
    let url = format!("http://{addr}/console/internal/vs_part/{tr}/{name}");
    let res = http
        .get(url)
        .bearer_auth(token)
        .timeout(PEER_TIMEOUT)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if res.status() != StatusCode::OK {
        return Err(format!("answered {}", res.status()));
    }
    if res
        .content_length()
        .is_some_and(|n| n as usize > MAX_PART_BYTES)
    {
        return Err("answer too large".into());
    }
    let body = res.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_PART_BYTES {
        return Err("answer too large".into());
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// The charts of VS `name` of title region `tr` (both validated by the
/// caller), with every reachable node's figures.
pub async fn vs_charts(
    c: &ConsoleState,
    tr: &str,
    name: &str,
    now_ms: u64,
) -> Result<(Vec<Chart>, Coverage), PageError> {
    let me = c.edge.server.cluster.node_id();
    let local = c.sampler().vs_part(&(tr.to_string(), name.to_string()));
    let peers: Vec<(u64, String)> = c
        .edge
        .server
        .cluster
        .consensus
        .membership()
        .nodes
        .iter()
        .filter(|(id, _)| **id != me)
        .map(|(id, n)| (*id, n.http_addr.clone()))
        .collect();
    let asks = peers.iter().map(|(id, addr)| async move {
        (
            *id,
            fetch(&c.http, addr, &c.edge.admin_token, tr, name).await,
        )
    });
    let mut cov = Coverage {
        merged: vec![me],
        ..Coverage::default()
    };
    let mut parts = Vec::new();
    for (id, got) in futures::future::join_all(asks).await {
        match got {
            Ok(p) => {
                cov.merged.push(id);
                parts.push(p);
            }
            Err(why) => cov.missing.push((id, why)),
        }
    }
    let charts = vs_charts_of(&merge(&local, &parts), now_ms)?;
    Ok((charts, cov))
}
