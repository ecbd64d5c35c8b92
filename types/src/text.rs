//! Text helpers shared by every crate that bounds what it keeps or sends.

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a
/// character boundary (never splits a UTF-8 sequence).
pub fn truncate_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    // Index 0 is always a boundary, so this stops.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max_bytes` (see [`truncate_utf8`]) with `…` appended
/// when something was cut.
pub fn clip_with_ellipsis(s: &str, max_bytes: usize) -> String {
    let kept = truncate_utf8(s, max_bytes);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(truncate_utf8("abc", 3), "abc");
        assert_eq!(clip_with_ellipsis("abc", 10), "abc");
    }

    #[test]
    fn cuts_on_a_character_boundary() {
        // "é" is two bytes: a cut at 2 would split it.
        assert_eq!(truncate_utf8("aé", 2), "a");
        assert_eq!(truncate_utf8("aé", 3), "aé");
        assert_eq!(truncate_utf8("日本", 4), "日");
        assert_eq!(truncate_utf8("日本", 0), "");
        assert_eq!(clip_with_ellipsis("日本", 4), "日…");
    }
}
