//! The agent's disk buffer: every collection is appended as one batch file before
//! anything is sent, and deleted only once the server (or Kafka) has acknowledged it, so
//! neither a server outage nor an agent restart loses data.
//!
//! Format: a directory of files `<sequence, 20 digits>.lp`, each the line protocol of
//! one collection. A batch is written to `<name>.tmp`, fsynced and renamed (then the
//! directory is fsynced), so a crash leaves either the whole batch or none. Past
//! `max_bytes` the oldest batches are deleted and counted as dropped. A `LOCK` file,
//! locked while the buffer is open, keeps a second agent out of the same folder.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// One buffered batch.
#[derive(Debug, Clone)]
pub struct Batch {
    pub seq: u64,
    pub path: PathBuf,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    /// Held (locked) while open.
    _lock: fs::File,
    max_bytes: u64,
    batches: VecDeque<Batch>,
    total_bytes: u64,
    next_seq: u64,
    pub dropped_batches: u64,
    pub dropped_bytes: u64,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, picking up batches a previous run left.
    pub fn open(dir: &Path, max_bytes: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("LOCK"))?;
        if let Err(e) = lock.try_lock() {
            return Err(std::io::Error::other(match e {
                fs::TryLockError::WouldBlock => {
                    "the buffer folder is in use by another agent".to_string()
                }
                fs::TryLockError::Error(e) => format!("cannot lock the buffer folder: {e}"),
            }));
        }
        let mut batches = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") {
                // A batch whose write did not finish: never acknowledged to anyone.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(seq) = name.strip_suffix(".lp").and_then(|s| s.parse::<u64>().ok()) else {
                continue;
            };
            batches.push(Batch {
                seq,
                path: entry.path(),
                bytes: entry.metadata()?.len(),
            });
        }
        batches.sort_by_key(|b| b.seq);
        let next_seq = batches.last().map_or(0, |b| b.seq + 1);
        let total_bytes = batches.iter().map(|b| b.bytes).sum();
        Ok(Self {
            dir: dir.to_path_buf(),
            _lock: lock,
            max_bytes,
            batches: batches.into(),
            total_bytes,
            next_seq,
            dropped_batches: 0,
            dropped_bytes: 0,
        })
    }

    /// Durably appends one batch, then drops the oldest ones while over the limit (the
    /// newest batch is always kept).
    pub fn append(&mut self, data: &[u8]) -> std::io::Result<()> {
        // The number is used up even if this write fails: a later batch never reuses
        // the name of one that may be on disk.
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(format!("{seq:020}.lp"));
        let tmp = self.dir.join(format!("{seq:020}.lp.tmp"));
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|()| fs::rename(&tmp, &path)) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        #[cfg(unix)]
        if let Err(e) = fs::File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::warn!(error = %e, "could not fsync the agent buffer folder");
        }
        self.total_bytes += data.len() as u64;
        self.batches.push_back(Batch {
            seq,
            path,
            bytes: data.len() as u64,
        });
        while self.total_bytes > self.max_bytes && self.batches.len() > 1 {
            if let Some(old) = self.batches.pop_front() {
                self.total_bytes -= old.bytes;
                self.dropped_batches += 1;
                self.dropped_bytes += old.bytes;
                let _ = fs::remove_file(&old.path);
                tracing::warn!(
                    bytes = old.bytes,
                    limit = self.max_bytes,
                    "agent buffer full: dropped its oldest batch"
                );
            }
        }
        Ok(())
    }

    /// The oldest batches, as many as fit in `max_bytes` (at least one), and their
    /// concatenated content. A batch file that vanished is forgotten; one that cannot be
    /// read is set aside as `<name>.bad` (logged), so it never blocks the others.
    pub fn peek(&mut self, max_bytes: u64) -> (Vec<Batch>, Vec<u8>) {
        let mut taken = Vec::new();
        let mut data = Vec::new();
        let mut broken = Vec::new();
        for b in &self.batches {
            if !taken.is_empty() && data.len() as u64 + b.bytes > max_bytes {
                break;
            }
            match fs::read(&b.path) {
                Ok(bytes) => {
                    data.extend_from_slice(&bytes);
                    taken.push(b.clone());
                }
                Err(e) => {
                    tracing::error!(file = %b.path.display(), error = %e,
                        "unreadable agent batch set aside");
                    if e.kind() != std::io::ErrorKind::NotFound {
                        let _ = fs::rename(&b.path, b.path.with_extension("lp.bad"));
                    }
                    broken.push(b.seq);
                }
            }
        }
        if !broken.is_empty() {
            self.batches.retain(|b| {
                let keep = !broken.contains(&b.seq);
                if !keep {
                    self.total_bytes -= b.bytes;
                    self.dropped_batches += 1;
                    self.dropped_bytes += b.bytes;
                }
                keep
            });
        }
        (taken, data)
    }

    /// Forgets (and deletes) batches that were delivered.
    pub fn remove(&mut self, delivered: &[Batch]) {
        for d in delivered {
            if let Some(pos) = self.batches.iter().position(|b| b.seq == d.seq) {
                if let Some(b) = self.batches.remove(pos) {
                    self.total_bytes -= b.bytes;
                }
                if let Err(e) = fs::remove_file(&d.path) {
                    tracing::warn!(file = %d.path.display(), error = %e, "could not delete a sent batch");
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.batches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    pub fn bytes(&self) -> u64 {
        self.total_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_survive_reopen_in_order_and_the_oldest_go_first_when_full() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = DiskBuffer::open(dir.path(), 25).expect("open");
        b.append(b"a 1\n").expect("append");
        b.append(b"bb 2\n").expect("append");
        std::fs::write(dir.path().join("00000000000000000009.lp.tmp"), "half").expect("tmp");
        drop(b);
        let mut b = DiskBuffer::open(dir.path(), 25).expect("reopen");
        assert_eq!(b.len(), 2, "the unfinished .tmp batch is discarded");
        let (taken, data) = b.peek(1 << 20);
        assert_eq!(data, b"a 1\nbb 2\n");
        assert_eq!(taken.len(), 2);
        // A small limit still returns one batch.
        assert_eq!(b.peek(1).0.len(), 1);
        // A second agent cannot open the same folder.
        let err = DiskBuffer::open(dir.path(), 25).expect_err("locked");
        assert!(err.to_string().contains("in use by another agent"), "{err}");
        b.append(b"cccccccccc 3\n").expect("append"); // 4 + 5 + 13 = 22 <= 25
        assert_eq!((b.len(), b.dropped_batches), (3, 0));
        b.append(b"dddd 4\n").expect("append"); // 29 > 25: `a 1` goes
        assert_eq!((b.len(), b.dropped_batches, b.dropped_bytes), (3, 1, 4));
        let (taken, _) = b.peek(5);
        assert_eq!(taken[0].seq, 1);
        b.remove(&taken);
        assert_eq!(b.len(), 2);
        assert_eq!(b.bytes(), 13 + 7);
        let files = std::fs::read_dir(dir.path())
            .expect("dir")
            .filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "LOCK"))
            .count();
        assert_eq!(files, 2);
        // Sequence numbers continue after a reopen.
        drop(b);
        let mut b = DiskBuffer::open(dir.path(), 1 << 20).expect("reopen");
        b.append(b"e 5\n").expect("append");
        let (taken, data) = b.peek(1 << 20);
        assert_eq!(taken.iter().map(|t| t.seq).collect::<Vec<_>>(), [2, 3, 4]);
        assert!(data.ends_with(b"e 5\n"));
        // A vanished batch file is forgotten, not retried forever.
        std::fs::remove_file(&taken[0].path).expect("remove");
        let (taken, _) = b.peek(1 << 20);
        assert_eq!(taken.iter().map(|t| t.seq).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(b.len(), 2);
    }
}
