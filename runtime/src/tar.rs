//! Just enough tar: writing a build context (ustar with PAX long names) and reading
//! one file (`manifest.json`) out of a `docker save` archive.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

const BLOCK: usize = 512;

fn octal(field: &mut [u8], value: u64) -> io::Result<()> {
    // `len - 1` octal digits and a NUL.
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    if s.len() > digits {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "value too large for a tar header",
        ));
    }
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
    Ok(())
}

fn header(
    name: &[u8],
    mode: u32,
    size: u64,
    mtime: u64,
    kind: u8,
    link: &[u8],
) -> io::Result<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], u64::from(mode & 0o7777))?;
    octal(&mut h[108..116], 0)?;
    octal(&mut h[116..124], 0)?;
    octal(&mut h[124..136], size)?;
    octal(&mut h[136..148], mtime)?;
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field filled with spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    Ok(h)
}

/// A PAX record `"<len> key=value\n"`, where len counts the whole record.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn pad<W: Write>(w: &mut W, size: u64) -> io::Result<()> {
    let rem = (size % BLOCK as u64) as usize;
    if rem != 0 {
        w.write_all(&[0u8; BLOCK][..BLOCK - rem])?;
    }
    Ok(())
}

struct Writer<W: Write> {
    w: W,
}

impl<W: Write> Writer<W> {
    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        size: u64,
        mtime: u64,
        kind: u8,
        link: &str,
    ) -> io::Result<()> {
        let (nb, lb) = (name.as_bytes(), link.as_bytes());
        if nb.len() > 100 || lb.len() > 100 {
            let mut pax = Vec::new();
            if nb.len() > 100 {
                pax.extend(pax_record("path", nb));
            }
            if lb.len() > 100 {
                pax.extend(pax_record("linkpath", lb));
            }
            let h = header(b"././@PaxHeader", 0o644, pax.len() as u64, mtime, b'x', b"")?;
            self.w.write_all(&h)?;
            self.w.write_all(&pax)?;
            pad(&mut self.w, pax.len() as u64)?;
        }
        let short = |b: &[u8]| b[..b.len().min(100)].to_vec();
        let h = header(&short(nb), mode, size, mtime, kind, &short(lb))?;
        self.w.write_all(&h)
    }

    fn dir(&mut self, root: &Path, rel: &str) -> io::Result<()> {
        let mut entries: Vec<_> = fs::read_dir(root.join(rel))?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let Some(fname) = e.file_name().to_str().map(str::to_string) else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {:?} is not UTF-8", e.file_name()),
                ));
            };
            let name = if rel.is_empty() {
                fname
            } else {
                format!("{rel}/{fname}")
            };
            let meta = fs::symlink_metadata(e.path())?;
            let mtime = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            let ft = meta.file_type();
            if ft.is_symlink() {
                let target = fs::read_link(e.path())?;
                self.entry(&name, 0o777, 0, mtime, b'2', &target.to_string_lossy())?;
            } else if ft.is_dir() {
                self.entry(&format!("{name}/"), mode, 0, mtime, b'5', "")?;
                self.dir(root, &name)?;
            } else if ft.is_file() {
                let size = meta.len();
                self.entry(&name, mode, size, mtime, b'0', "")?;
                let copied = io::copy(&mut File::open(e.path())?.take(size), &mut self.w)?;
                if copied != size {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("{name} changed while being archived"),
                    ));
                }
                pad(&mut self.w, size)?;
            }
            // Sockets, fifos and devices are skipped.
        }
        Ok(())
    }
}

/// Writes the contents of `dir` (paths relative to it) as a tar archive to `out`.
pub(crate) fn write_dir(dir: &Path, out: &Path) -> io::Result<()> {
    let mut w = Writer {
        w: BufWriter::new(File::create(out)?),
    };
    w.dir(dir, "")?;
    w.w.write_all(&[0u8; 2 * BLOCK])?;
    w.w.flush()
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let s = s.trim();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn field_str(field: &[u8]) -> String {
    String::from_utf8_lossy(&field[..field.iter().position(|&b| b == 0).unwrap_or(field.len())])
        .into_owned()
}

/// Reads the regular file `wanted` (at most `max` bytes) out of an uncompressed tar.
pub(crate) fn read_file(archive: &Path, wanted: &str, max: u64) -> io::Result<Option<Vec<u8>>> {
    let mut f = io::BufReader::new(File::open(archive)?);
    let mut h = [0u8; BLOCK];
    loop {
        if f.read_exact(&mut h).is_err() || h.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        let size = parse_octal(&h[124..136])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not a tar archive"))?;
        let mut name = field_str(&h[..100]);
        if &h[257..262] == b"ustar" {
            let prefix = field_str(&h[345..500]);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        let name = name.trim_start_matches("./");
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if name == wanted && (h[156] == b'0' || h[156] == 0) && size <= max {
            let mut data = vec![0u8; size as usize];
            f.read_exact(&mut data)?;
            return Ok(Some(data));
        }
        io::copy(&mut (&mut f).take(padded), &mut io::sink())?;
        if name == wanted {
            return Ok(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_length_counts_itself() {
        let r = pax_record("path", b"abc");
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
        let long = "x".repeat(95);
        let r = pax_record("path", long.as_bytes());
        let s = String::from_utf8(r.clone()).unwrap();
        let len: usize = s.split(' ').next().unwrap().parse().unwrap();
        assert_eq!(len, r.len());
    }

    #[test]
    fn round_trips_through_system_tar() {
        let d = tempfile::tempdir().unwrap();
        let ctx = d.path().join("ctx");
        let deep = ctx.join("a".repeat(60)).join("b".repeat(60));
        fs::create_dir_all(&deep).unwrap();
        fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
        fs::write(deep.join("file.txt"), "hello").unwrap();
        let exe = ctx.join("run.sh");
        fs::write(&exe, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink("Dockerfile", ctx.join("link")).unwrap();
        let out = d.path().join("ctx.tar");
        write_dir(&ctx, &out).unwrap();

        assert_eq!(
            read_file(&out, "Dockerfile", 1 << 20).unwrap().unwrap(),
            b"FROM scratch\n"
        );
        assert!(read_file(&out, "missing", 1 << 20).unwrap().is_none());

        let x = d.path().join("x");
        fs::create_dir(&x).unwrap();
        let st = std::process::Command::new("tar")
            .arg("-xf")
            .arg(&out)
            .arg("-C")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        let long = x.join("a".repeat(60)).join("b".repeat(60)).join("file.txt");
        assert_eq!(fs::read_to_string(long).unwrap(), "hello");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &fs::metadata(x.join("run.sh")).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(
            fs::read_link(x.join("link")).unwrap(),
            Path::new("Dockerfile")
        );
    }
}
