//! `respawn ctl cluster` and `respawn ctl vs`: an HTTP client of the admin
//! API of any server node; it prints the answers as JSON (or log lines).

use super::{AdminFlags, ClusterCmd, VsCmd, VsFlags};
use anyhow::{bail, Context};
use std::path::Path;

/// `<server>/admin/title_regions/<title region>/<rest>`.
pub(super) fn region_url(f: &VsFlags, rest: &str) -> String {
    format!(
        "{}/admin/title_regions/{}/{rest}",
        f.admin.server.trim_end_matches('/'),
        f.title_region
    )
}

/// The JSON document at `path` (`-`: standard input); `what` names it in
/// the error when it is not JSON.
pub(super) fn read_json(path: &Path, what: &str) -> anyhow::Result<serde_json::Value> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    serde_json::from_str(&text).with_context(|| format!("the {what} file is not JSON"))
}

/// Sends `req` with the admin token and prints the answer's JSON body, if
/// any; an answer other than 2xx is an error.
pub(super) async fn send(admin: &AdminFlags, req: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let res = req.bearer_auth(&admin.token).send().await?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    if !text.is_empty() {
        let body: serde_json::Value =
            serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

pub async fn cluster_ctl(cmd: &ClusterCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (admin, req) = match cmd {
        ClusterCmd::Status(a) => (a, client.get(format!("{}/admin/cluster", a.server.trim_end_matches('/')))),
        ClusterCmd::AddLearner { admin, node_id, quic_addr, http_addr } => (
            admin,
            client
                .post(format!("{}/admin/cluster/add_learner", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id, "quic_addr": quic_addr, "http_addr": http_addr})),
        ),
        ClusterCmd::Promote { admin, node_id } => (
            admin,
            client
                .post(format!("{}/admin/cluster/promote", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id})),
        ),
        ClusterCmd::Remove { admin, node_id } => (
            admin,
            client
                .post(format!("{}/admin/cluster/remove", admin.server.trim_end_matches('/')))
                .json(&serde_json::json!({"node_id": node_id})),
        ),
    };
    let res = req.bearer_auth(&admin.token).send().await?;
    let status = res.status();
    let body: serde_json::Value = res.json().await.unwrap_or(serde_json::Value::Null);
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}

pub async fn vs_ctl(cmd: &VsCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = region_url;
    let (flags, req) = match cmd {
        VsCmd::List(f) => (f, client.get(url(f, "virtual_servers"))),
        VsCmd::Get { flags, name } => (
            flags,
            client.get(url(flags, &format!("virtual_servers/{name}"))),
        ),
        VsCmd::Put { flags, name, spec } => {
            let body = read_json(spec, "spec")?;
            (
                flags,
                client
                    .put(url(flags, &format!("virtual_servers/{name}")))
                    .json(&body),
            )
        }
        VsCmd::Start { flags, name } => (
            flags,
            client.post(url(flags, &format!("virtual_servers/{name}/start"))),
        ),
        VsCmd::Stop { flags, name } => (
            flags,
            client.post(url(flags, &format!("virtual_servers/{name}/stop"))),
        ),
        VsCmd::Delete { flags, name } => (
            flags,
            client.delete(url(flags, &format!("virtual_servers/{name}"))),
        ),
        VsCmd::Logs {
            flags,
            name,
            version,
            contains,
            tail,
        } => {
            let mut q = vec![("tail", tail.to_string())];
            if let Some(v) = version {
                q.push(("version", v.to_string()));
            }
            if let Some(c) = contains {
                q.push(("contains", c.clone()));
            }
            let enc = |v: &str| -> String {
                v.bytes()
                    .map(|b| {
                        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                            (b as char).to_string()
                        } else {
                            format!("%{b:02X}")
                        }
                    })
                    .collect()
            };
            let qs: Vec<String> = q.iter().map(|(k, v)| format!("{k}={}", enc(v))).collect();
            (
                flags,
                client.get(format!(
                    "{}?{}",
                    url(flags, &format!("virtual_servers/{name}/logs")),
                    qs.join("&")
                )),
            )
        }
    };
    let res = req.bearer_auth(&flags.admin.token).send().await?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if let (VsCmd::Logs { .. }, true) = (cmd, status.is_success()) {
        for l in body["lines"].as_array().into_iter().flatten() {
            println!(
                "v{} {} {}: {}",
                l["version"],
                l["instance_id"].as_str().unwrap_or(""),
                l["stream"].as_str().unwrap_or(""),
                l["line"].as_str().unwrap_or("")
            );
        }
    } else if !text.is_empty() {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !status.is_success() {
        bail!("the server answered {status}");
    }
    Ok(())
}
