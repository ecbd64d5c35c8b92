//! A DS process's log files on its page: the list the agent keeps
//! (stdout, stderr, the collected `log_paths` files) and the tail of one of
//! them, cut to [`TAIL_BYTES`] and to whole lines, as text (the template
//! escapes it).

use super::time;
use serde::Serialize;

/// Most bytes of a log file the page shows: its last 64 KiB.
pub const TAIL_BYTES: u32 = 64 * 1024;

/// One log file, as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogFileRow {
    pub name: String,
    pub size: u64,
    /// Last modified, `YYYY-MM-DD HH:MM:SS` UTC.
    pub modified: String,
}

impl LogFileRow {
    pub fn new(name: String, size: u64, modified_ms: u64) -> LogFileRow {
        LogFileRow {
            name,
            size,
            modified: time(modified_ms),
        }
    }
}

/// The end of one log file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogTail {
    pub name: String,
    /// The file's whole size.
    pub size: u64,
    /// Whether the beginning of the file is left out.
    pub cut: bool,
    /// The text shown (invalid UTF-8 replaced).
    pub text: String,
}

/// The file the page shows: the one asked for (`file=`), which must be
/// listed (otherwise an error naming `file`), or else `stdout.log`, or else
/// the first listed; `None` when nothing is listed.
pub fn pick(listed: &[LogFileRow], asked: Option<&str>) -> Result<Option<String>, String> {
    match asked.map(str::trim).filter(|a| !a.is_empty()) {
        Some(a) => listed
            .iter()
            .find(|f| f.name == a)
            .map(|f| Some(f.name.clone()))
            .ok_or_else(|| format!("file: this process has no log file '{a}'")),
        None => Ok(listed
            .iter()
            .find(|f| f.name == "stdout.log")
            .or_else(|| listed.first())
            .map(|f| f.name.clone())),
    }
}

/// Where to read the tail of a file of `size` bytes from.
pub fn tail_offset(size: u64) -> u64 {
    size.saturating_sub(u64::from(TAIL_BYTES))
}

/// The tail of file `name` (`size` bytes) from `data`, read at `offset`:
/// when the read starts after the beginning, the partial first line is
/// dropped, so the page shows whole lines.
pub fn tail(name: &str, size: u64, offset: u64, data: &[u8]) -> LogTail {
    let cut = offset > 0;
    let data = if cut {
        match data.iter().position(|b| *b == b'\n') {
            Some(i) => &data[i + 1..],
            None => data,
        }
    } else {
        data
    };
    LogTail {
        name: name.to_string(),
        size,
        cut,
        text: String::from_utf8_lossy(data).into_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn files(names: &[&str]) -> Vec<LogFileRow> {
        names
            .iter()
            .map(|n| LogFileRow::new(n.to_string(), 1, 0))
            .collect()
    }

    #[test]
    fn the_asked_file_then_stdout_then_the_first() {
        let l = files(&["collected/0-game.log", "stderr.log", "stdout.log"]);
        assert_eq!(pick(&l, None).unwrap().as_deref(), Some("stdout.log"));
        assert_eq!(pick(&l, Some(" ")).unwrap().as_deref(), Some("stdout.log"));
        assert_eq!(
            pick(&l, Some("collected/0-game.log")).unwrap().as_deref(),
            Some("collected/0-game.log")
        );
        let e = pick(&l, Some("../../etc/passwd")).unwrap_err();
        assert!(e.starts_with("file: "), "{e}");
        let l = files(&["stderr.log"]);
        assert_eq!(pick(&l, None).unwrap().as_deref(), Some("stderr.log"));
        assert_eq!(pick(&[], None).unwrap(), None);
    }

    #[test]
    fn a_tail_shows_whole_lines_and_says_when_it_is_cut() {
        assert_eq!(tail_offset(10), 0);
        assert_eq!(tail_offset(u64::from(TAIL_BYTES) + 5), 5);
        let whole = tail("stdout.log", 12, 0, b"one\ntwo\n<b>\n");
        assert!(!whole.cut);
        assert_eq!(whole.text, "one\ntwo\n<b>\n");
        let cut = tail("stdout.log", 100, 90, b"ne\ntwo\n");
        assert!(cut.cut);
        assert_eq!(cut.text, "two\n");
        // One long line with no newline stays as read; bad UTF-8 is replaced.
        assert_eq!(tail("x", 9, 3, b"abc\xff").text, "abc\u{fffd}");
    }
}
