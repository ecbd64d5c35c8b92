//! How a launch failed or an instance ended, and the abnormal state that
//! calls for. Shared by both drivers and the supervisor.

use crate::spec::{AbnormalReason, InstanceState};

/// How an instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ExitInfo {
    Code(i64),
    Signal(i32),
    OutOfMemory,
    /// Already a sentence fragment ("exited with status 137 (killed by signal 9)").
    Other(String),
}

/// Why a launch did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LaunchError {
    pub reason: AbnormalReason,
    pub detail: String,
}

fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_string())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// The abnormal state an exit leads to.
pub(crate) fn describe_exit(
    exit: &ExitInfo,
    memory_mb: u64,
    last_stderr: Option<String>,
) -> InstanceState {
    let (reason, mut detail) = match exit {
        ExitInfo::OutOfMemory if memory_mb > 0 => (
            AbnormalReason::OutOfMemory,
            format!(
                "exceeded its {memory_mb} MiB memory limit and was killed; raise the memory limit or make it use less memory"
            ),
        ),
        ExitInfo::OutOfMemory => (
            AbnormalReason::OutOfMemory,
            "was killed by the out-of-memory killer; set a memory limit it fits in or make it use less memory".to_string(),
        ),
        ExitInfo::Code(c) => (AbnormalReason::Crashed, format!("exited with status {c}")),
        ExitInfo::Signal(s) => (
            AbnormalReason::Crashed,
            format!("killed by signal {s} ({})", signal_name(*s)),
        ),
        ExitInfo::Other(s) => (AbnormalReason::Crashed, s.clone()),
    };
    if reason == AbnormalReason::Crashed {
        if let Some(l) = last_stderr {
            detail.push_str(&format!("; its last error output was: {l}"));
        }
    }
    InstanceState::Abnormal { reason, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits() {
        let s = describe_exit(&ExitInfo::Code(3), 64, None);
        assert_eq!(
            s,
            InstanceState::Abnormal {
                reason: AbnormalReason::Crashed,
                detail: "exited with status 3".into()
            }
        );
        let InstanceState::Abnormal { detail, .. } =
            describe_exit(&ExitInfo::Signal(9), 64, Some("boom".into()))
        else {
            panic!()
        };
        assert_eq!(
            detail,
            "killed by signal 9 (SIGKILL); its last error output was: boom"
        );
        let InstanceState::Abnormal { reason, detail } =
            describe_exit(&ExitInfo::OutOfMemory, 64, Some("x".into()))
        else {
            panic!()
        };
        assert_eq!(reason, AbnormalReason::OutOfMemory);
        assert!(
            detail.starts_with("exceeded its 64 MiB memory limit"),
            "{detail}"
        );
    }
}
