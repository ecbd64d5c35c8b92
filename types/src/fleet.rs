//! A fleet's definition as the admin API and the configuration file give
//! it (seconds, a mode name), its scaling policy, and the one validation of
//! both: the edge, the configuration and the replicated state check the
//! same rules, and every error names the field that is wrong.

use crate::ids::*;
use crate::limits;
use crate::model::{Fleet, RuntimeConfig, ServerMode};
pub use crate::scaling::{FieldError, ScalingPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Server mode by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ModeName {
    /// One battle session per process lifetime.
    #[default]
    Simple,
    /// Up to `max_sessions_per_process` sessions at once.
    Parallel,
    /// Shared-memory mode: one forking parent per host forks the processes
    /// that host battle sessions (one each), up to `processes_per_host`.
    Forking,
}

/// A fleet's definition (the body of `PUT /admin/title_regions/{tr}/fleets/{id}`).
/// Durations in seconds; every field but `launch_path` has a default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct FleetDefinition {
    /// Display name (default: the fleet id).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub mode: ModeName,
    /// Parallel mode: battle sessions one process holds at once.
    #[serde(default = "one")]
    pub max_sessions_per_process: u32,
    /// Executable the agent launches.
    pub launch_path: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// DS processes each agent keeps running.
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
    #[serde(default)]
    pub scaling: ScalingPolicy,
    /// Free-form labels (at most 64, keys 1–63 bytes, values up to 256 bytes).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
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

/// Most labels one fleet may carry, and their sizes.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_KEY: usize = 63;
pub const MAX_LABEL_VALUE: usize = 256;

impl FleetDefinition {
    /// A definition launching `launch_path` with every other field at its
    /// default: what a body with `launch_path` alone means.
    pub fn new(launch_path: impl Into<String>) -> Self {
        FleetDefinition {
            name: String::new(),
            mode: ModeName::default(),
            max_sessions_per_process: one(),
            launch_path: launch_path.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            processes_per_host: one(),
            activation_timeout_secs: d60(),
            placement_timeout_secs: d60(),
            health_check_interval_secs: d5(),
            process_ending_grace_secs: d120(),
            max_placement_attempts: d3(),
            scaling: ScalingPolicy::default(),
            labels: BTreeMap::new(),
        }
    }

    /// Checks every field; the first one that is wrong is named.
    pub fn validate(&self) -> Result<(), FieldError> {
        let secs = |name: &str, v: u64, ms: (u64, u64)| {
            let (lo, hi) = limits::in_secs(ms);
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(FieldError::new(
                    name,
                    format!("must be between {lo} and {hi}, got {v}"),
                ))
            }
        };
        if self.launch_path.trim().is_empty() {
            return Err(FieldError::new("launch_path", "must not be empty"));
        }
        let has_nul = |s: &str| s.contains('\0');
        if has_nul(&self.launch_path) || self.args.iter().any(|a| has_nul(a)) {
            return Err(FieldError::new("args", "must not contain NUL bytes"));
        }
        if let Some(k) = self
            .env
            .iter()
            .find(|(k, v)| k.is_empty() || k.contains('=') || has_nul(k) || has_nul(v))
            .map(|(k, _)| k)
        {
            return Err(FieldError::new(
                "env",
                format!("'{k}' is not a valid variable (empty, '=' or NUL)"),
            ));
        }
        if self.mode == ModeName::Parallel && self.max_sessions_per_process == 0 {
            return Err(FieldError::new(
                "max_sessions_per_process",
                "parallel mode needs at least 1",
            ));
        }
        if self.mode == ModeName::Forking && self.max_sessions_per_process != 1 {
            return Err(FieldError::new(
                "max_sessions_per_process",
                "forking mode: each forked process hosts one battle session; must be 1",
            ));
        }
        if self.processes_per_host == 0 || self.processes_per_host > limits::MAX_PROCESSES_PER_HOST
        {
            return Err(FieldError::new(
                "processes_per_host",
                format!(
                    "must be between 1 and {}, got {}",
                    limits::MAX_PROCESSES_PER_HOST,
                    self.processes_per_host
                ),
            ));
        }
        secs(
            "activation_timeout_secs",
            self.activation_timeout_secs,
            limits::ACTIVATION_TIMEOUT_RANGE,
        )?;
        secs(
            "placement_timeout_secs",
            self.placement_timeout_secs,
            limits::PLACEMENT_TIMEOUT_RANGE,
        )?;
        secs(
            "health_check_interval_secs",
            self.health_check_interval_secs,
            limits::HEALTH_INTERVAL_RANGE,
        )?;
        secs(
            "process_ending_grace_secs",
            self.process_ending_grace_secs,
            limits::ENDING_GRACE_RANGE,
        )?;
        if !(1..=100).contains(&self.max_placement_attempts) {
            return Err(FieldError::new(
                "max_placement_attempts",
                format!(
                    "must be between 1 and 100, got {}",
                    self.max_placement_attempts
                ),
            ));
        }
        self.scaling.validate()?;
        validate_labels(&self.labels)
    }

    /// The replicated record (version 0: the state numbers versions).
    pub fn to_fleet(&self, id: FleetId, title_region_id: TitleRegionId) -> Fleet {
        Fleet {
            name: if self.name.is_empty() {
                id.to_string()
            } else {
                self.name.clone()
            },
            id,
            title_region_id,
            mode: match self.mode {
                ModeName::Simple => ServerMode::Simple,
                ModeName::Parallel => ServerMode::Parallel {
                    max_sessions: self.max_sessions_per_process,
                },
                ModeName::Forking => ServerMode::Forking,
            },
            runtime: RuntimeConfig {
                launch_path: self.launch_path.clone(),
                args: self.args.clone(),
                env: self.env.clone(),
                processes_per_host: self.processes_per_host,
            },
            activation_timeout_ms: self.activation_timeout_secs * 1000,
            placement_timeout_ms: self.placement_timeout_secs * 1000,
            health_check_interval_ms: self.health_check_interval_secs * 1000,
            process_ending_grace_ms: self.process_ending_grace_secs * 1000,
            max_placement_attempts: self.max_placement_attempts,
            scaling: self.scaling.clone(),
            labels: self.labels.clone(),
            version: 0,
            updated_at: 0,
            host_target: None,
        }
    }

    /// The definition a fleet record was made from.
    pub fn of(f: &Fleet) -> Self {
        let (mode, max) = match f.mode {
            ServerMode::Simple => (ModeName::Simple, 1),
            ServerMode::Parallel { max_sessions } => (ModeName::Parallel, max_sessions),
            ServerMode::Forking => (ModeName::Forking, 1),
        };
        FleetDefinition {
            name: f.name.clone(),
            mode,
            max_sessions_per_process: max,
            launch_path: f.runtime.launch_path.clone(),
            args: f.runtime.args.clone(),
            env: f.runtime.env.clone(),
            processes_per_host: f.runtime.processes_per_host,
            activation_timeout_secs: f.activation_timeout_ms / 1000,
            placement_timeout_secs: f.placement_timeout_ms / 1000,
            health_check_interval_secs: f.health_check_interval_ms / 1000,
            process_ending_grace_secs: f.process_ending_grace_ms / 1000,
            max_placement_attempts: f.max_placement_attempts,
            scaling: f.scaling.clone(),
            labels: f.labels.clone(),
        }
    }
}

/// Labels within their bounds.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if labels.len() > MAX_LABELS {
        return Err(FieldError::new(
            "labels",
            format!("at most {MAX_LABELS} labels, got {}", labels.len()),
        ));
    }
    for (k, v) in labels {
        if k.is_empty() || k.len() > MAX_LABEL_KEY {
            return Err(FieldError::new(
                "labels",
                format!("key '{k}' must be 1 to {MAX_LABEL_KEY} bytes"),
            ));
        }
        if v.len() > MAX_LABEL_VALUE {
            return Err(FieldError::new(
                format!("labels.{k}"),
                format!("must be at most {MAX_LABEL_VALUE} bytes"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> FleetDefinition {
        serde_json::from_str(r#"{"launch_path":"/bin/ds"}"#).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let d = def();
        assert_eq!(d, FleetDefinition::new("/bin/ds"));
        d.validate().unwrap();
        let f = d.to_fleet(
            FleetId::new_unchecked("f"),
            TitleRegionId::new_unchecked("tr"),
        );
        assert_eq!(f.name, "f");
        let mut back = FleetDefinition::of(&f);
        back.name = String::new();
        assert_eq!(back, d);
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = |edit: &dyn Fn(&mut FleetDefinition), field: &str| {
            let mut d = def();
            edit(&mut d);
            assert_eq!(d.validate().unwrap_err().field, field);
        };
        bad(&|d| d.launch_path = " ".into(), "launch_path");
        bad(
            &|d| d.scaling.min_processes = d.scaling.max_processes + 1,
            "scaling.min_processes",
        );
        bad(&|d| d.scaling.max_processes = 0, "scaling.max_processes");
        bad(
            &|d| {
                d.scaling.max_processes = 4;
                d.scaling.buffer = 5;
            },
            "scaling.buffer",
        );
        bad(&|d| d.processes_per_host = 0, "processes_per_host");
        bad(
            &|d| d.activation_timeout_secs = 0,
            "activation_timeout_secs",
        );
        bad(
            &|d| {
                d.mode = ModeName::Parallel;
                d.max_sessions_per_process = 0;
            },
            "max_sessions_per_process",
        );
        bad(
            &|d| {
                d.mode = ModeName::Forking;
                d.max_sessions_per_process = 2;
            },
            "max_sessions_per_process",
        );
        bad(&|d| d.env = [("A=B".into(), "x".into())].into(), "env");
        bad(
            &|d| d.labels = [(String::new(), "x".into())].into(),
            "labels",
        );
    }

    #[test]
    fn forking_mode_round_trips() {
        let d: FleetDefinition = serde_json::from_str(
            r#"{"launch_path":"/bin/ds","mode":"forking","processes_per_host":4}"#,
        )
        .unwrap();
        d.validate().unwrap();
        let f = d.to_fleet(
            FleetId::new_unchecked("f"),
            TitleRegionId::new_unchecked("tr"),
        );
        assert_eq!(f.mode, ServerMode::Forking);
        assert_eq!(FleetDefinition::of(&f).mode, ModeName::Forking);
    }

    #[test]
    fn unknown_fields_and_modes_are_refused() {
        assert!(
            serde_json::from_str::<FleetDefinition>(r#"{"launch_path":"x","colour":1}"#).is_err()
        );
        assert!(
            serde_json::from_str::<FleetDefinition>(r#"{"launch_path":"x","mode":"sharded"}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<FleetDefinition>(
            r#"{"launch_path":"x","scaling":{"buffer":1,"extra":2}}"#
        )
        .is_err());
    }
}
