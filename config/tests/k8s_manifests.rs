//! The Kubernetes manifests of `deploy/k8s/` parse, the agents' termination
//! grace covers their drain deadline, and the autoscalers read the fleets'
//! desired-host gauge (`deploy/k8s/check.py`, which needs python3 with PyYAML).

use std::path::Path;
use std::process::Command;

#[test]
fn k8s_manifests_parse_and_agree_with_the_drain_deadline() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/k8s/check.py");
    let out = Command::new("python3")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
