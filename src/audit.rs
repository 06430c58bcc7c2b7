//! The audit log: an append-only, tamper-evident record of what was done (applies, destroys,
//! imports, state edits; later overrides, waiver uses and enforce actions).
//!
//! Each entry is one JSON line whose HMAC-SHA256 covers its content and the previous entry's
//! MAC, so editing, deleting, reordering or inserting an entry breaks the chain at that entry.
//! Removing entries from the end leaves a valid chain, so a signed checkpoint (count and head
//! MAC) is kept in a separate file. Each entry names its key, so keys can be rotated; keys come
//! from the environment or a key file, never from the log.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The keys an audit log is signed and verified with.
#[derive(Clone)]
pub struct Keys {
    /// The key new entries are signed with: (id, secret).
    current: (String, Vec<u8>),
    all: HashMap<String, Vec<u8>>,
}

impl Keys {
    /// `CAIRN_AUDIT_KEY=ID:SECRET`, or `CAIRN_AUDIT_KEY_FILE` naming a file of `ID SECRET`
    /// lines (the last is current; earlier ones verify older entries). `None`: no audit log.
    pub fn from_env() -> Result<Option<Keys>, String> {
        let mut pairs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(path) = std::env::var("CAIRN_AUDIT_KEY_FILE") {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read the audit key file `{path}`: {e}"))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
            {
                let (id, secret) = line
                    .trim()
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| format!("`{path}` line {}: expected `ID SECRET`", n + 1))?;
                pairs.push((id.to_string(), secret.trim().as_bytes().to_vec()));
            }
        }
        if let Ok(v) = std::env::var("CAIRN_AUDIT_KEY") {
            let (id, secret) = v
                .split_once(':')
                .ok_or("CAIRN_AUDIT_KEY must be `ID:SECRET`")?;
            pairs.push((id.to_string(), secret.as_bytes().to_vec()));
        }
        let Some(current) = pairs.last().cloned() else {
            return Ok(None);
        };
        if current.1.len() < 16 {
            return Err(format!(
                "audit key `{}` is too short: use at least 16 bytes of secret",
                current.0
            ));
        }
        Ok(Some(Keys {
            current,
            all: pairs.into_iter().collect(),
        }))
    }

    fn mac(&self, id: &str, data: &[u8]) -> Option<String> {
        let key = self.all.get(id)?;
        let mut m = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
        m.update(data);
        Some(
            m.finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// 1, 2, 3, ... in the order written.
    pub seq: u64,
    pub time: jiff::Timestamp,
    /// `user@host`.
    pub who: String,
    /// `apply`, `destroy`, `import`, `state rm`, ...
    pub action: String,
    pub stack: String,
    pub environment: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_digest: Option<String>,
    /// `ok`, or what went wrong.
    pub result: String,
    #[serde(default)]
    pub details: serde_json::Value,
    pub key_id: String,
    /// The previous entry's MAC (empty for the first).
    pub prev: String,
    pub mac: String,
}

impl Entry {
    /// The bytes the MAC covers: the entry with an empty `mac`.
    fn signed_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&Entry {
            mac: String::new(),
            ..self.clone()
        })
        .expect("entries serialize")
    }
}

/// What an action wrote, before it is numbered, chained and signed.
pub struct Record {
    pub action: String,
    pub stack: String,
    pub environment: String,
    pub plan_digest: Option<String>,
    pub result: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    count: u64,
    head: String,
    key_id: String,
    mac: String,
}

fn checkpoint_bytes(count: u64, head: &str) -> Vec<u8> {
    format!("cairn-audit-checkpoint:{count}:{head}").into_bytes()
}

pub struct AuditLog {
    path: PathBuf,
    checkpoint: PathBuf,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Intact {
        count: u64,
        head: String,
    },
    /// The first bad entry (1-based position in the file; 0 when the log as a whole is off)
    /// and what is wrong.
    Broken {
        entry: u64,
        reason: String,
    },
}

impl AuditLog {
    /// The log beside a state: `STATE_DIR/audit.log`, its checkpoint `STATE_DIR/audit.checkpoint`
    /// (or `CAIRN_AUDIT_CHECKPOINT`, to keep the checkpoint on other storage).
    pub fn at(state_dir: &Path) -> AuditLog {
        let checkpoint = std::env::var_os("CAIRN_AUDIT_CHECKPOINT")
            .map(PathBuf::from)
            .unwrap_or_else(|| state_dir.join("audit.checkpoint"));
        AuditLog {
            path: state_dir.join("audit.log"),
            checkpoint,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one entry, chained to the checkpoint's head, then moves the checkpoint.
    /// Callers hold the state lock, so appends never interleave.
    pub fn append(&self, keys: &Keys, r: Record) -> Result<Entry, String> {
        let (count, head) = match self.read_checkpoint()? {
            Some(c) => (c.count, c.head),
            None => (0, String::new()),
        };
        // SAFETY: getuid cannot fail and touches no memory.
        let uid = unsafe { libc::getuid() };
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| format!("uid {uid}"));
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        let mut entry = Entry {
            seq: count + 1,
            time: jiff::Timestamp::now(),
            who: format!("{user}@{host}"),
            action: r.action,
            stack: r.stack,
            environment: r.environment,
            plan_digest: r.plan_digest,
            result: r.result,
            details: r.details,
            key_id: keys.current.0.clone(),
            prev: head,
            mac: String::new(),
        };
        entry.mac = keys
            .mac(&entry.key_id, &entry.signed_bytes())
            .expect("the current key is known");
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let mut line = serde_json::to_vec(&entry).expect("entries serialize");
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| format!("audit log `{}`: {e}", self.path.display()))?;
        f.write_all(&line)
            .and_then(|_| f.sync_data())
            .map_err(|e| format!("audit log `{}`: {e}", self.path.display()))?;
        self.write_checkpoint(keys, entry.seq, &entry.mac)?;
        Ok(entry)
    }

    fn read_checkpoint(&self) -> Result<Option<Checkpoint>, String> {
        match std::fs::read(&self.checkpoint) {
            Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
                format!(
                    "audit checkpoint `{}` is unreadable: {e}",
                    self.checkpoint.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    fn write_checkpoint(&self, keys: &Keys, count: u64, head: &str) -> Result<(), String> {
        let c = Checkpoint {
            count,
            head: head.to_string(),
            key_id: keys.current.0.clone(),
            mac: keys
                .mac(&keys.current.0, &checkpoint_bytes(count, head))
                .expect("current key"),
        };
        if let Some(dir) = self.checkpoint.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        let tmp = self.checkpoint.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&c).expect("serializes"))
            .and_then(|_| std::fs::rename(&tmp, &self.checkpoint))
            .map_err(|e| e.to_string())
    }

    /// Every entry as written (unverified); lines that do not parse are skipped.
    pub fn entries(&self) -> Result<Vec<Entry>, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e.to_string()),
        };
        Ok(text
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect())
    }

    /// Checks the whole chain and the checkpoint; names the first bad entry.
    pub fn verify(&self, keys: &Keys) -> Result<Verdict, String> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.to_string()),
        };
        let checkpoint = self.read_checkpoint()?;
        if let Some(c) = &checkpoint {
            match keys.mac(&c.key_id, &checkpoint_bytes(c.count, &c.head)) {
                None => {
                    return Err(format!(
                        "the checkpoint was signed with key `{}`, which is not among the keys given",
                        c.key_id
                    ));
                }
                Some(m) if m != c.mac => {
                    return Err(format!(
                        "the checkpoint's signature does not match key `{}`: wrong key, or the checkpoint was edited",
                        c.key_id
                    ));
                }
                Some(_) => {}
            }
        }
        let mut prev = String::new();
        let mut count = 0u64;
        for (i, line) in text.lines().enumerate() {
            let n = i as u64 + 1;
            let broken = |reason: String| Ok(Verdict::Broken { entry: n, reason });
            let Ok(e) = serde_json::from_str::<Entry>(line) else {
                return broken("not a valid entry (edited or inserted)".into());
            };
            let Some(mac) = keys.mac(&e.key_id, &e.signed_bytes()) else {
                return broken(format!(
                    "signed with key `{}`, which is not among the keys given",
                    e.key_id
                ));
            };
            if mac != e.mac {
                return broken("its MAC does not match its content (edited, or inserted)".into());
            }
            if e.prev != prev {
                return broken("it does not follow the entry before it (an entry was deleted, inserted or moved)".into());
            }
            if e.seq != n {
                return broken(format!(
                    "sequence number {} at position {n} (entries were deleted or reordered)",
                    e.seq
                ));
            }
            prev = e.mac;
            count = n;
        }
        match checkpoint {
            Some(c) if c.count != count || c.head != prev => Ok(Verdict::Broken {
                entry: count + 1,
                reason: format!(
                    "the checkpoint records {} entries but the log ends after {count}: its tail was removed",
                    c.count
                ),
            }),
            None if count > 0 => Ok(Verdict::Broken {
                entry: 0,
                reason: "the checkpoint is missing".into(),
            }),
            _ => Ok(Verdict::Intact { count, head: prev }),
        }
    }
}
