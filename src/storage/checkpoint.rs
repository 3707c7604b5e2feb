//! Small files that record progress: Kafka's offset checkpoints
//! (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`), the
//! leader-epoch checkpoint, and the one helper that replaces any of them
//! atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

/// Replaces `path` with `contents` so that a crash leaves either the old or
/// the new file, never a mix: write a temporary file, `fsync` it, rename it
/// over the old one, `fsync` the directory. With `durable` false the two
/// `fsync`s are skipped (for files that are rebuilt if lost).
pub(crate) fn write_atomically(path: &Path, contents: &[u8], durable: bool) -> io::Result<()> {
    let tmp = tmp_path(path);
    {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(contents)?;
        if durable {
            file.sync_all()?;
        }
    }
    fs::rename(&tmp, path)?;
    if durable && let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// `fsync`s a directory so that file creations, renames and deletions in it
/// are durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Kafka's checkpoint format version.
const CHECKPOINT_VERSION: u32 = 0;

/// Parses Kafka's checkpoint format: a version line (`0`), a count line,
/// then one entry per line whose fields are separated by single spaces.
fn parse_checkpoint(path: &Path, text: &str, fields: usize) -> Result<Vec<Vec<String>>> {
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let mut lines = text.lines();
    let version: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing version line"))?;
    if version != CHECKPOINT_VERSION {
        return Err(corrupt("unknown checkpoint version"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| corrupt("missing entry count"))?;
    let entries: Vec<Vec<String>> = lines
        .filter(|line| !line.trim().is_empty())
        .map(|line| line.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    if entries.len() != count || entries.iter().any(|e| e.len() != fields) {
        return Err(corrupt("entry count or shape does not match"));
    }
    Ok(entries)
}

fn render_checkpoint<'a>(entries: impl ExactSizeIterator<Item = String> + 'a) -> String {
    let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for entry in entries {
        text.push_str(&entry);
        text.push('\n');
    }
    text
}

/// `topic partition offset` lines, as in Kafka's
/// `recovery-point-offset-checkpoint` and `log-start-offset-checkpoint`.
pub(crate) fn read_offset_checkpoint(path: &Path) -> Result<Vec<(String, u32, i64)>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).at(path),
    };
    let mut out = Vec::new();
    for entry in parse_checkpoint(path, &text, 3)? {
        let partition = entry[1].parse().ok();
        let offset = entry[2].parse().ok();
        match (partition, offset) {
            (Some(partition), Some(offset)) => out.push((entry[0].clone(), partition, offset)),
            _ => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    reason: "bad partition or offset".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Writes an offset checkpoint durably.
pub(crate) fn write_offset_checkpoint(path: &Path, entries: &[(String, u32, i64)]) -> Result<()> {
    let text = render_checkpoint(entries.iter().map(|(t, p, o)| format!("{t} {p} {o}")));
    write_atomically(path, text.as_bytes(), true).at(path)
}

/// `epoch start_offset` lines, as in Kafka's `leader-epoch-checkpoint`.
pub(crate) fn read_epoch_checkpoint(path: &Path) -> Result<Vec<(i32, i64)>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).at(path),
    };
    let mut out = Vec::new();
    for entry in parse_checkpoint(path, &text, 2)? {
        match (entry[0].parse().ok(), entry[1].parse().ok()) {
            (Some(epoch), Some(offset)) => out.push((epoch, offset)),
            _ => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    reason: "bad epoch or offset".into(),
                });
            }
        }
    }
    Ok(out)
}

/// Writes a leader-epoch checkpoint durably.
pub(crate) fn write_epoch_checkpoint(path: &Path, entries: &[(i32, i64)]) -> Result<()> {
    let text = render_checkpoint(entries.iter().map(|(e, o)| format!("{e} {o}")));
    write_atomically(path, text.as_bytes(), true).at(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trips_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("recovery-point-offset-checkpoint");
        let entries = vec![("orders".to_owned(), 0, 42), ("a.b-c".to_owned(), 7, 0)];
        write_offset_checkpoint(&path, &entries).expect("write");
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            "0\n2\norders 0 42\na.b-c 7 0\n"
        );
        assert_eq!(read_offset_checkpoint(&path).expect("parse"), entries);
    }

    #[test]
    fn garbled_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cp");
        fs::write(&path, "0\n3\nt 0 1\n").expect("write");
        assert!(matches!(
            read_offset_checkpoint(&path),
            Err(Error::Corrupt { .. })
        ));
        assert!(
            read_offset_checkpoint(&dir.path().join("missing"))
                .expect("missing is empty")
                .is_empty()
        );
    }
}
