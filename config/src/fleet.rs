//! The fleets the configuration file creates (`[[fleets]]`): their keys,
//! defaults, and the replicated fleet record they describe.

use respawn_types::fleet::ModeName;
use respawn_types::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModeSpec {
    Simple,
    Parallel,
    /// Shared-memory mode (docs/sdk-protocol.md §6.3).
    Forking,
}

/// A fleet to create or update at start-up. Durations in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    pub id: String,
    pub title_region: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_mode")]
    pub mode: ModeSpec,
    /// Parallel mode: battle sessions per process at once.
    #[serde(default = "one")]
    pub max_sessions_per_process: u32,
    pub launch_path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default = "one")]
    pub processes_per_host: u32,
    #[serde(default = "d60")]
    pub activation_timeout_secs: u64,
    #[serde(default = "d60")]
    pub placement_timeout_secs: u64,
    #[serde(default = "d5")]
    pub health_check_interval_secs: u64,
    #[serde(default = "d120")]
    pub process_ending_grace_secs: u64,
    #[serde(default = "d3")]
    pub max_placement_attempts: u32,
    /// `[fleets.scaling]`: min_processes, max_processes, buffer.
    #[serde(default)]
    pub scaling: ScalingPolicy,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn default_mode() -> ModeSpec {
    ModeSpec::Simple
}
fn one() -> u32 {
    1
}
fn d3() -> u32 {
    3
}
fn d5() -> u64 {
    5
}
fn d60() -> u64 {
    60
}
fn d120() -> u64 {
    120
}

impl FleetSpec {
    /// The definition this spec gives (the admin API's body).
    pub fn definition(&self) -> FleetDefinition {
        FleetDefinition {
            name: self.name.clone(),
            mode: match self.mode {
                ModeSpec::Simple => ModeName::Simple,
                ModeSpec::Parallel => ModeName::Parallel,
                ModeSpec::Forking => ModeName::Forking,
            },
            max_sessions_per_process: self.max_sessions_per_process,
            launch_path: self.launch_path.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            processes_per_host: self.processes_per_host,
            activation_timeout_secs: self.activation_timeout_secs,
            placement_timeout_secs: self.placement_timeout_secs,
            health_check_interval_secs: self.health_check_interval_secs,
            process_ending_grace_secs: self.process_ending_grace_secs,
            max_placement_attempts: self.max_placement_attempts,
            scaling: self.scaling.clone(),
            labels: self.labels.clone(),
        }
    }

    /// The replicated fleet record this spec describes.
    pub fn to_fleet(&self) -> Fleet {
        self.definition().to_fleet(
            FleetId::new_unchecked(self.id.clone()),
            TitleRegionId::new_unchecked(self.title_region.clone()),
        )
    }
}
