//! Instance logs: JSON lines under `<data_dir>/logs/<title_region>/<vs_name>/v<version>/`,
//! one file per instance, rotated by size (`<instance_id>.log.1`, …,
//! [`crate::rotate`]); the logs of ended instances are swept
//! ([`sweep`], [`crate::retention`]).

use std::collections::HashSet;
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use respawn_types::text::truncate_utf8;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead};

use crate::error::RuntimeError;
use crate::retention::{self, LogUnit, Retention};
use crate::rotate::{RotatingFile, Rotation};
use crate::spec::{now_ms, InstanceSpec, LogLine, LogQuery};

/// Longer lines are cut into pieces of this many bytes.
pub(crate) const MAX_LINE: usize = 16 * 1024;

#[derive(Serialize, Deserialize)]
struct Record<'a> {
    ts_ms: u64,
    #[serde(borrow)]
    instance_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    stream: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    line: std::borrow::Cow<'a, str>,
}

/// The log file of one instance.
#[derive(Debug)]
pub(crate) struct LogFile {
    path: PathBuf,
    instance_id: String,
    file: Mutex<Option<RotatingFile>>,
    last_stderr: Mutex<Option<String>>,
}

/// The directory of one VS's logs.
pub(crate) fn vs_dir(data_dir: &Path, title_region: &str, vs_name: &str) -> PathBuf {
    data_dir.join("logs").join(title_region).join(vs_name)
}

impl LogFile {
    /// Opens (appending) the log file of `spec`'s instance.
    pub fn open(
        data_dir: &Path,
        spec: &InstanceSpec,
        rotation: Rotation,
    ) -> std::io::Result<LogFile> {
        let dir =
            vs_dir(data_dir, &spec.title_region, &spec.vs_name).join(format!("v{}", spec.version));
        fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}.log", spec.instance_id));
        let file = RotatingFile::open(&path, rotation)?;
        Ok(LogFile {
            path,
            instance_id: spec.instance_id.clone(),
            file: Mutex::new(Some(file)),
            last_stderr: Mutex::new(None),
        })
    }

    /// Appends one line (without its newline) from `stream` ("stdout" / "stderr").
    pub fn write(&self, stream: &str, line: &str) {
        let mut rest = line;
        loop {
            let piece = truncate_utf8(rest, MAX_LINE);
            let tail = &rest[piece.len()..];
            self.write_one(stream, piece);
            if tail.is_empty() {
                break;
            }
            rest = tail;
        }
        if stream == "stderr" && !line.trim().is_empty() {
            if let Ok(mut l) = self.last_stderr.lock() {
                *l = Some(line.chars().take(200).collect());
            }
        }
    }

    fn write_one(&self, stream: &str, line: &str) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        // The time is taken under the lock so that a file is in time order.
        let rec = Record {
            ts_ms: now_ms(),
            instance_id: self.instance_id.as_str().into(),
            stream: stream.into(),
            line: line.into(),
        };
        let Ok(mut json) = serde_json::to_vec(&rec) else {
            return;
        };
        json.push(b'\n');
        if let Some(f) = guard.as_mut() {
            if let Err(e) = f.write(&json) {
                tracing::warn!(path = %self.path.display(), "cannot write a log line: {e}");
            }
        }
    }

    /// The last non-empty line written to stderr, if any (cut to 200 characters).
    pub fn last_stderr(&self) -> Option<String> {
        self.last_stderr.lock().ok()?.clone()
    }

    /// Forgets the last stderr line (at a relaunch).
    pub fn clear_last_stderr(&self) {
        if let Ok(mut l) = self.last_stderr.lock() {
            *l = None;
        }
    }
}

/// Copies `reader` line by line into `log` as `stream`, until end of file.
pub(crate) async fn pump<R: AsyncRead + Unpin>(
    reader: R,
    log: std::sync::Arc<LogFile>,
    stream: &'static str,
) {
    let mut r = tokio::io::BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while buf.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                    buf.pop();
                }
                log.write(stream, &String::from_utf8_lossy(&buf));
            }
        }
    }
}

/// Splits chunks of output into lines, keeping the unfinished end for later.
#[derive(Default)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
}

impl LineSplitter {
    /// Feeds a chunk; calls `f` with each complete line.
    pub fn feed(&mut self, chunk: &[u8], mut f: impl FnMut(&str)) {
        self.pending.extend_from_slice(chunk);
        while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
            let mut line: Vec<u8> = self.pending.drain(..=i).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            f(&String::from_utf8_lossy(&line));
        }
        if self.pending.len() > MAX_LINE {
            let line: Vec<u8> = std::mem::take(&mut self.pending);
            f(&String::from_utf8_lossy(&line));
        }
    }

    /// Flushes an unfinished last line.
    pub fn finish(&mut self, mut f: impl FnMut(&str)) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            f(&String::from_utf8_lossy(&line));
        }
    }
}

/// The instance a log file belongs to: `<instance_id>.log` or a rotated
/// `<instance_id>.log.<n>`.
fn instance_of(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    if let Some(id) = name.strip_suffix(".log") {
        return Some(id);
    }
    let (stem, n) = name.rsplit_once('.')?;
    n.parse::<u32>().ok()?;
    stem.strip_suffix(".log")
}

fn is_log_file(path: &Path) -> bool {
    instance_of(path).is_some()
}

/// Deletes the logs of ended instances (not in `live`) by
/// [`retention::to_delete`]; returns the bytes freed. Directories left
/// empty are removed.
pub(crate) fn sweep(
    data_dir: &Path,
    live: &HashSet<String>,
    policy: &Retention,
    now: std::time::SystemTime,
) -> u64 {
    let mut units: Vec<LogUnit> = Vec::new();
    let mut version_dirs: Vec<PathBuf> = Vec::new();
    let read = |p: &Path| {
        fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
    };
    for region in read(&data_dir.join("logs")) {
        for vs in read(&region) {
            for version in read(&vs) {
                let mut by_instance: std::collections::BTreeMap<String, Vec<PathBuf>> =
                    Default::default();
                for file in read(&version) {
                    if let Some(id) = instance_of(&file) {
                        by_instance.entry(id.to_string()).or_default().push(file);
                    }
                }
                for (id, paths) in by_instance {
                    let (mut bytes, mut last_write) = (0, std::time::SystemTime::UNIX_EPOCH);
                    for p in &paths {
                        let (b, m) = retention::measure(p);
                        bytes += b;
                        last_write = last_write.max(m);
                    }
                    units.push(LogUnit {
                        paths,
                        live: live.contains(&id),
                        last_write,
                        bytes,
                    });
                }
                version_dirs.push(version);
            }
        }
    }
    let chosen = retention::to_delete(&units, policy, now);
    let freed = retention::delete(&units, &chosen);
    for dir in version_dirs {
        let _ = fs::remove_dir(dir); // Only if empty.
    }
    freed
}

/// Answers a [`LogQuery`] by scanning the VS's log files.
pub(crate) fn query(data_dir: &Path, q: &LogQuery) -> Result<Vec<LogLine>, RuntimeError> {
    let dir = vs_dir(data_dir, &q.title_region, &q.vs_name);
    let mut versions: Vec<(u64, PathBuf)> = Vec::new();
    match q.version {
        Some(v) => versions.push((v, dir.join(format!("v{v}")))),
        None => {
            if let Ok(rd) = fs::read_dir(&dir) {
                for e in rd.flatten() {
                    if let Some(v) = e
                        .file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix('v'))
                        .and_then(|n| n.parse::<u64>().ok())
                    {
                        versions.push((v, e.path()));
                    }
                }
            }
        }
    }
    let cap = if q.limit == 0 { usize::MAX } else { q.limit };
    // Per file keep at most what can be returned: the first `cap` matches, or the
    // last `min(tail, cap)`. Each file is in time order.
    let keep = match q.tail {
        Some(t) => t.min(cap),
        None => cap,
    };
    let mut all: Vec<LogLine> = Vec::new();
    if keep == 0 {
        return Ok(all);
    }
    for (version, vdir) in versions {
        let Ok(rd) = fs::read_dir(&vdir) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_log_file(p))
            .collect();
        // Oldest first: per instance, `.log.<n>` from the highest n, then
        // `.log` (lines of one millisecond keep their order in the sort).
        files.sort_by_key(|p| {
            let rotation = p
                .extension()
                .and_then(|x| x.to_str())
                .and_then(|x| x.parse::<u32>().ok())
                .unwrap_or(0);
            (
                instance_of(p).map(str::to_string),
                std::cmp::Reverse(rotation),
            )
        });
        for path in files {
            let Ok(f) = File::open(&path) else { continue };
            let mut window: VecDeque<LogLine> = VecDeque::new();
            for raw in BufReader::new(f).split(b'\n') {
                let Ok(raw) = raw else { break };
                let Ok(rec) = serde_json::from_slice::<Record>(&raw) else {
                    continue;
                };
                if q.since_ms.is_some_and(|s| rec.ts_ms < s)
                    || q.until_ms.is_some_and(|u| rec.ts_ms >= u)
                {
                    continue;
                }
                if q.contains.as_deref().is_some_and(|c| !rec.line.contains(c)) {
                    continue;
                }
                window.push_back(LogLine {
                    ts_ms: rec.ts_ms,
                    version,
                    instance_id: rec.instance_id.into_owned(),
                    stream: rec.stream.into_owned(),
                    line: rec.line.into_owned(),
                });
                if window.len() > keep {
                    if q.tail.is_some() {
                        window.pop_front();
                    } else {
                        window.pop_back();
                        break;
                    }
                }
            }
            all.extend(window);
        }
    }
    all.sort_by_key(|l| l.ts_ms);
    if q.tail.is_some() {
        let skip = all.len().saturating_sub(keep);
        all.drain(..skip);
    } else {
        all.truncate(keep);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Source;

    fn spec(id: &str, version: u64) -> InstanceSpec {
        InstanceSpec {
            instance_id: id.into(),
            title_region: "tr".into(),
            vs_name: "vs".into(),
            version,
            source: Source::Process {
                command: "true".into(),
            },
            args: vec![],
            env: Default::default(),
            listen_port: 8080,
            cpu_millicores: 0,
            memory_mb: 0,
        }
    }

    fn q() -> LogQuery {
        LogQuery {
            title_region: "tr".into(),
            vs_name: "vs".into(),
            version: None,
            since_ms: None,
            until_ms: None,
            contains: None,
            tail: None,
            limit: 0,
        }
    }

    #[test]
    fn writes_and_queries() {
        let d = tempfile::tempdir().unwrap();
        let a = LogFile::open(d.path(), &spec("a", 1), Rotation::default()).unwrap();
        let b = LogFile::open(d.path(), &spec("b", 2), Rotation::default()).unwrap();
        for i in 0..10 {
            a.write("stdout", &format!("a line {i}"));
            b.write("stderr", &format!("b line {i}"));
        }
        assert_eq!(b.last_stderr().as_deref(), Some("b line 9"));
        let all = query(d.path(), &q()).unwrap();
        assert_eq!(all.len(), 20);
        assert!(all.windows(2).all(|w| w[0].ts_ms <= w[1].ts_ms));

        let v1 = query(
            d.path(),
            &LogQuery {
                version: Some(1),
                ..q()
            },
        )
        .unwrap();
        assert_eq!(v1.len(), 10);
        assert!(v1
            .iter()
            .all(|l| l.version == 1 && l.instance_id == "a" && l.stream == "stdout"));

        let c = query(
            d.path(),
            &LogQuery {
                contains: Some("line 7".into()),
                ..q()
            },
        )
        .unwrap();
        assert_eq!(c.len(), 2);

        let t = query(
            d.path(),
            &LogQuery {
                version: Some(2),
                tail: Some(3),
                ..q()
            },
        )
        .unwrap();
        let lines: Vec<&str> = t.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["b line 7", "b line 8", "b line 9"]);

        let l = query(
            d.path(),
            &LogQuery {
                version: Some(2),
                limit: 2,
                ..q()
            },
        )
        .unwrap();
        let lines: Vec<&str> = l.iter().map(|l| l.line.as_str()).collect();
        assert_eq!(lines, ["b line 0", "b line 1"]);

        let future = query(
            d.path(),
            &LogQuery {
                since_ms: Some(now_ms() + 60_000),
                ..q()
            },
        )
        .unwrap();
        assert!(future.is_empty());
        let past = query(
            d.path(),
            &LogQuery {
                until_ms: Some(1),
                ..q()
            },
        )
        .unwrap();
        assert!(past.is_empty());
        let none = query(
            d.path(),
            &LogQuery {
                vs_name: "other".into(),
                ..q()
            },
        )
        .unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn long_lines_are_cut() {
        let d = tempfile::tempdir().unwrap();
        let a = LogFile::open(d.path(), &spec("a", 1), Rotation::default()).unwrap();
        a.write("stdout", &"é".repeat(MAX_LINE));
        let all = query(d.path(), &q()).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(
            all.iter().map(|l| l.line.len()).sum::<usize>(),
            2 * MAX_LINE
        );
    }

    #[test]
    fn rotated_files_are_bounded_and_still_queried() {
        let d = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_file_bytes: 4096,
            rotated_files: 2,
        };
        let a = LogFile::open(d.path(), &spec("a", 1), rotation).unwrap();
        for i in 0..500 {
            a.write("stdout", &format!("line {i}"));
        }
        let dir = vs_dir(d.path(), "tr", "vs").join("v1");
        let files: Vec<PathBuf> = fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files.iter().map(|p| fs::metadata(p).unwrap().len()).sum();
        assert!(total <= 3 * 4096, "{total}");
        // The newest lines are found, across the live and rotated files,
        // in time order; the oldest are gone.
        let t = query(
            d.path(),
            &LogQuery {
                tail: Some(60),
                ..q()
            },
        )
        .unwrap();
        let lines: Vec<String> = t.iter().map(|l| l.line.clone()).collect();
        let expected: Vec<String> = (440..500).map(|i| format!("line {i}")).collect();
        assert_eq!(lines, expected);
        let all = query(d.path(), &q()).unwrap();
        assert!(all.len() < 500 && all.iter().all(|l| l.line != "line 0"));
    }

    #[test]
    fn the_sweep_deletes_ended_instances_logs_only() {
        let d = tempfile::tempdir().unwrap();
        let rotation = Rotation {
            max_file_bytes: 1024,
            rotated_files: 1,
        };
        for id in ["live", "ended"] {
            let f = LogFile::open(d.path(), &spec(id, 1), rotation).unwrap();
            for i in 0..100 {
                f.write("stdout", &format!("{id} {i}"));
            }
        }
        let ended = LogFile::open(d.path(), &spec("old", 2), rotation).unwrap();
        ended.write("stdout", "bye");
        drop(ended);
        let live: HashSet<String> = ["live".to_string()].into();
        // Far in the future, everything ended is too old.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(30 * 86_400);
        let freed = sweep(d.path(), &live, &Retention::default(), later);
        assert!(freed > 0);
        let left = query(d.path(), &q()).unwrap();
        assert!(!left.is_empty());
        assert!(left.iter().all(|l| l.instance_id == "live"), "{left:?}");
        // The version directory left empty is gone.
        assert!(!vs_dir(d.path(), "tr", "vs").join("v2").exists());
        // Now, with a size cap below what the live logs take: nothing else
        // to delete, the live logs stay.
        let cap = Retention {
            max_age: std::time::Duration::from_secs(86_400),
            max_total_bytes: 1,
        };
        sweep(d.path(), &live, &cap, std::time::SystemTime::now());
        assert!(!query(d.path(), &q()).unwrap().is_empty());
    }

    #[test]
    fn splitter_keeps_partial_lines() {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        s.feed(b"one\ntw", |l| out.push(l.to_string()));
        s.feed(b"o\r\nthree", |l| out.push(l.to_string()));
        s.finish(|l| out.push(l.to_string()));
        assert_eq!(out, ["one", "two", "three"]);
    }
}
