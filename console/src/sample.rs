//! What a node samples every [`SAMPLE_SECS`] for the charts, and the charts
//! drawn from it: fleet utilization from the replicated state, and per
//! virtual server the call rate, status classes, mean RTT, bytes, CPU,
//! memory and instances from the [`crate::recorder`] and the state, plus the
//! RTT histogram of the retained hour.
//!
//! Memory is bounded by [`SeriesStore`]'s limits and, for the histogram
//! snapshots, by [`POINTS`] per virtual server that still exists.

use crate::charts::{histogram, line_chart};
use crate::merge::VsPart;
use crate::recorder::{VsKey, VsTotals, VsUsage, RTT_BUCKETS_MS};
use crate::series::{Point, Ring, SeriesStore, POINTS};
use crate::views::fleets::Utilization;
use crate::ConsoleError;
use std::collections::HashMap;

pub use crate::series::SAMPLE_SECS;

/// A virtual server at sampling time.
#[derive(Clone, Debug, Default)]
pub struct VsNow {
    pub key: VsKey,
    /// Cumulative calls at this process's edge (none yet: no call).
    pub totals: Option<VsTotals>,
    pub usage: Option<VsUsage>,
    pub running: u32,
    pub instances: u32,
}

type Buckets = [u64; RTT_BUCKETS_MS.len() + 1];

/// A chart as a page shows it: its SVG and a caption with the latest values.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Chart {
    pub id: &'static str,
    pub svg: String,
    pub caption: String,
}

/// The sampled series of one node.
#[derive(Default)]
pub struct Sampler {
    /// When the last sample was taken: a VS's first reading counts from
    /// zero since then (it had no calls before).
    last_ms: Option<u64>,
    store: SeriesStore,
    prev: HashMap<VsKey, (u64, VsTotals)>,
    hist: HashMap<VsKey, Ring<(u64, Buckets)>>,
}

fn fkey(fleet: &str, what: &str) -> String {
    format!("fleet/{fleet}/{what}")
}

fn vkey(k: &VsKey, what: &str) -> String {
    format!("vs/{}/{}/{what}", k.0, k.1)
}

/// Per-second rates between two cumulative readings `dt_s` apart.
pub fn rates(prev: &VsTotals, now: &VsTotals, dt_s: f64) -> Vec<(&'static str, f64)> {
    let d = |a: u64, b: u64| b.saturating_sub(a) as f64 / dt_s;
    let calls = now.requests().saturating_sub(prev.requests());
    let rtt_calls = now.rtt_count.saturating_sub(prev.rtt_count);
    let mut out = vec![
        ("qps", calls as f64 / dt_s),
        ("c2", d(prev.by_class[1], now.by_class[1])),
        ("c4", d(prev.by_class[3], now.by_class[3])),
        ("c5", d(prev.by_class[4], now.by_class[4])),
        ("bytes_in", d(prev.bytes_in, now.bytes_in)),
        ("bytes_out", d(prev.bytes_out, now.bytes_out)),
    ];
    if rtt_calls > 0 {
        out.push((
            "rtt_ms",
            (now.rtt_sum_ms - prev.rtt_sum_ms).max(0.0) / rtt_calls as f64,
        ));
    }
    out
}

impl Sampler {
    /// Records one sample taken at `now_ms`.
    pub fn record(&mut self, now_ms: u64, fleets: &[(String, Utilization)], vss: &[VsNow]) {
        for (f, u) in fleets {
            for (what, v) in [
                ("sessions", u.sessions),
                ("available", u.available_slots),
                ("waiting", u.waiting_placements),
                ("processes", u.live_processes),
            ] {
                self.store.push(&fkey(f, what), (now_ms, f64::from(v)));
            }
        }
        for v in vss {
            let k = &v.key;
            self.store
                .push(&vkey(k, "running"), (now_ms, f64::from(v.running)));
            self.store
                .push(&vkey(k, "instances"), (now_ms, f64::from(v.instances)));
            if let Some(u) = &v.usage {
                self.store.push(&vkey(k, "cpu"), (now_ms, u.cpu_millicores));
                self.store
                    .push(&vkey(k, "mem_mib"), (now_ms, u.memory_bytes / 1_048_576.0));
            }
            let Some(t) = &v.totals else { continue };
            let base = self
                .prev
                .get(k)
                .cloned()
                .or_else(|| self.last_ms.map(|t0| (t0, VsTotals::default())));
            if let Some((t0, prev)) = &base {
                let dt = now_ms.saturating_sub(*t0) as f64 / 1000.0;
                if dt >= 1.0 {
                    for (what, x) in rates(prev, t, dt) {
                        self.store.push(&vkey(k, what), (now_ms, x));
                    }
                }
            }
            self.prev.insert(k.clone(), (now_ms, t.clone()));
            let since = self.last_ms;
            self.hist
                .entry(k.clone())
                .or_insert_with(|| {
                    // A VS's first reading after an earlier sample counts
                    // from zero since then (it had no calls before), as
                    // its rates do; otherwise the calls before it would be
                    // the window's base, and leave the histogram.
                    let mut r = Ring::new(POINTS);
                    if let Some(t0) = since {
                        r.push((t0, Buckets::default()));
                    }
                    r
                })
                .push((now_ms, t.rtt_buckets));
        }
        // Forget virtual servers that are gone.
        let live: std::collections::HashSet<&VsKey> = vss.iter().map(|v| &v.key).collect();
        self.prev.retain(|k, _| live.contains(k));
        self.hist.retain(|k, _| live.contains(k));
        self.store
            .forget_older_than(now_ms.saturating_sub(POINTS as u64 * SAMPLE_SECS * 1000));
        self.last_ms = Some(now_ms);
    }

    pub fn points(&self, key: &str) -> Vec<Point> {
        self.store.points(key)
    }

    /// The utilization chart of a fleet: the samples, and `now` (the
    /// figures as the page reads them) as the latest point.
    pub fn fleet_chart(
        &self,
        fleet: &str,
        now_ms: u64,
        now: &Utilization,
    ) -> Result<Chart, ConsoleError> {
        let with_now = |what: &str, v: u32| {
            let mut p = self.points(&fkey(fleet, what));
            if p.last().is_none_or(|l| l.0 < now_ms) {
                p.push((now_ms, f64::from(v)));
            }
            p
        };
        let series = [
            ("sessions", with_now("sessions", now.sessions)),
            (
                "available slots",
                with_now("available", now.available_slots),
            ),
            (
                "waiting placements",
                with_now("waiting", now.waiting_placements),
            ),
            ("processes", with_now("processes", now.live_processes)),
        ];
        chart("utilization", "Utilization", "", &series, now_ms)
    }

    /// Calls per RTT bucket over the retained window.
    pub fn rtt_counts(&self, k: &VsKey) -> Vec<u64> {
        let mut counts: Buckets = Default::default();
        if let Some(r) = self.hist.get(k) {
            if let (Some(first), Some(last)) = (r.first(), r.last()) {
                let base = if r.len() > 1 {
                    first.1
                } else {
                    Default::default()
                };
                for (i, c) in counts.iter_mut().enumerate() {
                    *c = last.1[i].saturating_sub(base[i]);
                }
            }
        }
        counts.to_vec()
    }

    /// Calls per RTT bucket over the retained window, with the buckets' labels.
    pub fn rtt_histogram(&self, k: &VsKey) -> Vec<(String, u64)> {
        labelled(&self.rtt_counts(k))
    }

    /// This node's part of a virtual server's figures (see [`crate::merge`]).
    pub fn vs_part(&self, k: &VsKey) -> VsPart {
        let names = [
            "qps",
            "c2",
            "c4",
            "c5",
            "bytes_in",
            "bytes_out",
            "rtt_ms",
            "cpu",
            "mem_mib",
            "running",
            "instances",
        ];
        VsPart {
            series: names
                .iter()
                .map(|n| (n.to_string(), self.points(&vkey(k, n))))
                .filter(|(_, p)| !p.is_empty())
                .collect(),
            rtt_hist: self.rtt_counts(k),
        }
    }

    /// The charts of a virtual server from this node's samples alone.
    pub fn vs_charts(&self, k: &VsKey, now_ms: u64) -> Result<Vec<Chart>, ConsoleError> {
        vs_charts_of(&self.vs_part(k), now_ms)
    }
}

fn labelled(counts: &[u64]) -> Vec<(String, u64)> {
    let mut labels: Vec<String> = RTT_BUCKETS_MS
        .iter()
        .map(|b| {
            if *b >= 1000.0 {
                format!("≤{}s", b / 1000.0)
            } else {
                format!("≤{b}ms")
            }
        })
        .collect();
    labels.push(">10s".into());
    labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| (l, counts.get(i).copied().unwrap_or(0)))
        .collect()
}

/// The charts of a virtual server from its (possibly merged) figures.
pub fn vs_charts_of(part: &VsPart, now_ms: u64) -> Result<Vec<Chart>, ConsoleError> {
    let p = |what: &str| part.series.get(what).cloned().unwrap_or_default();
    let bars = labelled(&part.rtt_hist);
    let calls: u64 = bars.iter().map(|b| b.1).sum();
    Ok(vec![
        chart("qps", "QPS", "calls/s", &[("calls", p("qps"))], now_ms)?,
        chart("rtt", "RTT (mean)", "ms", &[("rtt", p("rtt_ms"))], now_ms)?,
        Chart {
            id: "rtt-histogram",
            svg: histogram("RTT distribution (last hour)", &bars)?,
            caption: format!("{calls} calls in the window"),
        },
        chart(
            "status",
            "Status codes",
            "calls/s",
            &[("2xx", p("c2")), ("4xx", p("c4")), ("5xx", p("c5"))],
            now_ms,
        )?,
        chart(
            "bytes",
            "Bytes",
            "B/s",
            &[("in", p("bytes_in")), ("out", p("bytes_out"))],
            now_ms,
        )?,
        chart("cpu", "CPU", "millicores", &[("cpu", p("cpu"))], now_ms)?,
        chart(
            "memory",
            "Memory",
            "MiB",
            &[("memory", p("mem_mib"))],
            now_ms,
        )?,
        chart(
            "instances",
            "Instances",
            "",
            &[("running", p("running")), ("all", p("instances"))],
            now_ms,
        )?,
    ])
}

/// A line chart with a caption of each series' latest value.
fn chart(
    id: &'static str,
    title: &str,
    unit: &str,
    series: &[(&str, Vec<Point>)],
    now_ms: u64,
) -> Result<Chart, ConsoleError> {
    let caption = series
        .iter()
        .map(|(name, pts)| match pts.last() {
            Some((_, v)) => format!("{name}: {}", fmt_value(*v, unit)),
            None => format!("{name}: no sample yet"),
        })
        .collect::<Vec<_>>()
        .join(" · ");
    Ok(Chart {
        id,
        svg: line_chart(
            title,
            if unit.is_empty() { "count" } else { unit },
            series,
            now_ms,
        )?,
        caption,
    })
}

fn fmt_value(v: f64, unit: &str) -> String {
    let n = if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    };
    if unit.is_empty() {
        n
    } else {
        format!("{n} {unit}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn totals(calls: u64, rtt_ms: f64, bucket: usize) -> VsTotals {
        let mut t = VsTotals {
            rtt_count: calls,
            rtt_sum_ms: rtt_ms * calls as f64,
            ..VsTotals::default()
        };
        t.by_class[1] = calls;
        t.rtt_buckets[bucket] = calls;
        t
    }

    #[test]
    fn rates_come_from_two_readings() {
        let r = rates(&totals(10, 5.0, 2), &totals(30, 5.0, 2), 10.0);
        assert!(r.contains(&("qps", 2.0)));
        assert!(r.contains(&("c2", 2.0)));
        assert!(r.contains(&("rtt_ms", 5.0)));
    }

    #[test]
    fn samples_make_points_and_the_histogram_spans_the_window() {
        let k: VsKey = ("tr".into(), "api".into());
        let mut s = Sampler::default();
        let vs = |t: VsTotals| VsNow {
            key: k.clone(),
            totals: Some(t),
            running: 1,
            instances: 1,
            ..VsNow::default()
        };
        s.record(
            10_000,
            &[("f".into(), Utilization::default())],
            &[vs(totals(0, 0.0, 2))],
        );
        s.record(20_000, &[], &[vs(totals(50, 3.0, 2))]);
        assert_eq!(s.points(&vkey(&k, "qps")), vec![(20_000, 5.0)]);
        assert_eq!(s.points(&vkey(&k, "running")).len(), 2);
        assert_eq!(s.rtt_histogram(&k)[2].1, 50);
        let charts = s.vs_charts(&k, 20_000).unwrap();
        assert_eq!(charts.len(), 8);
        assert!(charts[0].svg.contains("<circle"));
        assert_eq!(charts[0].caption, "calls: 5 calls/s");
        assert_eq!(charts[2].caption, "50 calls in the window");
        assert_eq!(s.points(&fkey("f", "sessions")).len(), 1);
        let now = Utilization {
            sessions: 3,
            ..Utilization::default()
        };
        let c = s.fleet_chart("f", 25_000, &now).unwrap();
        assert!(c.caption.starts_with("sessions: 3 ·"), "{}", c.caption);
        assert_eq!(c.svg.matches("<circle").count(), 8);
        // A VS first read after an earlier sample (no call before): its
        // first calls stay in the window as later samples come.
        let k2: VsKey = ("tr".into(), "late".into());
        let late = |t: VsTotals| VsNow {
            key: k2.clone(),
            totals: Some(t),
            running: 1,
            instances: 1,
            ..VsNow::default()
        };
        s.record(
            21_000,
            &[],
            &[vs(totals(50, 3.0, 2)), late(totals(7, 1.0, 1))],
        );
        s.record(
            22_000,
            &[],
            &[vs(totals(50, 3.0, 2)), late(totals(7, 1.0, 1))],
        );
        assert_eq!(s.rtt_histogram(&k2)[1].1, 7);
        // The VS is gone: its history goes too.
        s.record(30_000, &[], &[]);
        assert!(s.rtt_histogram(&k).iter().all(|b| b.1 == 0));
    }
}
