//! Cached metric handles, so that a request only looks up handles (a read lock
//! on a small map, no allocation) instead of building label sets.
//!
//! Handles are taken from whatever recorder is installed when a series is first
//! used; create the [`crate::Proxy`] after installing the recorder, or at least
//! before the first request.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Histogram, Label};

/// Metric names of one family (per VS, or per whitelisted URL of a VS).
struct Names {
    requests: &'static str,
    duration: &'static str,
    bytes_in: &'static str,
    bytes_out: &'static str,
}

const VS_NAMES: Names = Names {
    requests: "respawn_vs_requests_total",
    duration: "respawn_vs_request_duration_seconds",
    bytes_in: "respawn_vs_bytes_in_total",
    bytes_out: "respawn_vs_bytes_out_total",
};

const URL_NAMES: Names = Names {
    requests: "respawn_vs_url_requests_total",
    duration: "respawn_vs_url_request_duration_seconds",
    bytes_in: "respawn_vs_url_bytes_in_total",
    bytes_out: "respawn_vs_url_bytes_out_total",
};

pub(crate) fn describe() {
    for n in [&VS_NAMES, &URL_NAMES] {
        metrics::describe_counter!(
            n.requests,
            "Requests answered for a virtual server, by status code"
        );
        metrics::describe_histogram!(
            n.duration,
            metrics::Unit::Seconds,
            "Time from the edge receiving a virtual-server request to its response body ending"
        );
        metrics::describe_counter!(
            n.bytes_in,
            metrics::Unit::Bytes,
            "Request body bytes streamed to a virtual server"
        );
        metrics::describe_counter!(
            n.bytes_out,
            metrics::Unit::Bytes,
            "Response body bytes streamed from a virtual server to callers"
        );
    }
}

/// The four metrics of one label set.
pub(crate) struct Series {
    requests_name: &'static str,
    labels: Vec<Label>,
    /// One requests counter per status code seen; a handful per series.
    codes: RwLock<Vec<(u16, Counter)>>,
    pub(crate) duration: Histogram,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
}

impl Series {
    fn new(names: &Names, labels: Vec<Label>) -> Series {
        Series {
            requests_name: names.requests,
            codes: RwLock::new(Vec::new()),
            duration: metrics::histogram!(names.duration, labels.clone()),
            bytes_in: metrics::counter!(names.bytes_in, labels.clone()),
            bytes_out: metrics::counter!(names.bytes_out, labels.clone()),
            labels,
        }
    }

    /// The requests counter for `code`.
    pub(crate) fn requests(&self, code: u16) -> Counter {
        {
            let codes = self.codes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, c)) = codes.iter().find(|(k, _)| *k == code) {
                return c.clone();
            }
        }
        let mut codes = self.codes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, c)) = codes.iter().find(|(k, _)| *k == code) {
            return c.clone();
        }
        let mut labels = self.labels.clone();
        labels.push(Label::new("code", code.to_string()));
        let c = metrics::counter!(self.requests_name, labels);
        codes.push((code, c.clone()));
        c
    }
}

/// A virtual server's series and those of its whitelisted URLs.
pub(crate) struct VsSeries {
    pub(crate) base: Series,
    tr: String,
    vs: String,
    urls: RwLock<HashMap<String, Arc<Series>>>,
}

impl VsSeries {
    pub(crate) fn url(&self, url: &str) -> Arc<Series> {
        if let Some(s) = self
            .urls
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
        {
            return s.clone();
        }
        let mut urls = self.urls.write().unwrap_or_else(PoisonError::into_inner);
        urls.entry(url.to_owned())
            .or_insert_with(|| {
                Arc::new(Series::new(
                    &URL_NAMES,
                    vec![
                        Label::new("title_region", self.tr.clone()),
                        Label::new("vs", self.vs.clone()),
                        Label::new("url", url.to_owned()),
                    ],
                ))
            })
            .clone()
    }
}

/// title region → VS → series.
#[derive(Default)]
pub(crate) struct MetricsCache {
    by_tr: RwLock<HashMap<String, HashMap<String, Arc<VsSeries>>>>,
}

impl MetricsCache {
    pub(crate) fn vs(&self, tr: &str, vs: &str) -> Arc<VsSeries> {
        if let Some(s) = self
            .by_tr
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(tr)
            .and_then(|m| m.get(vs))
        {
            return s.clone();
        }
        let mut by_tr = self.by_tr.write().unwrap_or_else(PoisonError::into_inner);
        by_tr
            .entry(tr.to_owned())
            .or_default()
            .entry(vs.to_owned())
            .or_insert_with(|| {
                Arc::new(VsSeries {
                    base: Series::new(
                        &VS_NAMES,
                        vec![
                            Label::new("title_region", tr.to_owned()),
                            Label::new("vs", vs.to_owned()),
                        ],
                    ),
                    tr: tr.to_owned(),
                    vs: vs.to_owned(),
                    urls: RwLock::new(HashMap::new()),
                })
            })
            .clone()
    }
}
