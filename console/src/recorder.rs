//! A `metrics` recorder that keeps, in memory, the virtual-server metrics the
//! console charts: requests by status class, the call duration (RTT) as a
//! fixed-bucket histogram, bytes in and out (all cumulative, from the
//! proxy's `respawn_vs_*` series), and the CPU and memory gauges of each
//! instance (from the agents' usage reports). The node installs it next to
//! the Prometheus recorder (a fan-out), so both see the same calls; every
//! other metric gets a no-op handle here.
//!
//! Bounds: at most [`MAX_VS`] virtual servers and [`MAX_INSTANCES`]
//! instance gauges (past that, new ones are not charted); instance gauges
//! not updated for [`GAUGE_TTL_MS`] are dropped when sampled.

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

/// Virtual servers tracked.
pub const MAX_VS: usize = 4096;
/// Instance gauges tracked.
pub const MAX_INSTANCES: usize = 16_384;
/// An instance gauge not set for this long no longer counts.
pub const GAUGE_TTL_MS: u64 = 15_000;
/// Upper bounds (ms) of the RTT histogram's buckets; one more bucket holds the rest.
pub const RTT_BUCKETS_MS: [f64; 13] = [
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];
const N_BUCKETS: usize = RTT_BUCKETS_MS.len() + 1;

/// (title region, VS name).
pub type VsKey = (String, String);

/// Cumulative counts of one virtual server's calls at this process's edge.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VsTotals {
    /// Responses by status class: index 0 = 1xx … 4 = 5xx.
    pub by_class: [u64; 5],
    pub rtt_count: u64,
    pub rtt_sum_ms: f64,
    /// Calls per RTT bucket ([`RTT_BUCKETS_MS`], then the rest).
    pub rtt_buckets: [u64; N_BUCKETS],
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl VsTotals {
    pub fn requests(&self) -> u64 {
        self.by_class.iter().sum()
    }
}

/// CPU and memory summed over a VS's instances with a fresh report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VsUsage {
    pub cpu_millicores: f64,
    pub memory_bytes: f64,
    pub instances_reporting: u32,
}

#[derive(Default)]
struct VsCells {
    by_class: [AtomicU64; 5],
    rtt_count: AtomicU64,
    /// Microseconds.
    rtt_sum_us: AtomicU64,
    rtt_buckets: [AtomicU64; N_BUCKETS],
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

struct InstanceGauge {
    vs: VsKey,
    /// f64 bits.
    value: AtomicU64,
    updated_ms: AtomicU64,
}

#[derive(Default)]
struct Inner {
    vs: Mutex<HashMap<VsKey, Arc<VsCells>>>,
    /// (metric name, instance id) → gauge.
    instances: Mutex<HashMap<(&'static str, String), Arc<InstanceGauge>>>,
}

/// The recorder; clones share their data.
#[derive(Clone, Default)]
pub struct ConsoleRecorder {
    inner: Arc<Inner>,
}

/// The process-wide recorder the node installs and the console samples.
pub fn global() -> &'static ConsoleRecorder {
    static R: OnceLock<ConsoleRecorder> = OnceLock::new();
    R.get_or_init(ConsoleRecorder::default)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Short critical sections over plain maps: a panic cannot leave them torn.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn now_ms() -> u64 {
    respawn_types::now_millis()
}

fn label<'a>(key: &'a Key, name: &str) -> Option<&'a str> {
    key.labels().find(|l| l.key() == name).map(|l| l.value())
}

fn vs_key(key: &Key) -> Option<VsKey> {
    Some((
        label(key, "title_region")?.to_owned(),
        label(key, "vs")?.to_owned(),
    ))
}

const CPU: &str = "respawn_vs_instance_cpu_millicores";
const MEMORY: &str = "respawn_vs_instance_memory_bytes";

enum Cell {
    Class(Arc<VsCells>, usize),
    BytesIn(Arc<VsCells>),
    BytesOut(Arc<VsCells>),
}

impl CounterFn for Cell {
    fn increment(&self, v: u64) {
        match self {
            Cell::Class(c, i) => c.by_class[*i].fetch_add(v, Relaxed),
            Cell::BytesIn(c) => c.bytes_in.fetch_add(v, Relaxed),
            Cell::BytesOut(c) => c.bytes_out.fetch_add(v, Relaxed),
        };
    }
    fn absolute(&self, v: u64) {
        match self {
            Cell::Class(c, i) => c.by_class[*i].fetch_max(v, Relaxed),
            Cell::BytesIn(c) => c.bytes_in.fetch_max(v, Relaxed),
            Cell::BytesOut(c) => c.bytes_out.fetch_max(v, Relaxed),
        };
    }
}

struct Rtt(Arc<VsCells>);

impl HistogramFn for Rtt {
    fn record(&self, secs: f64) {
        let ms = (secs * 1000.0).max(0.0);
        let i = RTT_BUCKETS_MS
            .iter()
            .position(|b| ms <= *b)
            .unwrap_or(RTT_BUCKETS_MS.len());
        self.0.rtt_buckets[i].fetch_add(1, Relaxed);
        self.0.rtt_count.fetch_add(1, Relaxed);
        self.0.rtt_sum_us.fetch_add((ms * 1000.0) as u64, Relaxed);
    }
}

impl GaugeFn for InstanceGauge {
    fn increment(&self, v: f64) {
        self.set(f64::from_bits(self.value.load(Relaxed)) + v);
    }
    fn decrement(&self, v: f64) {
        self.set(f64::from_bits(self.value.load(Relaxed)) - v);
    }
    fn set(&self, v: f64) {
        self.value.store(v.to_bits(), Relaxed);
        self.updated_ms.store(now_ms(), Relaxed);
    }
}

impl ConsoleRecorder {
    fn cells(&self, vs: VsKey) -> Option<Arc<VsCells>> {
        let mut m = lock(&self.inner.vs);
        if let Some(c) = m.get(&vs) {
            return Some(c.clone());
        }
        if m.len() >= MAX_VS {
            return None;
        }
        Some(m.entry(vs).or_default().clone())
    }

    fn instance(&self, metric: &'static str, key: &Key) -> Option<Arc<InstanceGauge>> {
        let vs = vs_key(key)?;
        let id = label(key, "instance")?.to_owned();
        let mut m = lock(&self.inner.instances);
        if let Some(g) = m.get(&(metric, id.clone())) {
            return Some(g.clone());
        }
        if m.len() >= MAX_INSTANCES {
            return None;
        }
        let g = Arc::new(InstanceGauge {
            vs,
            value: AtomicU64::new(0),
            updated_ms: AtomicU64::new(0),
        });
        m.insert((metric, id), g.clone());
        Some(g)
    }

    /// Cumulative call counts per virtual server.
    pub fn totals(&self) -> HashMap<VsKey, VsTotals> {
        lock(&self.inner.vs)
            .iter()
            .map(|(k, c)| {
                let mut t = VsTotals {
                    rtt_count: c.rtt_count.load(Relaxed),
                    rtt_sum_ms: c.rtt_sum_us.load(Relaxed) as f64 / 1000.0,
                    bytes_in: c.bytes_in.load(Relaxed),
                    bytes_out: c.bytes_out.load(Relaxed),
                    ..VsTotals::default()
                };
                for (d, s) in t.by_class.iter_mut().zip(&c.by_class) {
                    *d = s.load(Relaxed);
                }
                for (d, s) in t.rtt_buckets.iter_mut().zip(&c.rtt_buckets) {
                    *d = s.load(Relaxed);
                }
                (k.clone(), t)
            })
            .collect()
    }

    /// CPU and memory per virtual server from the instance gauges set within
    /// [`GAUGE_TTL_MS`] of `now_ms`; older gauges are forgotten.
    pub fn usage(&self, now_ms: u64) -> HashMap<VsKey, VsUsage> {
        let mut out: HashMap<VsKey, VsUsage> = HashMap::new();
        let mut m = lock(&self.inner.instances);
        // A gauge whose handle is still cached elsewhere (strong count > 1)
        // may be set again later: keep it, just do not count it.
        m.retain(|_, g| {
            g.updated_ms.load(Relaxed) + 4 * GAUGE_TTL_MS >= now_ms || Arc::strong_count(g) > 1
        });
        for ((metric, _), g) in m.iter() {
            if g.updated_ms.load(Relaxed) + GAUGE_TTL_MS < now_ms {
                continue;
            }
            let v = f64::from_bits(g.value.load(Relaxed));
            let u = out.entry(g.vs.clone()).or_default();
            if *metric == CPU {
                u.cpu_millicores += v;
                u.instances_reporting += 1;
            } else {
                u.memory_bytes += v;
            }
        }
        out
    }
}

impl Recorder for ConsoleRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let cell = match key.name() {
            "respawn_vs_requests_total" => vs_key(key).and_then(|vs| {
                let class = label(key, "code")
                    .and_then(|c| c.parse::<u16>().ok())
                    .map_or(4, |c| usize::from((c / 100).clamp(1, 5) - 1));
                Some(Cell::Class(self.cells(vs)?, class))
            }),
            "respawn_vs_bytes_in_total" => {
                vs_key(key).and_then(|vs| self.cells(vs)).map(Cell::BytesIn)
            }
            "respawn_vs_bytes_out_total" => vs_key(key)
                .and_then(|vs| self.cells(vs))
                .map(Cell::BytesOut),
            _ => None,
        };
        cell.map_or_else(Counter::noop, |c| Counter::from_arc(Arc::new(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        let metric = match key.name() {
            CPU => CPU,
            MEMORY => MEMORY,
            _ => return Gauge::noop(),
        };
        self.instance(metric, key)
            .map_or_else(Gauge::noop, Gauge::from_arc)
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() != "respawn_vs_request_duration_seconds" {
            return Histogram::noop();
        }
        vs_key(key)
            .and_then(|vs| self.cells(vs))
            .map_or_else(Histogram::noop, |c| Histogram::from_arc(Arc::new(Rtt(c))))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use metrics::Label;

    fn key(name: &'static str, labels: &[(&'static str, &str)]) -> Key {
        Key::from_parts(
            name,
            labels
                .iter()
                .map(|(k, v)| Label::new(*k, v.to_string()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn vs_calls_are_counted_by_class_and_rtt_bucket() {
        let r = ConsoleRecorder::default();
        let md = Metadata::new("t", metrics::Level::INFO, None);
        let vs = [("title_region", "tr"), ("vs", "api")];
        let ok = r.register_counter(
            &key(
                "respawn_vs_requests_total",
                &[vs[0], vs[1], ("code", "200")],
            ),
            &md,
        );
        let err = r.register_counter(
            &key(
                "respawn_vs_requests_total",
                &[vs[0], vs[1], ("code", "503")],
            ),
            &md,
        );
        let h = r.register_histogram(&key("respawn_vs_request_duration_seconds", &vs), &md);
        ok.increment(3);
        err.increment(1);
        h.record(0.003);
        h.record(20.0);
        r.register_counter(&key("respawn_http_requests_total", &vs), &md)
            .increment(9);
        let t = &r.totals()[&("tr".to_string(), "api".to_string())];
        assert_eq!(t.by_class, [0, 3, 0, 0, 1]);
        assert_eq!(t.requests(), 4);
        assert_eq!(t.rtt_count, 2);
        assert_eq!(t.rtt_buckets[2], 1); // ≤ 5 ms
        assert_eq!(t.rtt_buckets[N_BUCKETS - 1], 1); // > 10 s
    }

    #[test]
    fn instance_gauges_are_summed_per_vs_while_fresh() {
        let r = ConsoleRecorder::default();
        let md = Metadata::new("t", metrics::Level::INFO, None);
        for (i, cpu) in [("a", 100.0), ("b", 50.0)] {
            let g = r.register_gauge(
                &key(
                    CPU,
                    &[("title_region", "tr"), ("vs", "api"), ("instance", i)],
                ),
                &md,
            );
            g.set(cpu);
        }
        let now = now_ms();
        let u = &r.usage(now)[&("tr".to_string(), "api".to_string())];
        assert_eq!(u.cpu_millicores, 150.0);
        assert_eq!(u.instances_reporting, 2);
        assert!(r.usage(now + GAUGE_TTL_MS + 1).is_empty());
        // Long stale and no handle left: forgotten.
        r.usage(now + 5 * GAUGE_TTL_MS);
        assert!(lock(&r.inner.instances).is_empty());
    }
}
