//! A fleet's scaling policy and the error every fleet rule reports (the
//! field that is wrong and why); [`crate::fleet`] validates whole fleet
//! definitions with them. The autoscaler that acts on the policy is
//! `respawn_actors::autoscale`.

use crate::cron::CronSchedule;
use crate::limits::MAX_FLEET_PROCESSES;
use serde::{Deserialize, Serialize};

/// Most scheduled windows one policy may have.
pub const MAX_SCHEDULE_WINDOWS: usize = 16;
/// Longest scale-in delay (1 hour) and longest scheduled window (7 days).
pub const MAX_SCALE_IN_DELAY_SECS: u64 = 3600;
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;

/// How many DS processes a fleet should run. `buffer` is the capacity kept
/// available: idle processes in simple mode, free session slots in
/// parallel mode; `buffer_percent` the same as a percentage of the fleet's
/// capacity (the larger of the two applies).
///
/// A policy with no `min_processes`, no buffer and no schedule is the
/// **fill** policy (the default): every host runs `processes_per_host`
/// processes, as before autoscaling existed. Any of them makes the fleet
/// autoscaled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScalingPolicy {
    /// Fewest processes the fleet keeps (0 ..= max_processes).
    #[serde(default)]
    pub min_processes: u32,
    /// Most processes the fleet may run, all hosts together (1 ..= 100000).
    #[serde(default = "default_max")]
    pub max_processes: u32,
    /// Available capacity to keep (0 ..= max_processes).
    #[serde(default)]
    pub buffer: u32,
    /// Available capacity to keep as a percentage of the fleet's capacity
    /// (1 ..= 99); the larger of this and `buffer` applies.
    #[serde(default)]
    pub buffer_percent: Option<u32>,
    /// How long capacity must have been above what is needed before idle
    /// processes are stopped (0 ..= 3600 s, default 60). Scale-out is immediate.
    #[serde(default = "default_delay")]
    pub scale_in_delay_secs: u64,
    /// Scheduled changes of `min_processes` and `buffer` (at most 16).
    #[serde(default)]
    pub schedule: Vec<ScheduleWindow>,
}

/// A scheduled window: from each time `cron` fires (UTC), for
/// `duration_secs`, the fleet keeps at least this `min_processes` and this
/// `buffer` (when given; the larger of the window's and the policy's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleWindow {
    /// Five-field cron expression or alias (`0 18 * * 5`, `@daily`).
    pub cron: String,
    /// Length of the window (60 ..= 604800 s).
    pub duration_secs: u64,
    #[serde(default)]
    pub min_processes: Option<u32>,
    #[serde(default)]
    pub buffer: Option<u32>,
}

impl ScheduleWindow {
    /// Is the window open at `now_ms`: did `cron` fire in the last `duration_secs`?
    pub fn is_open(&self, now_ms: u64) -> bool {
        let Ok(cron) = CronSchedule::parse(&self.cron) else {
            return false;
        };
        let from = now_ms.saturating_sub(self.duration_secs.saturating_mul(1000));
        cron.next_after(from).is_some_and(|t| t <= now_ms)
    }
}

fn default_max() -> u32 {
    MAX_FLEET_PROCESSES
}

fn default_delay() -> u64 {
    60
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        ScalingPolicy {
            min_processes: 0,
            max_processes: MAX_FLEET_PROCESSES,
            buffer: 0,
            buffer_percent: None,
            scale_in_delay_secs: default_delay(),
            schedule: Vec::new(),
        }
    }
}

/// A rule a fleet definition breaks: the field (dotted path) and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl ScalingPolicy {
    /// Is the fleet autoscaled (anything but the fill policy)?
    pub fn is_autoscaled(&self) -> bool {
        self.min_processes > 0
            || self.buffer > 0
            || self.buffer_percent.is_some()
            || !self.schedule.is_empty()
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        if self.max_processes == 0 || self.max_processes > MAX_FLEET_PROCESSES {
            return Err(FieldError::new(
                "scaling.max_processes",
                format!(
                    "must be between 1 and {MAX_FLEET_PROCESSES}, got {}",
                    self.max_processes
                ),
            ));
        }
        if self.min_processes > self.max_processes {
            return Err(FieldError::new(
                "scaling.min_processes",
                format!(
                    "must not exceed scaling.max_processes ({}), got {}",
                    self.max_processes, self.min_processes
                ),
            ));
        }
        if self.buffer > self.max_processes {
            return Err(FieldError::new(
                "scaling.buffer",
                format!(
                    "must be between 0 and scaling.max_processes ({}), got {}",
                    self.max_processes, self.buffer
                ),
            ));
        }
        if let Some(p) = self.buffer_percent {
            if !(1..=99).contains(&p) {
                return Err(FieldError::new(
                    "scaling.buffer_percent",
                    format!("must be between 1 and 99, got {p}"),
                ));
            }
        }
        if self.scale_in_delay_secs > MAX_SCALE_IN_DELAY_SECS {
            return Err(FieldError::new(
                "scaling.scale_in_delay_secs",
                format!(
                    "must be between 0 and {MAX_SCALE_IN_DELAY_SECS}, got {}",
                    self.scale_in_delay_secs
                ),
            ));
        }
        if self.schedule.len() > MAX_SCHEDULE_WINDOWS {
            return Err(FieldError::new(
                "scaling.schedule",
                format!(
                    "at most {MAX_SCHEDULE_WINDOWS} windows, got {}",
                    self.schedule.len()
                ),
            ));
        }
        for (i, w) in self.schedule.iter().enumerate() {
            let field = |f: &str| format!("scaling.schedule[{i}].{f}");
            if let Err(e) = CronSchedule::parse(&w.cron) {
                return Err(FieldError::new(field("cron"), e.to_string()));
            }
            if !(60..=MAX_WINDOW_SECS).contains(&w.duration_secs) {
                return Err(FieldError::new(
                    field("duration_secs"),
                    format!(
                        "must be between 60 and {MAX_WINDOW_SECS}, got {}",
                        w.duration_secs
                    ),
                ));
            }
            for (name, v) in [("min_processes", w.min_processes), ("buffer", w.buffer)] {
                if let Some(v) = v.filter(|v| *v > self.max_processes) {
                    return Err(FieldError::new(
                        field(name),
                        format!(
                            "must not exceed scaling.max_processes ({}), got {v}",
                            self.max_processes
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What the autoscaler last did to a fleet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ScalingAction {
    /// Fill policy: every host runs `processes_per_host`.
    Fill,
    ScaleOut,
    ScaleIn,
    /// Idle processes of an older fleet version stopped (they are replaced).
    Rollout,
    Hold,
}

/// One decision of the autoscaler, with its reason in words.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScalingDecision {
    /// When it was made (ms since the Unix epoch).
    pub at: u64,
    pub action: ScalingAction,
    /// Processes the fleet should run.
    pub desired_processes: u32,
    /// Hosts needed for them (desired processes ÷ processes_per_host, rounded up).
    pub desired_hosts: u32,
    /// Processes asked to stop by this decision.
    pub stopped: u32,
    /// Why, e.g. "available 2 < buffer 3: scale out by 1".
    pub reason: String,
}

/// The autoscaler's replicated record of one fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetScaling {
    /// Processes each host should run (absent: `processes_per_host`).
    /// Bounded by the fleet's hosts.
    #[serde(default)]
    pub targets: std::collections::BTreeMap<crate::HostId, u32>,
    /// Desired processes set by an operator; overrides the buffer, within min/max.
    #[serde(default)]
    pub manual_desired: Option<u32>,
    #[serde(default)]
    pub last: Option<ScalingDecision>,
    /// Decisions committed so far.
    #[serde(default)]
    pub decisions: u64,
    /// Since when the fleet has had more processes than desired, as the
    /// leader's autoscaler committed it when the surplus began (`None`: no
    /// surplus). The scale-in delay counts from it, so a new leader goes on
    /// with the same clock instead of starting the delay again.
    #[serde(default)]
    pub surplus_since: Option<crate::UnixMillis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(cron: &str, secs: u64) -> ScheduleWindow {
        ScheduleWindow {
            cron: cron.into(),
            duration_secs: secs,
            min_processes: Some(3),
            buffer: None,
        }
    }

    #[test]
    fn old_policies_read_as_before() {
        let p: ScalingPolicy = serde_json::from_str(r#"{"buffer":2}"#).unwrap();
        assert_eq!(p.scale_in_delay_secs, 60);
        assert!(p.is_autoscaled());
        assert!(!ScalingPolicy::default().is_autoscaled());
    }

    #[test]
    fn each_bad_field_is_named() {
        let bad = |edit: &dyn Fn(&mut ScalingPolicy), field: &str| {
            let mut p = ScalingPolicy::default();
            edit(&mut p);
            assert_eq!(p.validate().unwrap_err().field, field);
        };
        bad(&|p| p.buffer_percent = Some(100), "scaling.buffer_percent");
        bad(&|p| p.buffer_percent = Some(0), "scaling.buffer_percent");
        bad(
            &|p| p.scale_in_delay_secs = 3601,
            "scaling.scale_in_delay_secs",
        );
        bad(
            &|p| p.schedule = vec![window("61 * * * *", 60)],
            "scaling.schedule[0].cron",
        );
        bad(
            &|p| p.schedule = vec![window("@daily", 59)],
            "scaling.schedule[0].duration_secs",
        );
        bad(
            &|p| {
                p.max_processes = 2;
                p.schedule = vec![window("@daily", 60)];
            },
            "scaling.schedule[0].min_processes",
        );
        bad(
            &|p| p.schedule = vec![window("@daily", 60); 17],
            "scaling.schedule",
        );
    }

    #[test]
    fn a_window_is_open_for_its_duration_after_each_fire() {
        let w = window("0 * * * *", 600); // every hour, for 10 minutes
        let hour = 3_600_000u64 * 1000;
        assert!(w.is_open(hour));
        assert!(w.is_open(hour + 599_000));
        assert!(!w.is_open(hour + 601_000));
        assert!(!w.is_open(hour - 1));
    }
}
