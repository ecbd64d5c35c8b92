//! The seed's reserved URIs (§5.1) and headers (§4.7, §5.2), and the header
//! filters of the proxy.

use std::borrow::Cow;

use axum::http::{header, HeaderMap, HeaderName};

/// Headers a caller may not send to a virtual server: the PGOS SDK's reserved
/// list (seed §4.7), plus `Invoker` and `X-Forwarded-For`, which the edge sets
/// itself. Matching is case-insensitive. The proxy drops every one of them
/// from the caller's request; it then sets `Titleid`, `Titleregionid`,
/// `Invoker`, `Playerid`/`Sessionid` and rebuilds `X-Forwarded-For` (keeping
/// the caller's chain in front).
pub const RESERVED_HEADERS: &[&str] = &[
    "SDKVersion",
    "ProtoVersion",
    "TitleId",
    "TitleRegionId",
    "SessionId",
    "PlayerId",
    "PlayerTicket",
    "RoutingKey",
    "UicAccountInfo",
    "SecretID",
    "Pid",
    "ServerTicket",
    "DstAddr",
    "DstCode",
    "AccTicket",
    "Invoker",
    "X-Forwarded-For",
];

/// `RESERVED_HEADERS`, for a lowercase [`HeaderName`]; a test keeps the two
/// lists equal.
pub(crate) fn is_reserved_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "sdkversion"
            | "protoversion"
            | "titleid"
            | "titleregionid"
            | "sessionid"
            | "playerid"
            | "playerticket"
            | "routingkey"
            | "uicaccountinfo"
            | "secretid"
            | "pid"
            | "serverticket"
            | "dstaddr"
            | "dstcode"
            | "accticket"
            | "invoker"
            | "x-forwarded-for"
    )
}

/// Hop-by-hop headers (RFC 9110 §7.6.1): never forwarded, in either direction.
pub(crate) fn is_hop_by_hop(name: &HeaderName) -> bool {
    *name == header::CONNECTION
        || *name == header::TRANSFER_ENCODING
        || *name == header::TE
        || *name == header::TRAILER
        || *name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The header names listed in the `Connection` headers of `headers` (those
/// are hop-by-hop too); usually none.
pub(crate) fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .collect()
}

/// The reserved URIs of seed §5.1: only PGOS itself may call them.
const RESERVED_URIS: [(&str, &str); 5] = [
    ("pgos_event", "/pgos_event"),
    ("pgos_task", "/pgos_task"),
    ("pgos_economy", "/pgos_economy"),
    ("pgos_matchmaking", "/pgos_matchmaking"),
    ("pgos_idip", "/pgos_idip"),
];

/// Which reserved URI (`/pgos_event`, `/pgos_task`, `/pgos_economy`,
/// `/pgos_matchmaking`, `/pgos_idip`) `path` would reach, if any: the URI
/// itself or any sub-path of it, whatever the case, after percent-decoding
/// (repeatedly, so double encoding does not hide it), treating `\` as `/`,
/// collapsing duplicate slashes, resolving `.` and `..` segments and cutting
/// `;parameters`. A query or fragment is ignored. A first segment that starts
/// with the name and continues with anything but a letter, a digit, `_` or `-`
/// (`/pgos_event.json`, `/pgos_event%00`) counts as reserved too;
/// `/pgos_events` does not.
pub fn reserved_uri(path: &str) -> Option<&'static str> {
    let path = match path.find(['?', '#']) {
        Some(i) => &path[..i],
        None => path,
    };
    let decoded = fully_decoded(path);
    let first = first_segment(&decoded)?;
    let first = first.as_bytes();
    RESERVED_URIS.iter().find_map(|(name, uri)| {
        let n = name.len();
        let matches = first.len() >= n
            && first[..n].eq_ignore_ascii_case(name.as_bytes())
            && first
                .get(n)
                .is_none_or(|b| !(b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-'));
        matches.then_some(*uri)
    })
}

/// Percent-decodes until nothing changes (at most a few rounds) and turns `\`
/// into `/`.
fn fully_decoded(path: &str) -> Cow<'_, str> {
    let mut cur: Cow<'_, str> = Cow::Borrowed(path);
    for _ in 0..4 {
        if !cur.contains('%') {
            break;
        }
        let next = percent_decode(&cur);
        if next == *cur {
            break;
        }
        cur = Cow::Owned(next);
    }
    if cur.contains('\\') {
        cur = Cow::Owned(cur.replace('\\', "/"));
    }
    cur
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The first segment of the normalised path (empty and `.` segments skipped,
/// `..` popping), with any `;parameters` cut off.
fn first_segment(path: &str) -> Option<&str> {
    let mut stack: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        let seg = match seg.find(';') {
            Some(i) => &seg[..i],
            None => seg,
        };
        match seg {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            s => stack.push(s),
        }
    }
    stack.first().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_header_match_covers_the_list() {
        for h in RESERVED_HEADERS {
            let name = HeaderName::from_bytes(h.as_bytes()).unwrap();
            assert!(is_reserved_header(&name), "{h}");
        }
        for h in ["content-type", "x-custom", "host", "titleids", "player"] {
            assert!(!is_reserved_header(&HeaderName::from_static(h)), "{h}");
        }
        // The match arm list and the public list have the same length.
        assert_eq!(RESERVED_HEADERS.len(), 17);
    }

    #[test]
    fn hop_by_hop_headers() {
        for h in [
            "connection",
            "keep-alive",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-connection",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(h)), "{h}");
        }
        assert!(!is_hop_by_hop(&header::CONTENT_LENGTH));
        let mut m = HeaderMap::new();
        m.append(header::CONNECTION, "close, X-Secret".parse().unwrap());
        m.append(header::CONNECTION, "x-other".parse().unwrap());
        assert_eq!(connection_listed(&m), ["close", "x-secret", "x-other"]);
        assert!(connection_listed(&HeaderMap::new()).is_empty());
    }

    #[test]
    fn reserved_uris_are_caught_however_spelled() {
        let cases = [
            ("/pgos_event", Some("/pgos_event")),
            ("/pgos_event/", Some("/pgos_event")),
            ("/pgos_event/x/y", Some("/pgos_event")),
            ("/pgos_event?a=1", Some("/pgos_event")),
            ("/PGOS_Event", Some("/pgos_event")),
            ("/%70gos_event", Some("/pgos_event")),
            ("/%2570gos_event", Some("/pgos_event")),
            ("//pgos_event", Some("/pgos_event")),
            ("/./pgos_event", Some("/pgos_event")),
            ("/a/../pgos_event", Some("/pgos_event")),
            ("/a/%2e%2e/pgos_event", Some("/pgos_event")),
            ("/a%2f..%2fpgos_task", Some("/pgos_task")),
            ("/a/..;/pgos_task", Some("/pgos_task")),
            ("\\pgos_economy", Some("/pgos_economy")),
            ("/pgos_matchmaking;x=1", Some("/pgos_matchmaking")),
            ("/pgos_idip%00", Some("/pgos_idip")),
            ("/pgos_idip.json", Some("/pgos_idip")),
            ("/pgos_event%3Fx", Some("/pgos_event")),
            ("/../../pgos_event", Some("/pgos_event")),
            ("/pgos_events", None),
            ("/pgos_task_list", None),
            ("/my/pgos_event", None),
            ("/backend_hello", None),
            ("/", None),
            ("", None),
            ("/%", None),
            ("/%7", None),
            ("/pgos", None),
        ];
        for (path, want) in cases {
            assert_eq!(reserved_uri(path), want, "{path}");
        }
    }
}
