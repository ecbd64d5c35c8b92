//! Every [`SAMPLE_SECS`] the node samples what its charts draw: each
//! fleet's utilization and each virtual server's instance counts from the
//! applied state, and the calls, RTT, bytes, CPU and memory the
//! `respawn-console` recorder has counted (see `edge::prometheus`, which
//! installs it beside the Prometheus recorder). Stops when the console is
//! dropped.

use super::Console;
use respawn_console::recorder;
use respawn_console::sample::{VsNow, SAMPLE_SECS};
use respawn_console::views::fleets::{utilization, Utilization};
use respawn_types::VsInstanceStatus;
use std::collections::HashMap;
use std::sync::Weak;
use std::time::Duration;

/// Samples until the console is gone.
pub async fn run(console: Weak<Console>) {
    let mut tick = tokio::time::interval(Duration::from_secs(SAMPLE_SECS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(c) = console.upgrade() else { return };
        sample(&c);
    }
}

fn sample(c: &Console) {
    let now = respawn_types::now_millis();
    let rec = recorder::global();
    let mut totals = rec.totals();
    let mut usage = rec.usage(now);
    let (fleets, mut vss): (Vec<(String, Utilization)>, Vec<VsNow>) =
        c.edge.server.cluster.consensus.read(|s| {
            let fleets = s
                .fleets
                .keys()
                .map(|f| (f.to_string(), utilization(s, f)))
                .collect();
            let mut counts: HashMap<(String, String), (u32, u32)> = HashMap::new();
            for i in s.vs_instances.values() {
                let e = counts
                    .entry((i.title_region_id.to_string(), i.vs.to_string()))
                    .or_default();
                e.1 += 1;
                if i.status == VsInstanceStatus::Running {
                    e.0 += 1;
                }
            }
            let vss = s
                .virtual_servers
                .iter()
                .flat_map(|(tr, m)| m.keys().map(move |n| (tr.to_string(), n.to_string())))
                .map(|key| {
                    let (running, instances) = counts.get(&key).copied().unwrap_or_default();
                    VsNow {
                        key,
                        running,
                        instances,
                        ..VsNow::default()
                    }
                })
                .collect();
            (fleets, vss)
        });
    for v in &mut vss {
        v.totals = totals.remove(&v.key);
        v.usage = usage.remove(&v.key);
    }
    c.sampler().record(now, &fleets, &vss);
}
