//! A fleet's scaling policy and the error every fleet rule reports (the
//! field that is wrong and why); [`crate::fleet`] validates whole fleet
//! definitions with them.

use crate::limits::MAX_FLEET_PROCESSES;
use serde::{Deserialize, Serialize};

/// How many DS processes a fleet should run. `buffer` is the capacity kept
/// available: idle processes in simple mode, free session slots in
/// parallel mode. The autoscaler that acts on it is not built yet; the
/// policy is validated and stored so that it can be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
}

fn default_max() -> u32 {
    MAX_FLEET_PROCESSES
}

impl Default for ScalingPolicy {
    fn default() -> Self {
        ScalingPolicy {
            min_processes: 0,
            max_processes: MAX_FLEET_PROCESSES,
            buffer: 0,
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
        Ok(())
    }
}
