#!/usr/bin/env python3
"""Checks the Kubernetes manifests of deploy/k8s/: every file parses as YAML,
every agent pod's termination grace covers its drain deadline, and the
autoscalers read the gauge the servers export. Run: python3 deploy/k8s/check.py"""
import pathlib
import sys

import yaml

HERE = pathlib.Path(__file__).resolve().parent
GAUGE = "respawn_fleet_desired_hosts"
KILL_GRACE_SECS = 5      # agent.kill_grace_ms default
REPORTS_SECS = 10        # the agent's wait for its last reports after a drain


def docs():
    for path in sorted(HERE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                yield path.name, doc


def agent_deadline(container, config_deadline):
    for e in container.get("env", []):
        if e.get("name") == "RESPAWN_AGENT__DRAIN_DEADLINE_SECS":
            return int(e["value"])
    return config_deadline


def main():
    errors = []
    all_docs = list(docs())
    config_deadline = 600
    for _, d in all_docs:
        if d["kind"] == "ConfigMap" and "respawn.toml" in d.get("data", {}):
            import tomllib
            agent = tomllib.loads(d["data"]["respawn.toml"]).get("agent", {})
            config_deadline = agent.get("drain_deadline_secs", config_deadline)
    scaled = set()
    for name, d in all_docs:
        kind = d["kind"]
        if kind in ("StatefulSet", "DaemonSet", "Deployment"):
            pod = d["spec"]["template"]["spec"]
            for c in pod["containers"]:
                if "agent" not in c.get("args", []):
                    continue
                need = agent_deadline(c, config_deadline) + KILL_GRACE_SECS + REPORTS_SECS
                grace = pod.get("terminationGracePeriodSeconds", 30)
                if grace < need:
                    errors.append(f"{name}: {d['metadata']['name']}: terminationGracePeriodSeconds "
                                  f"{grace} < drain deadline + grace {need}")
                pre = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
                if kind != "DaemonSet" and "drain-agent" not in pre:
                    errors.append(f"{name}: {d['metadata']['name']}: no preStop drain-agent hook")
        if kind == "HorizontalPodAutoscaler":
            scaled.add(d["spec"]["scaleTargetRef"]["name"])
            names = [m["external"]["metric"]["name"] for m in d["spec"]["metrics"]
                     if m["type"] == "External"]
            if names != [GAUGE]:
                errors.append(f"{name}: HPA metric {names}, expected {GAUGE}")
        if kind == "ScaledObject":
            scaled.add(d["spec"]["scaleTargetRef"]["name"])
            for t in d["spec"]["triggers"]:
                if GAUGE not in t["metadata"]["query"]:
                    errors.append(f"{name}: KEDA query does not read {GAUGE}")
    if "respawn-agent" not in scaled:
        errors.append("no autoscaler targets respawn-agent")
    for e in errors:
        print(e, file=sys.stderr)
    print(f"{len(all_docs)} documents checked, {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
