//! An append-only JSON-lines file that rotates by size: once the next line
//! would take `x.jsonl` past its limit, `x.jsonl` becomes `x.jsonl.1` (the
//! older `x.jsonl.N` shift to `N + 1`, and the one past `keep` is deleted)
//! and a new `x.jsonl` is started. So the files of one log hold at most
//! about `(keep + 1) × limit` bytes. Lines are never split across files.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// When a log rotates and how many old files it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Size past which the file is rotated, in bytes; 0 never rotates.
    pub max_bytes: u64,
    /// Rotated files kept (`x.1` … `x.keep`); 0 keeps none.
    pub keep: usize,
}

/// One log file, open for appending.
pub struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    file: BufWriter<File>,
    /// Bytes in the current file, buffered ones included.
    size: u64,
}

impl LogFile {
    /// Opens `path` for appending (creating it), counting what it holds.
    pub fn open(path: PathBuf, rotation: Rotation) -> io::Result<LogFile> {
        let file = open_append(&path)?;
        let size = file.metadata()?.len();
        Ok(LogFile { path, rotation, file: BufWriter::new(file), size })
    }

    /// Appends `line` and a newline, rotating first if it would not fit.
    pub fn write_line(&mut self, line: &str) -> io::Result<()> {
        let len = line.len() as u64 + 1;
        if self.rotation.max_bytes > 0 && self.size > 0 && self.size + len > self.rotation.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(line.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.size += len;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let numbered = |n: usize| numbered(&self.path, n);
        if self.rotation.keep == 0 {
            remove_if_present(&self.path)?;
        } else {
            remove_if_present(&numbered(self.rotation.keep))?;
            for n in (1..self.rotation.keep).rev() {
                rename_if_present(&numbered(n), &numbered(n + 1))?;
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        // The old handle still points at the renamed (or deleted) file.
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// `x.jsonl` → `x.jsonl.N`.
fn numbered(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_present(from: &Path, to: &Path) -> io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spindle-logfile-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn read(path: &Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }

    #[test]
    fn rotates_by_size_and_keeps_a_bounded_number_of_files() {
        let dir = dir("rotate");
        let path = dir.join("x.jsonl");
        let mut log = LogFile::open(path.clone(), Rotation { max_bytes: 10, keep: 2 }).unwrap();
        // Four-byte lines ("nnn\n"): two fit in ten bytes, a third does not.
        for n in 0..9 {
            log.write_line(&format!("{n}{n}{n}")).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(read(&path).as_deref(), Some("888\n"));
        assert_eq!(read(&numbered(&path, 1)).as_deref(), Some("666\n777\n"));
        assert_eq!(read(&numbered(&path, 2)).as_deref(), Some("444\n555\n"));
        assert_eq!(read(&numbered(&path, 3)), None, "only `keep` old files are kept");
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["x.jsonl", "x.jsonl.1", "x.jsonl.2"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_what_the_file_already_holds_and_never_splits_a_line() {
        let dir = dir("reopen");
        let path = dir.join("x.jsonl");
        std::fs::write(&path, "old line\n").unwrap();
        let mut log = LogFile::open(path.clone(), Rotation { max_bytes: 12, keep: 1 }).unwrap();
        log.write_line("a line longer than the limit").unwrap();
        log.write_line("b").unwrap();
        log.flush().unwrap();
        assert_eq!(read(&numbered(&path, 1)).as_deref(), Some("a line longer than the limit\n"));
        assert_eq!(read(&path).as_deref(), Some("b\n"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keep_zero_truncates_and_max_zero_never_rotates() {
        let dir = dir("limits");
        let path = dir.join("x.jsonl");
        let mut log = LogFile::open(path.clone(), Rotation { max_bytes: 4, keep: 0 }).unwrap();
        for line in ["aaa", "bbb"] {
            log.write_line(line).unwrap();
        }
        log.flush().unwrap();
        assert_eq!(read(&path).as_deref(), Some("bbb\n"));
        assert_eq!(read(&numbered(&path, 1)), None);

        let path = dir.join("y.jsonl");
        let mut log = LogFile::open(path.clone(), Rotation { max_bytes: 0, keep: 3 }).unwrap();
        for _ in 0..100 {
            log.write_line("ccc").unwrap();
        }
        log.flush().unwrap();
        assert_eq!(read(&path).unwrap().len(), 400);
        assert_eq!(read(&numbered(&path, 1)), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
