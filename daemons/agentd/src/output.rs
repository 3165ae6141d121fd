//! An agent's captured output: a bounded, rotated log and a tail reader.
//!
//! stdout and stderr share one pipe (so their lines keep their order) and
//! land in `logs/output.log`. When the next write would take the file past
//! [`LogConfig::max_file_bytes`], it becomes `output.log.1`, the older ones
//! shift up and the oldest beyond [`LogConfig::files`] is deleted, so an
//! agent never holds more than `files × max_file_bytes` of log. Rotation
//! happens at a line end when the line fits, so lines are not split across
//! files unless a single line is longer than a whole file.
//!
//! Log files are 0600: agents print whatever they like, secrets included.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The current log file's name; older files add `.1`, `.2`, …
pub const LOG_FILE: &str = "output.log";
/// Most lines [`read_tail`] returns.
pub const MAX_TAIL_LINES: usize = 10_000;
/// Most bytes [`read_tail`] reads from one file (from its end).
const MAX_TAIL_READ: u64 = 4 * 1024 * 1024;

/// Size and number of log files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogConfig {
    /// Largest size of one file (1 MiB).
    pub max_file_bytes: u64,
    /// Files kept, the current one included (3: `output.log`,
    /// `output.log.1`, `output.log.2`).
    pub files: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            max_file_bytes: 1024 * 1024,
            files: 3,
        }
    }
}

impl LogConfig {
    /// At least one file of at least 1 KiB: smaller would rotate on every line.
    fn normalized(self) -> Self {
        Self {
            max_file_bytes: self.max_file_bytes.max(1024),
            files: self.files.max(1),
        }
    }
}

/// The writer side: appends and rotates. Not shared between processes; the
/// supervisor holds one per agent behind a mutex.
#[derive(Debug)]
pub struct RotatingLog {
    dir: PathBuf,
    config: LogConfig,
    file: File,
    size: u64,
}

impl RotatingLog {
    /// Opens (or creates) `dir/output.log` for appending.
    pub fn open(dir: &Path, config: LogConfig) -> io::Result<Self> {
        let config = config.normalized();
        let file = open_append(&dir.join(LOG_FILE))?;
        let size = file.metadata()?.len();
        Ok(Self {
            dir: dir.to_owned(),
            config,
            file,
            size,
        })
    }

    /// Appends `bytes`, rotating as needed.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let max = self.config.max_file_bytes;
        while !bytes.is_empty() {
            let room = usize::try_from(max.saturating_sub(self.size)).unwrap_or(usize::MAX);
            if bytes.len() <= room {
                self.append(bytes)?;
                return Ok(());
            }
            // Fill the file up to its last whole line that fits; if not even
            // one line fits, an empty file takes a piece of the long line and
            // a non-empty one is rotated first.
            let cut = match bytes[..room].iter().rposition(|&b| b == b'\n') {
                Some(newline) => newline + 1,
                None if self.size == 0 => room,
                None => 0,
            };
            self.append(&bytes[..cut])?;
            bytes = &bytes[cut..];
            self.rotate()?;
        }
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        let files = self.config.files;
        if files > 1 {
            // Shift output.log.(n-1) → .n, from the oldest down, so no
            // rename overwrites a file that has not moved yet.
            let oldest = rotated_path(&self.dir, files - 1);
            match fs::remove_file(&oldest) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            for index in (1..files - 1).rev() {
                rename_if_exists(
                    &rotated_path(&self.dir, index),
                    &rotated_path(&self.dir, index + 1),
                )?;
            }
            rename_if_exists(&self.dir.join(LOG_FILE), &rotated_path(&self.dir, 1))?;
            self.file = open_append(&self.dir.join(LOG_FILE))?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn rotated_path(dir: &Path, index: usize) -> PathBuf {
    dir.join(format!("{LOG_FILE}.{index}"))
}

fn rename_if_exists(from: &Path, to: &Path) -> io::Result<()> {
    match fs::rename(from, to) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
}

/// The last `lines` lines (at most [`MAX_TAIL_LINES`]) across the current
/// and rotated files in `dir`, oldest first, invalid UTF-8 replaced. A log
/// rotating at the same moment may make a line appear twice or not at all.
pub fn read_tail(dir: &Path, files: usize, lines: usize) -> io::Result<Vec<String>> {
    let lines = lines.min(MAX_TAIL_LINES);
    if lines == 0 {
        return Ok(Vec::new());
    }
    // Newest first: output.log, output.log.1, …; stop once enough lines.
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    let mut newlines = 0;
    for index in 0..files.max(1) {
        let path = if index == 0 {
            dir.join(LOG_FILE)
        } else {
            rotated_path(dir, index)
        };
        let bytes = match read_end(&path, MAX_TAIL_READ) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        };
        newlines += bytes.iter().filter(|&&b| b == b'\n').count();
        chunks.push(bytes);
        // One extra line: the oldest chunk's first line may be partial.
        if newlines > lines {
            break;
        }
    }
    let all: Vec<u8> = chunks.into_iter().rev().flatten().collect();
    let text = String::from_utf8_lossy(&all);
    let mut found: Vec<String> = text.lines().rev().take(lines).map(str::to_owned).collect();
    found.reverse();
    Ok(found)
}

/// Up to `limit` bytes from the end of a file.
fn read_end(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(limit)))?;
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(dir: &Path) -> Vec<(String, u64)> {
        let mut found: Vec<(String, u64)> = fs::read_dir(dir)
            .expect("read dir")
            .map(|entry| {
                let entry = entry.expect("entry");
                let len = entry.metadata().expect("metadata").len();
                (entry.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        found.sort();
        found
    }

    #[test]
    fn rotates_at_line_ends_and_stays_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            max_file_bytes: 1024,
            files: 3,
        };
        let mut log = RotatingLog::open(dir.path(), config).expect("open");
        for i in 0..1000 {
            log.write(format!("line {i:04} of output\n").as_bytes())
                .expect("write");
        }
        let found = sizes(dir.path());
        let names: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["output.log", "output.log.1", "output.log.2"]);
        for (name, len) in &found {
            assert!(*len <= 1024, "{name} is {len} bytes");
        }
        // Every file starts at a line start.
        for name in &names {
            let text = fs::read_to_string(dir.path().join(name)).expect("read");
            assert!(text.starts_with("line "), "{name}: {text:.20}");
            assert!(text.ends_with('\n'));
        }
        let tail = read_tail(dir.path(), 3, 3).expect("tail");
        assert_eq!(
            tail,
            [
                "line 0997 of output",
                "line 0998 of output",
                "line 0999 of output"
            ]
        );
        // Asking for more than the files hold returns what is there, in order.
        let all = read_tail(dir.path(), 3, 100_000).expect("tail");
        assert!(all.len() < 1000 && all.len() > 100);
        assert_eq!(all.last().map(String::as_str), Some("line 0999 of output"));
        let numbers: Vec<u32> = all
            .iter()
            .map(|l| l[5..9].parse().expect("number"))
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1));
    }

    #[test]
    fn long_lines_and_single_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            max_file_bytes: 1024,
            files: 1,
        };
        let mut log = RotatingLog::open(dir.path(), config).expect("open");
        log.write(&vec![b'x'; 5000]).expect("write");
        log.write(b"\nend\n").expect("write");
        let found = sizes(dir.path());
        assert_eq!(found.len(), 1);
        assert!(found[0].1 <= 1024);
        assert_eq!(read_tail(dir.path(), 1, 1).expect("tail"), ["end"]);
    }

    #[test]
    fn reopening_continues_the_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = LogConfig {
            max_file_bytes: 1024,
            files: 2,
        };
        let mut log = RotatingLog::open(dir.path(), config).expect("open");
        log.write(&[b'a'; 1000]).expect("write");
        drop(log);
        let mut log = RotatingLog::open(dir.path(), config).expect("reopen");
        log.write(&[b'b'; 100]).expect("write");
        let found = sizes(dir.path());
        assert_eq!(
            found,
            [("output.log".into(), 100), ("output.log.1".into(), 1000)]
        );
        assert!(read_tail(dir.path(), 2, 0).expect("tail").is_empty());
        let empty = tempfile::tempdir().expect("tempdir");
        assert!(read_tail(empty.path(), 3, 10).expect("tail").is_empty());
    }
}
