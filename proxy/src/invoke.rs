//! What the edge and the agent share about an invoke call: how long it waits
//! for a starting instance, and the path it forwards.

use axum::http::Uri;
use std::time::Duration;

/// How long a call waits for an instance that is starting (seed: requests
/// that arrive while an instance starts wait instead of failing).
pub const COLD_START_WAIT: Duration = Duration::from_secs(10);

/// The upstream path of an invoke URL: what follows `/{prefix}/{vs}`,
/// with the query (raw, as the caller sent it).
pub fn upstream_path(uri: &Uri, prefix: &str, vs: &str) -> String {
    let path = uri.path();
    let rest = path
        .strip_prefix(prefix)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.strip_prefix(vs))
        .unwrap_or("");
    let mut out = if rest.is_empty() {
        "/".to_string()
    } else {
        rest.to_string()
    };
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn upstream_paths_keep_the_rest_and_the_query() {
        let u = |s: &str| s.parse::<Uri>().unwrap();
        let p = "/virtualserver/invoke";
        assert_eq!(
            upstream_path(&u("/virtualserver/invoke/vs-a"), p, "vs-a"),
            "/"
        );
        assert_eq!(
            upstream_path(&u("/virtualserver/invoke/vs-a/b/c?x=1&y=%20"), p, "vs-a"),
            "/b/c?x=1&y=%20"
        );
        assert_eq!(
            upstream_path(&u("/virtualserver/invoke/vs-a/"), p, "vs-a"),
            "/"
        );
    }
}
