//! Intranet names (VS seed §8): a VS calls another as
//! `http://<vs>.<title region>.<title>.virtualserver.int/<path>` with its
//! ordinary HTTP client, which honours the `http_proxy` the agent gives it.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DOMAIN: &str = "tr-dev.title-dev.virtualserver.int";

/// `vs-a/fetch?url=<url>`: the sample VS calls `url` with urllib's default
/// opener; its answer is `{"status", "body"}`.
async fn fetch(c: &Cluster, url: &str) -> anyhow::Result<Value> {
    let mut q = String::new();
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            q.push(b as char);
        } else {
            q.push_str(&format!("%{b:02X}"));
        }
    }
    let a = c
        .backend
        .invoke("GET", &format!("vs-a/fetch?url={q}"), &[], vec![])
        .await?;
    assert_eq!(a.status, 200, "{url}: {}", a.body);
    Ok(a.json())
}

/// One request through the proxy at `proxy` (`host:port`), written by hand:
/// status, head and body of the answer.
async fn raw(proxy: &str, head: &str) -> anyhow::Result<(u16, String, String)> {
    let mut s = tokio::net::TcpStream::connect(proxy).await?;
    s.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out)).await??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let (h, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = h.split(' ').nth(1).unwrap_or("0").parse()?;
    Ok((status, h.to_string(), body.to_string()))
}

/// A plain HTTP server on 127.0.0.2 (not in `no_proxy`, so calls to it go
/// through the proxy) that answers every request with its head as text.
async fn outside_server() -> anyhow::Result<std::net::SocketAddr> {
    let l = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_lowercase();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                    head.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vs_calls_another_by_its_intranet_name_through_http_proxy() -> anyhow::Result<()> {
    let c = cluster().await?;
    c.put_vs("vs-a", python_vs_spec(json!({}))).await?;
    c.put_vs("vs-b", python_vs_spec(json!({}))).await?;
    c.wait_vs_running("vs-a", 1).await?;
    c.wait_vs_running("vs-b", 1).await?;

    // The name is in the VS's view and in its instances' environment, with
    // the proxy variables.
    let view = c
        .admin("GET", &admin_path("virtual_servers/vs-b"), None)
        .await?
        .json();
    assert_eq!(view["intranet_domain"], format!("vs-b.{DOMAIN}"), "{view}");
    let env = c
        .backend
        .invoke("GET", "vs-a/env", &[], vec![])
        .await?
        .json();
    assert_eq!(env["PGOS_VS_Intranet_Domain"], format!("vs-a.{DOMAIN}"));
    let proxy_url = env["http_proxy"].as_str().unwrap().to_string();
    assert_eq!(env["HTTP_PROXY"], proxy_url.as_str());
    assert!(
        env["no_proxy"].as_str().unwrap().contains("127.0.0.1"),
        "{env}"
    );
    assert!(env.get("https_proxy").is_none(), "{env}");
    let (creds, proxy) = proxy_url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('@'))
        .unwrap_or_else(|| panic!("{proxy_url}"));
    let token = creds.strip_prefix("intranet:").unwrap();
    assert!(env["PGOS_VS_Intranet_Endpoint"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/i/{token}")));

    // vs-a's plain urllib call by name reaches vs-b as an intranet call.
    let v = fetch(&c, &format!("http://vs-b.{DOMAIN}/hello?x=1")).await?;
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"]["vs"], "vs-b", "{v}");
    assert_eq!(v["body"]["invoker"], "intranet");
    assert_eq!(v["body"]["titleregionid"], TR);
    assert_eq!(v["body"]["path"], "/hello");
    assert_eq!(v["body"]["query"], "x=1");
    // Host names ignore case; port 80 may be written.
    let v = fetch(
        &c,
        "http://vs-b.TR-DEV.Title-Dev.VirtualServer.INT:80/hello",
    )
    .await?;
    assert_eq!(v["body"]["vs"], "vs-b", "{v}");

    // An unknown name, another title region's, a reserved URI.
    let v = fetch(&c, &format!("http://nope.{DOMAIN}/hello")).await?;
    assert_eq!(v["status"], 404, "{v}");
    assert!(
        v["body"]["message"].as_str().unwrap().contains("'nope'"),
        "{v}"
    );
    let v = fetch(&c, "http://vs-b.tr-other.title-dev.virtualserver.int/hello").await?;
    assert_eq!(v["status"], 404, "{v}");
    assert_eq!(v["body"]["error"], "not_found", "{v}");
    let v = fetch(&c, &format!("http://vs-b.{DOMAIN}/pgos_event")).await?;
    assert_eq!(v["status"], 403, "{v}");

    // Other hosts are forwarded as they are: Host kept, credentials dropped.
    let outside = outside_server().await?;
    let v = fetch(&c, &format!("http://{outside}/plain?y=2")).await?;
    assert_eq!(v["status"], 200, "{v}");
    let head = v["body"].as_str().unwrap();
    assert!(head.starts_with("get /plain?y=2 http/1.1"), "{head}");
    assert!(head.contains(&format!("host: {outside}")), "{head}");
    assert!(!head.contains("proxy-authorization"), "{head}");
    assert!(!head.contains("invoker"), "{head}");

    // The proxy wants the instance's token: none or a wrong one is 407.
    let get = |auth: &str| {
        format!("GET http://vs-b.{DOMAIN}/hello HTTP/1.1\r\nHost: vs-b.{DOMAIN}\r\n{auth}Connection: close\r\n\r\n")
    };
    let (status, head, body) = raw(proxy, &get("")).await?;
    assert_eq!(status, 407, "{head}");
    assert!(
        head.to_lowercase().contains("proxy-authenticate: basic"),
        "{head}"
    );
    let e: Value = serde_json::from_str(&body)?;
    assert_eq!(e["error"], "proxy_authentication_required", "{body}");
    let bad = "Proxy-Authorization: Basic aW50cmFuZXQ6bm9wZQ==\r\n"; // intranet:nope
    let (status, _, body) = raw(proxy, &get(bad)).await?;
    assert_eq!(status, 407, "{body}");
    assert!(body.contains("unknown intranet token"), "{body}");
    // With the token, by hand, as any client would send it.
    let b64 = b64(&format!("intranet:{token}"));
    let good = format!("Proxy-Authorization: Basic {b64}\r\n");
    let (status, _, body) = raw(proxy, &get(&good)).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["invoker"], "intranet");
    // HTTPS is not proxied.
    let connect = format!("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n{good}Connection: close\r\n\r\n");
    let (status, _, _) = raw(proxy, &connect).await?;
    assert_eq!(status, 405);
    Ok(())
}

fn b64(s: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in s.as_bytes().chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
