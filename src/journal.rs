//! A crash-safe store: a JSON snapshot plus an append-only journal of operations.
//!
//! Every `append` is one line written and fsynced before it returns, so a completed change is
//! durable; a kill -9 mid-write leaves at most a torn last line, which is discarded (that
//! operation never happened). `compact` folds the journal into a new snapshot atomically
//! (write, fsync, rename; the previous snapshot is kept as a backup). Lines carry sequence
//! numbers so a crash between the rename and the journal truncation replays nothing twice.
//!
//! Callers serialize writers with their own lock (state lock, sandbox lock); `catch_up`
//! lets a long-lived handle see what other processes appended since it last looked.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A value that changes only through operations.
pub trait Journaled: Default + Serialize + DeserializeOwned {
    type Op: Serialize + DeserializeOwned;
    fn apply(&mut self, op: &Self::Op);
}

#[derive(Serialize, Deserialize)]
struct Snapshot<T> {
    seq: u64,
    value: T,
}

#[derive(Serialize, Deserialize)]
struct Line<O> {
    seq: u64,
    ops: Vec<O>,
}

pub struct Journal<T: Journaled> {
    snapshot_path: PathBuf,
    log_path: PathBuf,
    backup_path: PathBuf,
    value: T,
    seq: u64,
    /// Bytes of the journal already applied to `value`.
    offset: u64,
    /// Inode of the snapshot we loaded; a different one means another process compacted.
    snapshot_ino: Option<u64>,
    /// Bytes appended since the last compaction, to decide when to compact.
    pub log_bytes: u64,
}

impl<T: Journaled> Journal<T> {
    /// Opens (creating the directory if needed) `DIR/STEM.json` + `DIR/STEM.journal`.
    /// `repair` truncates a torn last line; pass it only while holding the writer lock.
    pub fn open(dir: &Path, stem: &str, repair: bool) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut j = Journal {
            snapshot_path: dir.join(format!("{stem}.json")),
            log_path: dir.join(format!("{stem}.journal")),
            backup_path: dir.join(format!("{stem}.backup.json")),
            value: T::default(),
            seq: 0,
            offset: 0,
            snapshot_ino: None,
            log_bytes: 0,
        };
        j.reload(repair)?;
        Ok(j)
    }

    /// Whether anything was ever written.
    pub fn exists(dir: &Path, stem: &str) -> bool {
        dir.join(format!("{stem}.json")).exists() || dir.join(format!("{stem}.journal")).exists()
    }

    pub fn value(&self) -> &T {
        &self.value
    }

    /// Number of operation batches ever applied (monotonic; the state serial).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn reload(&mut self, repair: bool) -> io::Result<()> {
        self.value = T::default();
        self.seq = 0;
        self.offset = 0;
        self.log_bytes = 0;
        self.snapshot_ino = None;
        match File::open(&self.snapshot_path) {
            Ok(mut f) => {
                self.snapshot_ino = Some(f.metadata()?.ino());
                // Whole-file read then parse: much faster than parsing from a reader.
                let mut bytes = Vec::new();
                f.read_to_end(&mut bytes)?;
                let snap: Snapshot<T> = serde_json::from_slice(&bytes)
                    .map_err(|e| corrupt(&self.snapshot_path, &e.to_string()))?;
                self.value = snap.value;
                self.seq = snap.seq;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        self.catch_up_log(repair)
    }

    /// Applies operations other processes appended since the last look.
    pub fn catch_up(&mut self, repair: bool) -> io::Result<()> {
        let ino = fs::metadata(&self.snapshot_path).ok().map(|m| m.ino());
        let log_len = fs::metadata(&self.log_path).map(|m| m.len()).unwrap_or(0);
        if ino != self.snapshot_ino || log_len < self.offset {
            return self.reload(repair);
        }
        self.catch_up_log(repair)
    }

    fn catch_up_log(&mut self, repair: bool) -> io::Result<()> {
        let mut f = match File::open(&self.log_path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut reader = BufReader::new(f);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let n = reader.read_until(b'\n', &mut buf)?;
            if n == 0 {
                break;
            }
            if buf.last() != Some(&b'\n') {
                // A torn write from a process killed mid-append: that batch never happened.
                if repair {
                    let f = OpenOptions::new().write(true).open(&self.log_path)?;
                    f.set_len(self.offset)?;
                    f.sync_all()?;
                }
                break;
            }
            let line: Line<T::Op> = serde_json::from_slice(&buf)
                .map_err(|e| corrupt(&self.log_path, &format!("at byte {}: {e}", self.offset)))?;
            if line.seq > self.seq {
                for op in &line.ops {
                    self.value.apply(op);
                }
                self.seq = line.seq;
            }
            self.offset += n as u64;
            self.log_bytes += n as u64;
        }
        Ok(())
    }

    /// Durably records `ops` as one atomic batch, then applies them in memory.
    pub fn append(&mut self, ops: Vec<T::Op>) -> io::Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let line = Line {
            seq: self.seq + 1,
            ops,
        };
        let mut bytes = serde_json::to_vec(&line).map_err(io::Error::other)?;
        bytes.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        f.write_all(&bytes)?;
        f.sync_data()?;
        for op in &line.ops {
            self.value.apply(op);
        }
        self.seq = line.seq;
        self.offset += bytes.len() as u64;
        self.log_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Replaces the whole value and its sequence number (a state migrated from another
    /// backend keeps its serial), durably: written as a fresh snapshot.
    pub fn replace(&mut self, value: T, seq: u64) -> io::Result<()> {
        // Lines of the replaced value must never be replayed onto the new one.
        if self.log_path.exists() {
            OpenOptions::new()
                .write(true)
                .open(&self.log_path)?
                .set_len(0)?;
        }
        self.value = value;
        self.seq = seq;
        self.compact()
    }

    /// Folds the journal into a fresh snapshot. Safe to be killed at any point.
    pub fn compact(&mut self) -> io::Result<()> {
        let dir = self.snapshot_path.parent().unwrap_or(Path::new("."));
        let tmp = self.snapshot_path.with_extension("json.tmp");
        {
            let mut w = io::BufWriter::new(File::create(&tmp)?);
            serde_json::to_writer(
                &mut w,
                &Snapshot {
                    seq: self.seq,
                    value: &self.value,
                },
            )
            .map_err(io::Error::other)?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
        }
        if self.snapshot_path.exists() {
            let backup_tmp = self.backup_path.with_extension("json.tmp");
            let _ = fs::remove_file(&backup_tmp);
            fs::hard_link(&self.snapshot_path, &backup_tmp)?;
            fs::rename(&backup_tmp, &self.backup_path)?;
        }
        fs::rename(&tmp, &self.snapshot_path)?;
        File::open(dir)?.sync_all()?;
        if self.log_path.exists() {
            let f = OpenOptions::new().write(true).open(&self.log_path)?;
            f.set_len(0)?;
            f.sync_all()?;
        }
        self.offset = 0;
        self.log_bytes = 0;
        self.snapshot_ino = Some(fs::metadata(&self.snapshot_path)?.ino());
        Ok(())
    }
}

fn corrupt(path: &Path, detail: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("`{}` is corrupt ({detail})", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default, Serialize, Deserialize)]
    struct Kv(BTreeMap<String, u32>);

    impl Journaled for Kv {
        type Op = (String, u32);
        fn apply(&mut self, op: &Self::Op) {
            self.0.insert(op.0.clone(), op.1);
        }
    }

    #[test]
    fn torn_last_line_is_discarded_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let mut j: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        j.append(vec![("a".into(), 1)]).unwrap();
        let log = dir.path().join("kv.journal");
        let mut f = OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(b"{\"seq\":2,\"ops\":[[\"b\",").unwrap();
        let j: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        assert_eq!(j.value().0.len(), 1);
        assert_eq!(j.seq(), 1);
        let mut j2: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        j2.append(vec![("c".into(), 3)]).unwrap();
        let j3: Journal<Kv> = Journal::open(dir.path(), "kv", false).unwrap();
        assert_eq!(j3.value().0.keys().collect::<Vec<_>>(), vec!["a", "c"]);
    }

    #[test]
    fn crash_between_snapshot_rename_and_truncate_replays_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut j: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        j.append(vec![("a".into(), 1)]).unwrap();
        j.append(vec![("a".into(), 2)]).unwrap();
        let log = dir.path().join("kv.journal");
        let saved = fs::read(&log).unwrap();
        j.compact().unwrap();
        j.append(vec![("b".into(), 9)]).unwrap();
        // Simulate the crash: the old journal lines are still there after the new snapshot.
        let mut all = saved.clone();
        all.extend(fs::read(&log).unwrap());
        fs::write(&log, all).unwrap();
        let j: Journal<Kv> = Journal::open(dir.path(), "kv", false).unwrap();
        assert_eq!(j.value().0.get("a"), Some(&2));
        assert_eq!(j.value().0.get("b"), Some(&9));
        assert_eq!(j.seq(), 3);
    }

    #[test]
    fn catch_up_sees_other_writers_and_compactions() {
        let dir = tempfile::tempdir().unwrap();
        let mut a: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        let mut b: Journal<Kv> = Journal::open(dir.path(), "kv", true).unwrap();
        a.append(vec![("x".into(), 1)]).unwrap();
        b.catch_up(true).unwrap();
        assert_eq!(b.value().0.get("x"), Some(&1));
        a.compact().unwrap();
        a.append(vec![("y".into(), 2)]).unwrap();
        b.catch_up(true).unwrap();
        assert_eq!(b.value().0.len(), 2);
        assert_eq!(b.seq(), 2);
    }
}
