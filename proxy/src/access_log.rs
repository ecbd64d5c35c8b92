//! Virtual-server access logs (seed §9): one line per exchange in nginx's
//! default "combined" format,
//!
//! ```text
//! $remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! 10.0.0.7 - - [22/Nov/2026:10:00:00 +0000] "POST /backend_hello?x=1 HTTP/1.1" 200 17 "-" "curl/8.5.0"
//! ```
//!
//! in `<dir>/<title_region>/<vs>.access.log` (time in UTC). `$request` carries
//! the path the virtual server received. Like nginx, `"`, `\`, control and
//! non-ASCII bytes in the request line, referer and user agent are written as
//! `\xHH`.
//!
//! Requests never wait for the disk: lines go through a bounded channel to one
//! writer thread per store, which keeps a buffered writer per file and flushes
//! at least every 200 ms. When the channel is full the line is dropped and
//! `respawn_vs_access_log_dropped_total` counts it. A file that grows past the
//! store's size limit (64 MiB by default) is renamed to `<vs>.access.log.1`
//! (replacing the previous one) and a new file is started.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::Version;
use respawn_types::civil::{civil_from_days, days_from_civil};

use crate::ProxyError;

/// Longest time a written line waits in the buffer.
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Lines waiting for the writer thread before new ones are dropped.
const CHANNEL_CAPACITY: usize = 16 * 1024;
/// Open files the writer keeps before closing them all at the next flush.
const MAX_OPEN_FILES: usize = 512;
/// Default size at which a log file is rotated.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

enum Msg {
    Line(Arc<PathBuf>, String),
    Flush(SyncSender<()>),
}

/// The access logs of all virtual servers under one directory.
#[derive(Clone)]
pub struct AccessLogStore {
    dir: Arc<PathBuf>,
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for AccessLogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLogStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl AccessLogStore {
    /// Opens (creating it if needed) the directory `dir` and starts the writer
    /// thread, which ends once the store and every [`AccessLog`] are dropped.
    pub fn open(dir: impl Into<PathBuf>) -> Result<AccessLogStore, ProxyError> {
        Self::open_with_max_file_bytes(dir, DEFAULT_MAX_FILE_BYTES)
    }

    /// [`AccessLogStore::open`] with the size at which a file is rotated.
    pub fn open_with_max_file_bytes(
        dir: impl Into<PathBuf>,
        max_file_bytes: u64,
    ) -> Result<AccessLogStore, ProxyError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| ProxyError::AccessLogIo {
            path: dir.clone(),
            source,
        })?;
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        std::thread::Builder::new()
            .name("vs-access-log".into())
            .spawn(move || Writer::new(max_file_bytes.max(1)).run(rx))
            .map_err(|source| ProxyError::AccessLogIo {
                path: dir.clone(),
                source,
            })?;
        Ok(AccessLogStore {
            dir: Arc::new(dir),
            tx,
        })
    }

    /// The log of one virtual server of one title region. Cheap; the handle
    /// can be cached and cloned.
    pub fn for_vs(&self, title_region: &str, vs: &str) -> AccessLog {
        AccessLog {
            path: Arc::new(self.path_for(title_region, vs)),
            tx: self.tx.clone(),
        }
    }

    /// `<dir>/<title_region>/<vs>.access.log`, with both names reduced to
    /// `[A-Za-z0-9._-]` (others become `_`, a leading `.` too) so that no name
    /// leaves the directory.
    pub fn path_for(&self, title_region: &str, vs: &str) -> PathBuf {
        let mut p = self.dir.join(safe_name(title_region));
        p.push(format!("{}.access.log", safe_name(vs)));
        p
    }

    /// Writes out every line sent so far (waits up to 5 s for the writer).
    pub fn flush(&self) {
        let (ack_tx, ack_rx) = sync_channel(1);
        if self.tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Lines of one virtual server's log (oldest first; the rotated file, then
    /// the current one), after flushing what is buffered:
    ///
    /// - `since_unix_ms` / `until_unix_ms`: keep lines whose `$time_local`
    ///   second overlaps `[since, until]` (both inclusive; `None` = unbounded);
    /// - `contains`: keep lines containing this substring;
    /// - `tail`: when true, the last `limit` matching lines, else the first
    ///   `limit`.
    ///
    /// A log that does not exist yet gives no lines. Blocking file I/O: call it
    /// from `spawn_blocking` in async code.
    #[allow(clippy::too_many_arguments)]
    pub fn query(
        &self,
        title_region: &str,
        vs: &str,
        since_unix_ms: Option<u64>,
        until_unix_ms: Option<u64>,
        contains: Option<&str>,
        tail: bool,
        limit: usize,
    ) -> Result<Vec<String>, ProxyError> {
        self.flush();
        let path = self.path_for(title_region, vs);
        let mut out: VecDeque<String> = VecDeque::new();
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter_time = since_unix_ms.is_some() || until_unix_ms.is_some();
        'files: for p in [rotated_path(&path), path.clone()] {
            let file = match File::open(&p) {
                Ok(f) => f,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => return Err(ProxyError::AccessLogIo { path: p, source }),
            };
            let mut reader = BufReader::new(file);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).map_err(|source| {
                    ProxyError::AccessLogIo {
                        path: p.clone(),
                        source,
                    }
                })?;
                if n == 0 {
                    break;
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']);
                if filter_time {
                    let Some(t) = line_time_unix(line) else {
                        continue;
                    };
                    let (lo, hi) = (t.saturating_mul(1000), t.saturating_mul(1000) + 999);
                    if since_unix_ms.is_some_and(|s| hi < s)
                        || until_unix_ms.is_some_and(|u| lo > u)
                    {
                        continue;
                    }
                }
                if contains.is_some_and(|c| !line.contains(c)) {
                    continue;
                }
                out.push_back(line.to_owned());
                if out.len() > limit {
                    out.pop_front();
                }
                if !tail && out.len() == limit {
                    break 'files;
                }
            }
        }
        Ok(out.into())
    }
}

fn rotated_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".1");
    PathBuf::from(s)
}

fn safe_name(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() || s.starts_with('.') {
        s.insert(0, '_');
    }
    s
}

/// One virtual server's access log: a cheap, cloneable handle.
#[derive(Clone)]
pub struct AccessLog {
    path: Arc<PathBuf>,
    tx: SyncSender<Msg>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AccessLog {
    /// The file this handle appends to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line without waiting (dropped, and counted, when the
    /// writer is too far behind).
    pub fn append(&self, entry: &AccessEntry<'_>) {
        self.append_line(entry.to_line());
    }

    fn append_line(&self, line: String) {
        match self.tx.try_send(Msg::Line(self.path.clone(), line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                metrics::counter!("respawn_vs_access_log_dropped_total").increment(1);
            }
        }
    }
}

/// The fields of one access-log line.
#[derive(Debug, Clone)]
pub struct AccessEntry<'a> {
    /// When the exchange ended, Unix seconds.
    pub time_unix: u64,
    pub remote_addr: Option<IpAddr>,
    pub method: &'a str,
    /// Path and query as the virtual server received them.
    pub uri: &'a str,
    pub version: Version,
    pub status: u16,
    pub body_bytes_sent: u64,
    pub referer: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
}

impl AccessEntry<'_> {
    /// The line, without the newline.
    pub fn to_line(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::with_capacity(96 + self.uri.len());
        match self.remote_addr {
            Some(ip) => {
                let _ = write!(s, "{ip}");
            }
            None => s.push('-'),
        }
        s.push_str(" - - [");
        s.push_str(&format_time_local(self.time_unix));
        s.push_str("] \"");
        escape_into(&mut s, self.method.as_bytes());
        s.push(' ');
        escape_into(&mut s, self.uri.as_bytes());
        s.push(' ');
        s.push_str(version_str(self.version));
        let _ = write!(s, "\" {} {} \"", self.status, self.body_bytes_sent);
        escape_or_dash(&mut s, self.referer);
        s.push_str("\" \"");
        escape_or_dash(&mut s, self.user_agent);
        s.push('"');
        s
    }
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn escape_or_dash(s: &mut String, v: Option<&[u8]>) {
    match v {
        Some(v) if !v.is_empty() => escape_into(s, v),
        _ => s.push('-'),
    }
}

/// nginx's default log escaping: `"`, `\`, control and non-ASCII bytes as `\xHH`.
fn escape_into(s: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            s.push_str("\\x");
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            s.push(b as char);
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `22/Nov/2026:10:00:00 +0000` for Unix seconds `t` (UTC).
pub(crate) fn format_time_local(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let secs = t % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{d:02}/{}/{y:04}:{:02}:{:02}:{:02} +0000",
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Unix seconds of the `[$time_local]` field of a line.
fn line_time_unix(line: &str) -> Option<u64> {
    let start = line.find('[')? + 1;
    let end = start + line[start..].find(']')?;
    parse_time_local(&line[start..end])
}

/// Parses `22/Nov/2026:10:00:00 +0000` (any `±hhmm` offset).
pub(crate) fn parse_time_local(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 26 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' || b[20] != b' ' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let d = num(0..2)?;
    let m = MONTHS.iter().position(|x| *x == &s[3..6])? as u32 + 1;
    let y = num(7..11)?;
    if b[14] != b':' || b[17] != b':' {
        return None;
    }
    let (hh, mm, ss) = (num(12..14)?, num(15..17)?, num(18..20)?);
    let sign = match b[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let off = sign * (num(22..24)? * 3600 + num(24..26)? * 60);
    if !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    // `d` is in 1..=31 (checked above), so the cast keeps it.
    let t = days_from_civil(y, m, d as u32) * 86_400 + hh * 3600 + mm * 60 + ss - off;
    u64::try_from(t).ok()
}

struct OpenFile {
    w: BufWriter<File>,
    size: u64,
}

/// The writer thread's state.
struct Writer {
    max_file_bytes: u64,
    files: HashMap<Arc<PathBuf>, OpenFile>,
    last_warning: Option<Instant>,
}

impl Writer {
    fn new(max_file_bytes: u64) -> Writer {
        Writer {
            max_file_bytes,
            files: HashMap::new(),
            last_warning: None,
        }
    }

    fn run(mut self, rx: Receiver<Msg>) {
        let mut dirty = false;
        let mut last_flush = Instant::now();
        loop {
            let msg = if dirty {
                rx.recv_timeout(FLUSH_EVERY.saturating_sub(last_flush.elapsed()))
            } else {
                rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
            };
            match msg {
                Ok(Msg::Line(path, line)) => {
                    self.write(path, &line);
                    dirty = true;
                }
                Ok(Msg::Flush(ack)) => {
                    self.flush_all();
                    dirty = false;
                    last_flush = Instant::now();
                    let _ = ack.try_send(());
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.flush_all();
                    return;
                }
            }
            if dirty && last_flush.elapsed() >= FLUSH_EVERY {
                self.flush_all();
                dirty = false;
                last_flush = Instant::now();
            }
        }
    }

    fn write(&mut self, path: Arc<PathBuf>, line: &str) {
        let len = line.len() as u64 + 1;
        let rotate = self
            .files
            .get(&path)
            .is_some_and(|f| f.size > 0 && f.size + len > self.max_file_bytes);
        if rotate {
            if let Some(mut f) = self.files.remove(&path) {
                let _ = f.w.flush();
            }
            if let Err(e) = std::fs::rename(&*path, rotated_path(&path)) {
                self.warn(&path, &e);
            }
        }
        if !self.files.contains_key(&path) {
            match open_append(&path) {
                Ok(f) => {
                    self.files.insert(path.clone(), f);
                }
                Err(e) => {
                    self.warn(&path, &e);
                    return;
                }
            }
        }
        let Some(f) = self.files.get_mut(&path) else {
            return;
        };
        let res =
            f.w.write_all(line.as_bytes())
                .and_then(|()| f.w.write_all(b"\n"));
        match res {
            Ok(()) => f.size += len,
            Err(e) => {
                self.files.remove(&path);
                self.warn(&path, &e);
            }
        }
    }

    fn flush_all(&mut self) {
        let mut failed = Vec::new();
        for (path, f) in &mut self.files {
            if let Err(e) = f.w.flush() {
                failed.push((path.clone(), e));
            }
        }
        for (path, e) in failed {
            self.files.remove(&path);
            self.warn(&path, &e);
        }
        if self.files.len() > MAX_OPEN_FILES {
            self.files.clear();
        }
    }

    /// Logs an I/O error, at most once per 10 s.
    fn warn(&mut self, path: &Path, e: &std::io::Error) {
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(10))
        {
            self.last_warning = Some(Instant::now());
            tracing::warn!(path = %path.display(), error = %e, "cannot write virtual-server access log");
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<OpenFile> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = OpenOptions::new().create(true).append(true).open(path)?;
    let size = file.metadata()?.len();
    Ok(OpenFile {
        w: BufWriter::with_capacity(32 * 1024, file),
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_local_round_trips() {
        // 2026-11-22T10:00:00Z
        let t = 1_795_341_600;
        assert_eq!(format_time_local(t), "22/Nov/2026:10:00:00 +0000");
        assert_eq!(parse_time_local("22/Nov/2026:10:00:00 +0000"), Some(t));
        assert_eq!(parse_time_local("22/Nov/2026:18:00:00 +0800"), Some(t));
        assert_eq!(parse_time_local("22/Nov/2026:05:00:00 -0500"), Some(t));
        assert_eq!(format_time_local(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(format_time_local(951_782_400), "29/Feb/2000:00:00:00 +0000");
        for t in [
            0,
            1,
            59,
            86_399,
            86_400,
            951_782_399,
            4_102_444_800,
            1_795_341_600,
        ] {
            assert_eq!(parse_time_local(&format_time_local(t)), Some(t), "{t}");
        }
        for bad in [
            "",
            "22/Nov/2026:10:00:00",
            "22/Foo/2026:10:00:00 +0000",
            "22/Nov/2026 10:00:00 +0000",
            "2x/Nov/2026:10:00:00 +0000",
            "22/Nov/2026:25:00:00 +0000",
            "22/Nov/2026:10:00:00 *0000",
        ] {
            assert_eq!(parse_time_local(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_is_nginx_combined() {
        let e = AccessEntry {
            time_unix: 1_795_341_600,
            remote_addr: Some("10.0.0.7".parse().unwrap()),
            method: "POST",
            uri: "/backend_hello?x=1",
            version: Version::HTTP_11,
            status: 200,
            body_bytes_sent: 17,
            referer: None,
            user_agent: Some(b"curl/8.5.0"),
        };
        assert_eq!(
            e.to_line(),
            r#"10.0.0.7 - - [22/Nov/2026:10:00:00 +0000] "POST /backend_hello?x=1 HTTP/1.1" 200 17 "-" "curl/8.5.0""#
        );
        let e = AccessEntry {
            remote_addr: None,
            referer: Some(b"http://a/\"q\""),
            user_agent: Some("ua\\\n\u{e9}".as_bytes()),
            version: Version::HTTP_2,
            ..e
        };
        assert_eq!(
            e.to_line(),
            r#"- - - [22/Nov/2026:10:00:00 +0000] "POST /backend_hello?x=1 HTTP/2.0" 200 17 "http://a/\x22q\x22" "ua\x5C\x0A\xC3\xA9""#
        );
        assert_eq!(line_time_unix(&e.to_line()), Some(1_795_341_600));
    }

    #[test]
    fn names_stay_inside_the_directory() {
        assert_eq!(safe_name("vs-x"), "vs-x");
        assert_eq!(safe_name("../etc"), "_.._etc");
        assert_eq!(safe_name(".."), "_..");
        assert_eq!(safe_name(""), "_");
        assert_eq!(safe_name("a/b\\c"), "a_b_c");
    }

    fn entry(t: u64, uri: &str) -> AccessEntry<'_> {
        AccessEntry {
            time_unix: t,
            remote_addr: None,
            method: "GET",
            uri,
            version: Version::HTTP_11,
            status: 200,
            body_bytes_sent: 0,
            referer: None,
            user_agent: None,
        }
    }

    #[test]
    fn query_filters_by_time_substring_and_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccessLogStore::open(dir.path()).unwrap();
        let log = store.for_vs("tr-1", "vs-a");
        let other = store.for_vs("tr-1", "vs-b");
        for i in 0..10u64 {
            log.append(&entry(1_000 + i, &format!("/p{i}")));
        }
        other.append(&entry(1_000, "/other"));
        let all = |s, u, c, tail, limit| store.query("tr-1", "vs-a", s, u, c, tail, limit).unwrap();
        assert_eq!(all(None, None, None, false, 100).len(), 10);
        let first = all(None, None, None, false, 3);
        assert!(
            first[0].contains("/p0 ") && first[2].contains("/p2 "),
            "{first:?}"
        );
        let last = all(None, None, None, true, 3);
        assert!(
            last[0].contains("/p7 ") && last[2].contains("/p9 "),
            "{last:?}"
        );
        // 1 002 500 ms lies in second 1002; 1 004 000 ms is second 1004.
        let range = all(Some(1_002_500), Some(1_004_000), None, false, 100);
        assert_eq!(range.len(), 3, "{range:?}");
        assert!(range[0].contains("/p2 ") && range[2].contains("/p4 "));
        assert_eq!(all(None, None, Some("/p5 "), false, 100).len(), 1);
        assert_eq!(all(None, None, Some("/other"), false, 100).len(), 0);
        assert_eq!(all(None, None, None, true, 0).len(), 0);
        assert!(store
            .query("tr-1", "nope", None, None, None, true, 10)
            .unwrap()
            .is_empty());
        let content = std::fs::read_to_string(dir.path().join("tr-1/vs-b.access.log")).unwrap();
        assert_eq!(content.lines().count(), 1);
    }

    #[test]
    fn lines_are_flushed_without_query() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccessLogStore::open(dir.path()).unwrap();
        let log = store.for_vs("tr", "vs");
        log.append(&entry(5, "/x"));
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let content = std::fs::read_to_string(log.path()).unwrap_or_default();
            if content.lines().count() == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "line never flushed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn files_rotate_at_the_size_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = AccessLogStore::open_with_max_file_bytes(dir.path(), 300).unwrap();
        let log = store.for_vs("tr", "vs");
        for i in 0..10u64 {
            log.append(&entry(i, &format!("/r{i}")));
        }
        store.flush();
        let rotated = rotated_path(log.path());
        assert!(rotated.exists());
        assert!(std::fs::metadata(log.path()).unwrap().len() <= 300);
        let lines = store
            .query("tr", "vs", None, None, None, true, 100)
            .unwrap();
        assert!(lines.last().unwrap().contains("/r9 "), "{lines:?}");
        // Order is kept across the two files.
        let nums: Vec<u64> = lines
            .iter()
            .map(|l| {
                l.split("/r")
                    .nth(1)
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap()
            })
            .collect();
        assert!(nums.windows(2).all(|w| w[0] < w[1]), "{nums:?}");
    }
}
