//! Virtual-server charts merged across nodes. The calls a VS serves are
//! counted by the edge of the node that proxied them, and CPU and memory by
//! the node its agents report to, so one node's series are a part of the
//! figures. Each node exports its part of a VS ([`VsPart`], served as JSON
//! to its peers), and the page's node merges them: rates, bytes, CPU and
//! memory add up per sample slot, the mean RTT is weighted by each part's
//! calls, the RTT histogram's buckets add up, and instance counts (from
//! the replicated state, the same everywhere) are taken from the local part.

use crate::series::Point;
use crate::series::SAMPLE_SECS;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One node's series of one VS.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VsPart {
    /// Series by name (`qps`, `c2`, `c4`, `c5`, `bytes_in`, `bytes_out`,
    /// `rtt_ms`, `cpu`, `mem_mib`, `running`, `instances`).
    pub series: BTreeMap<String, Vec<Point>>,
    /// Calls per RTT bucket over the retained window.
    pub rtt_hist: Vec<u64>,
}

/// Series that add up across nodes.
const SUMMED: [&str; 8] = [
    "qps",
    "c2",
    "c4",
    "c5",
    "bytes_in",
    "bytes_out",
    "cpu",
    "mem_mib",
];
/// Series every node reads from the replicated state.
const LOCAL: [&str; 2] = ["running", "instances"];

/// The sample slot of a time: nodes sample on their own clocks, so points
/// within one [`SAMPLE_SECS`] slot are taken as the same moment (stamped
/// with the slot's end).
fn slot(ms: u64) -> u64 {
    let w = SAMPLE_SECS * 1000;
    ms / w * w + w
}

/// Merges `local` (this node's part) with its peers' parts.
pub fn merge(local: &VsPart, peers: &[VsPart]) -> VsPart {
    let all: Vec<&VsPart> = std::iter::once(local).chain(peers).collect();
    let mut out = VsPart::default();
    for name in LOCAL {
        if let Some(s) = local.series.get(name) {
            out.series.insert(name.to_string(), s.clone());
        }
    }
    for name in SUMMED {
        let mut sum: BTreeMap<u64, f64> = BTreeMap::new();
        for p in &all {
            for (t, v) in p.series.get(name).into_iter().flatten() {
                *sum.entry(slot(*t)).or_default() += v;
            }
        }
        if !sum.is_empty() {
            out.series
                .insert(name.to_string(), sum.into_iter().collect());
        }
    }
    // RTT: the mean over all calls = Σ(rtt × calls) / Σ calls per slot.
    let mut rtt: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for p in &all {
        let qps: BTreeMap<u64, f64> = p
            .series
            .get("qps")
            .into_iter()
            .flatten()
            .map(|(t, v)| (slot(*t), *v))
            .collect();
        for (t, v) in p.series.get("rtt_ms").into_iter().flatten() {
            let w = qps
                .get(&slot(*t))
                .copied()
                .unwrap_or(0.0)
                .max(f64::MIN_POSITIVE);
            let e = rtt.entry(slot(*t)).or_default();
            e.0 += v * w;
            e.1 += w;
        }
    }
    if !rtt.is_empty() {
        out.series.insert(
            "rtt_ms".into(),
            rtt.into_iter().map(|(t, (s, w))| (t, s / w)).collect(),
        );
    }
    let width = all.iter().map(|p| p.rtt_hist.len()).max().unwrap_or(0);
    out.rtt_hist = (0..width)
        .map(|i| {
            all.iter()
                .map(|p| p.rtt_hist.get(i).copied().unwrap_or(0))
                .sum()
        })
        .collect();
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn part(pairs: &[(&str, Vec<Point>)], hist: Vec<u64>) -> VsPart {
        VsPart {
            series: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            rtt_hist: hist,
        }
    }

    #[test]
    fn rates_add_up_rtt_is_weighted_and_instances_stay_local() {
        let a = part(
            &[
                ("qps", vec![(10_001, 3.0), (20_002, 1.0)]),
                ("rtt_ms", vec![(10_001, 10.0)]),
                ("running", vec![(10_001, 2.0)]),
            ],
            vec![1, 2, 0],
        );
        let b = part(
            &[
                ("qps", vec![(10_900, 1.0)]),
                ("rtt_ms", vec![(10_900, 50.0)]),
                ("running", vec![(10_900, 9.0)]),
            ],
            vec![0, 1, 4, 1],
        );
        let m = merge(&a, &[b]);
        assert_eq!(m.series["qps"], vec![(20_000, 4.0), (30_000, 1.0)]);
        assert_eq!(m.series["rtt_ms"], vec![(20_000, 20.0)]);
        assert_eq!(m.series["running"], vec![(10_001, 2.0)]);
        assert_eq!(m.rtt_hist, vec![1, 3, 4, 1]);
        // Alone, a part is itself (on slot times).
        assert_eq!(
            merge(&a, &[]).series["qps"],
            vec![(20_000, 3.0), (30_000, 1.0)]
        );
    }
}
