//! Log files bounded by size: `<name>` is rotated to `<name>.1` (and
//! `<name>.1` to `<name>.2`, …) before a write would take it past
//! [`Rotation::max_file_bytes`]; at most [`Rotation::rotated_files`] rotated
//! files are kept, so one log never takes more than
//! `max_file_bytes × (rotated_files + 1)`.
//!
//! Written here rather than taken from a crate (file-rotate, rolling-file):
//! the VS logs are JSON lines that must rotate between two records, the DS
//! logs are raw bytes copied from a pipe, and both are ~40 lines over
//! `std::fs`; the crates bring date handling and compression we do not use.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// How big a log file may grow and how many rotated files are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    /// Rotate before a write would take the file past this many bytes.
    pub max_file_bytes: u64,
    /// Rotated files kept (`<name>.1` is the newest).
    pub rotated_files: usize,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_file_bytes: 10 * 1024 * 1024,
            rotated_files: 2,
        }
    }
}

/// The path of rotated file `n` of `path` (`<path>.<n>`).
pub fn rotated_path(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// A log file that rotates itself.
#[derive(Debug)]
pub struct RotatingFile {
    path: PathBuf,
    rotation: Rotation,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (creating it).
    pub fn open(path: &Path, rotation: Rotation) -> io::Result<RotatingFile> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            rotation,
            file,
            size,
        })
    }

    /// Appends `bytes` (one record) whole to the current file, rotating
    /// first if they would take it past the cap (a record larger than the
    /// cap goes alone into a fresh file).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.size > 0 && self.size + bytes.len() as u64 > self.rotation.max_file_bytes {
            self.rotate()?;
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Appends a piece of a byte stream, split so that no file passes the
    /// cap: each file is filled up to its last line end that fits (or cut
    /// mid-line when a line is longer than a whole file).
    pub fn write_stream(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let cap = self.rotation.max_file_bytes.max(1);
        while !bytes.is_empty() {
            let room = cap.saturating_sub(self.size) as usize;
            if bytes.len() <= room {
                return self.write(bytes);
            }
            let window = &bytes[..room];
            let cut = match window.iter().rposition(|&b| b == b'\n') {
                Some(i) => i + 1,
                // No line end fits: a fresh file, or a hard cut if this
                // file is fresh already.
                None if self.size > 0 => 0,
                None => room,
            };
            if cut > 0 {
                self.file.write_all(&bytes[..cut])?;
                self.size += cut as u64;
            }
            self.rotate()?;
            bytes = &bytes[cut..];
        }
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.rotated_files;
        if keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        // The oldest is overwritten by the rename of the one before it.
        for n in (1..keep).rev() {
            let from = rotated_path(&self.path, n);
            if from.exists() {
                fs::rename(&from, rotated_path(&self.path, n + 1))?;
            }
        }
        fs::rename(&self.path, rotated_path(&self.path, 1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Copies `reader` (a child's stdout or stderr) into a rotating file at
/// `path` until end of file ([`RotatingFile::write_stream`]).
pub async fn pump_to_file<R: AsyncRead + Unpin>(mut reader: R, path: PathBuf, rotation: Rotation) {
    let mut file = match RotatingFile::open(&path, rotation) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!(path = %path.display(), "cannot open a log file: {e}");
            None
        }
    };
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let Some(f) = file.as_mut() else {
            continue; // Keep draining so the child never blocks on a full pipe.
        };
        if let Err(e) = f.write_stream(&buf[..n]) {
            tracing::warn!(path = %path.display(), "cannot write a log file: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn size(p: &Path) -> u64 {
        fs::metadata(p).map(|m| m.len()).unwrap_or(0)
    }

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.log");
        let rotation = Rotation {
            max_file_bytes: 100,
            rotated_files: 2,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        for i in 0..100 {
            f.write(format!("line {i:04}\n").as_bytes()).unwrap(); // 10 bytes
        }
        // 1000 bytes written, 100 per file: the live file and two rotated.
        for p in [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)] {
            assert!(size(&p) <= 100, "{} is {} bytes", p.display(), size(&p));
        }
        assert!(!rotated_path(&path, 3).exists());
        // The newest lines are in the live file, the ones before in .1.
        let live = fs::read_to_string(&path).unwrap();
        assert!(live.ends_with("line 0099\n"), "{live}");
        let one = fs::read_to_string(rotated_path(&path, 1)).unwrap();
        assert!(one.ends_with("line 0089\n"), "{one}");
        // Every line is whole.
        for p in [&path, &rotated_path(&path, 1), &rotated_path(&path, 2)] {
            for l in fs::read_to_string(p).unwrap().lines() {
                assert_eq!(l.len(), 9, "{l}");
            }
        }
    }

    #[test]
    fn reopening_continues_the_size_count() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.log");
        let rotation = Rotation {
            max_file_bytes: 20,
            rotated_files: 1,
        };
        RotatingFile::open(&path, rotation)
            .unwrap()
            .write(b"0123456789abcdef")
            .unwrap();
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        f.write(b"0123456789").unwrap();
        assert_eq!(size(&rotated_path(&path, 1)), 16);
        assert_eq!(size(&path), 10);
    }

    #[test]
    fn no_rotated_files_truncates() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.log");
        let mut f = RotatingFile::open(
            &path,
            Rotation {
                max_file_bytes: 10,
                rotated_files: 0,
            },
        )
        .unwrap();
        f.write(b"12345678").unwrap();
        f.write(b"abcdefgh").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "abcdefgh");
        assert!(!rotated_path(&path, 1).exists());
    }

    #[test]
    fn a_stream_fills_files_to_their_last_line_end_and_cuts_long_lines() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.log");
        let rotation = Rotation {
            max_file_bytes: 10,
            rotated_files: 5,
        };
        let mut f = RotatingFile::open(&path, rotation).unwrap();
        f.write_stream(b"aaaa\nbbbb\ncccc\n0123456789012345")
            .unwrap();
        let read = |n: usize| {
            let p = if n == 0 {
                path.clone()
            } else {
                rotated_path(&path, n)
            };
            fs::read_to_string(p).unwrap()
        };
        assert_eq!(read(3), "aaaa\nbbbb\n");
        assert_eq!(read(2), "cccc\n");
        assert_eq!(read(1), "0123456789");
        assert_eq!(read(0), "012345");
    }

    #[tokio::test]
    async fn a_child_output_pumped_into_a_rotating_file_stays_bounded() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("stdout.log");
        let mut child = tokio::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 2000 ]; do echo \"output line $i\"; i=$((i+1)); done",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        pump_to_file(
            out,
            path.clone(),
            Rotation {
                max_file_bytes: 4096,
                rotated_files: 2,
            },
        )
        .await;
        child.wait().await.unwrap();
        let total: u64 = [path.clone(), rotated_path(&path, 1), rotated_path(&path, 2)]
            .iter()
            .map(|p| size(p))
            .sum();
        assert!(total <= 3 * 4096, "{total}");
        assert!(!rotated_path(&path, 3).exists());
        assert!(fs::read_to_string(&path)
            .unwrap()
            .ends_with("output line 1999\n"));
    }
}
