//! The runtime's shared state: configuration, the event channel, the managed
//! instances, the Docker engine, the cgroup mechanism and the host ports in use.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cgroup;
use crate::docker;
use crate::spec::{now_ms, InstanceEvent, InstanceState, RuntimeConfig};

/// What `usage()` samples for a live instance.
#[derive(Debug, Clone, Default)]
pub(crate) enum UsageTarget {
    /// Not launched at the moment.
    #[default]
    Idle,
    /// A process tree, maybe in a cgroup.
    Process {
        root: i32,
        group: Option<Arc<cgroup::Group>>,
    },
    /// A container, by id.
    Container { id: String },
}

/// The part of an instance that `usage()` reads while the supervisor runs it.
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub target: UsageTarget,
    /// The previous CPU sample: cumulative CPU nanoseconds and when it was taken.
    pub prev_cpu: Option<(u64, Instant)>,
}

pub(crate) struct Handle {
    pub cancel: CancellationToken,
    pub done: watch::Receiver<bool>,
    pub live: Arc<Mutex<Live>>,
}

pub(crate) struct Inner {
    pub cfg: RuntimeConfig,
    pub events: mpsc::UnboundedSender<InstanceEvent>,
    pub instances: Mutex<HashMap<String, Handle>>,
    pub docker: docker::DockerHost,
    pub cgroups: cgroup::Mechanism,
    /// Process instances spawned, for the next runtime after a crash.
    pub ledger: Arc<crate::leftovers::Ledger>,
    /// Host ports handed to process instances and not yet released.
    pub ports: Mutex<HashSet<u16>>,
}

impl Inner {
    pub fn emit(&self, instance_id: &str, state: InstanceState) {
        let _ = self.events.send(InstanceEvent {
            instance_id: instance_id.to_string(),
            state,
            at_ms: now_ms(),
        });
    }

    pub fn volume_dir(&self, title_region: &str, vs_name: &str) -> PathBuf {
        self.cfg
            .data_dir
            .join("volumes")
            .join(title_region)
            .join(vs_name)
    }
}
