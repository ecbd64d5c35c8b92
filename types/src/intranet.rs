//! Intranet names of virtual servers (VS seed §8): a VS calls another of
//! its title region as `http://<vs name>.<title region id>.<title id>.virtualserver.int/<path>`
//! (HTTP, port 80), through the agent's intranet proxy (its `http_proxy`).
//! The two middle labels are the seed's `xxx.xxx`: the title region and the
//! title, so every VS of every title region has one name.

use crate::{TitleId, TitleRegionId, VsName};

/// The suffix of every intranet name.
pub const INTRANET_SUFFIX: &str = "virtualserver.int";

/// The port intranet names answer on.
pub const INTRANET_PORT: u16 = 80;

/// `<vs>.<title region>.<title>.virtualserver.int`: the VS's intranet
/// domain, as shown in its view and given to its instances in
/// `PGOS_VS_Intranet_Domain`.
pub fn intranet_domain(vs: &VsName, tr: &TitleRegionId, title: &TitleId) -> String {
    format!("{vs}.{}", region_domain(tr, title))
}

/// `<title region>.<title>.virtualserver.int`: what follows the VS name in
/// the intranet domains of one title region.
pub fn region_domain(tr: &TitleRegionId, title: &TitleId) -> String {
    format!("{tr}.{title}.{INTRANET_SUFFIX}")
}

/// What a host name asked of the intranet proxy is, seen from a caller whose
/// title region's domain is `region` (see [`region_domain`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IntranetHost<'a> {
    /// `<label>.<region>`: a VS of the caller's title region (the label is
    /// the VS name as written; it may still not exist).
    Own(&'a str),
    /// Any other `*.virtualserver.int` name: another title region's VS, or
    /// no VS at all.
    Foreign,
    /// Not an intranet name: an ordinary host outside.
    Outside,
}

/// Classifies `host` (a URI's host, without port; one trailing dot
/// allowed). Host names compare without regard to ASCII case, as DNS names
/// do; the VS name is returned as written.
pub fn classify_host<'a>(host: &'a str, region: &str) -> IntranetHost<'a> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if !ends_with_label(host, INTRANET_SUFFIX) {
        return IntranetHost::Outside;
    }
    // `<label>.<region>`: longer than the region by a dot and a label.
    if host.len() > region.len() + 1 && ends_with_label(host, region) {
        let label = &host[..host.len() - region.len() - 1];
        if !label.contains('.') {
            return IntranetHost::Own(label);
        }
    }
    IntranetHost::Foreign
}

/// `host` is `suffix` or ends with `.suffix` (ASCII case-insensitively).
fn ends_with_label(host: &str, suffix: &str) -> bool {
    let (h, s) = (host.as_bytes(), suffix.as_bytes());
    if h.len() == s.len() {
        return h.eq_ignore_ascii_case(s);
    }
    h.len() > s.len()
        && h[h.len() - s.len()..].eq_ignore_ascii_case(s)
        && h[h.len() - s.len() - 1] == b'.'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> String {
        region_domain(
            &TitleRegionId::new_unchecked("tr-dev"),
            &TitleId::new_unchecked("title-dev"),
        )
    }

    #[test]
    fn domain_has_the_seeds_shape() {
        let d = intranet_domain(
            &VsName::parse("prometheus").unwrap(),
            &TitleRegionId::new_unchecked("euff_5tcsa_812179_dev"),
            &TitleId::new_unchecked("5tcsa"),
        );
        assert_eq!(
            d,
            "prometheus.euff_5tcsa_812179_dev.5tcsa.virtualserver.int"
        );
    }

    #[test]
    fn hosts_are_classified() {
        let r = region();
        let own = |h| classify_host(h, &r);
        assert_eq!(
            own("vs-b.tr-dev.title-dev.virtualserver.int"),
            IntranetHost::Own("vs-b")
        );
        // DNS names ignore case; the VS name is kept as written.
        assert_eq!(
            own("VS-B.TR-DEV.Title-Dev.VirtualServer.INT."),
            IntranetHost::Own("VS-B")
        );
        for foreign in [
            "vs-b.tr-eu.title-dev.virtualserver.int",
            "vs-b.tr-dev.other.virtualserver.int",
            "tr-dev.title-dev.virtualserver.int",
            ".tr-dev.title-dev.virtualserver.int",
            "a.b.tr-dev.title-dev.virtualserver.int",
            "virtualserver.int",
            "x.virtualserver.int",
        ] {
            assert_eq!(own(foreign), IntranetHost::Foreign, "{foreign}");
        }
        for outside in [
            "example.com",
            "127.0.0.1",
            "virtualserver.int.example.com",
            "xvirtualserver.int",
            "vs-b.tr-dev.title-devvirtualserver.int",
        ] {
            assert_eq!(own(outside), IntranetHost::Outside, "{outside}");
        }
        // A title region id with dots is still one suffix.
        let dotted = region_domain(
            &TitleRegionId::new_unchecked("eu.1"),
            &TitleId::new_unchecked("t.x"),
        );
        assert_eq!(
            classify_host("vs-b.eu.1.t.x.virtualserver.int", &dotted),
            IntranetHost::Own("vs-b")
        );
    }
}
