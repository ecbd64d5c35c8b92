//! The edge's own request metrics (`respawn_http_request_duration_seconds`
//! by route, `respawn_http_requests_total` by route and status) through
//! handles resolved once per route and status: a request reads a small map
//! under a read lock instead of building label sets and looking them up in
//! the recorders, which allocates.
//!
//! Bound: one entry per route of the router plus `unmatched`, each with one
//! counter per status code answered (at most 1000), so the map stays small
//! whatever the traffic.

use metrics::{Counter, Histogram};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

/// The handles of one route.
struct RouteSeries {
    path: String,
    duration: Histogram,
    by_status: RwLock<Vec<(u16, Counter)>>,
}

impl RouteSeries {
    fn requests(&self, status: u16) -> Counter {
        if let Some((_, c)) = self
            .by_status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|(s, _)| *s == status)
        {
            return c.clone();
        }
        let mut all = self
            .by_status
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = all.iter().find(|(s, _)| *s == status) {
            return c.clone();
        }
        let c = metrics::counter!("respawn_http_requests_total",
            "path" => self.path.clone(), "status" => status.to_string());
        all.push((status, c.clone()));
        c
    }
}

fn routes() -> &'static RwLock<HashMap<String, Arc<RouteSeries>>> {
    static ROUTES: OnceLock<RwLock<HashMap<String, Arc<RouteSeries>>>> = OnceLock::new();
    ROUTES.get_or_init(Default::default)
}

fn series(path: &str) -> Arc<RouteSeries> {
    if let Some(s) = routes()
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(path)
    {
        return Arc::clone(s);
    }
    let mut all = routes().write().unwrap_or_else(PoisonError::into_inner);
    Arc::clone(all.entry(path.to_owned()).or_insert_with(|| {
        Arc::new(RouteSeries {
            path: path.to_owned(),
            duration: metrics::histogram!("respawn_http_request_duration_seconds",
                "path" => path.to_owned()),
            by_status: RwLock::new(Vec::new()),
        })
    }))
}

/// Records one answered request of route `path` (its matched pattern, or
/// `unmatched`).
pub fn record(path: &str, status: u16, seconds: f64) {
    let s = series(path);
    s.duration.record(seconds);
    s.requests(status).increment(1);
}
