//! Reading a stack's files at a git revision, with the `git` command (as CI runners have it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use crate::diag::{Diag, SourceFile};

/// The repository holding a stack, and where the stack is in it.
pub struct Repo {
    pub root: PathBuf,
    /// The stack directory relative to the root, `/`-separated, empty or ending in `/`.
    pub prefix: String,
}

/// A stack's files at one revision, named by their path in the repository.
#[derive(Default)]
pub struct Snapshot {
    pub stack: Vec<Arc<SourceFile>>,
    pub policies: Vec<Arc<SourceFile>>,
}

fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes)
        .trim_end_matches('\n')
        .to_string()
}

impl Repo {
    pub fn discover(dir: &Path) -> Result<Repo, Diag> {
        let fail = |e: String| {
            Diag::error(
                "review::git",
                format!("`{}` is not in a git repository: {e}", dir.display()),
            )
            .help("cairn review compares two revisions of a stack kept in git")
        };
        let root = text(git(dir, &["rev-parse", "--show-toplevel"]).map_err(fail)?);
        let prefix = text(git(dir, &["rev-parse", "--show-prefix"]).map_err(fail)?);
        Ok(Repo {
            root: PathBuf::from(root),
            prefix,
        })
    }

    /// The commit a revision names.
    pub fn resolve(&self, rev: &str) -> Result<String, Diag> {
        git(
            &self.root,
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{rev}^{{commit}}"),
            ],
        )
        .map(text)
        .ok()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Diag::error("review::git", format!("unknown git revision `{rev}`"))
                .help("in CI, fetch the base branch first (actions/checkout with fetch-depth: 0)")
        })
    }

    /// The stack's `.toml` files and its `policies/*.toml` at `commit`; empty when the
    /// stack did not exist there.
    pub fn snapshot(&self, commit: &str) -> Result<Snapshot, Diag> {
        let mut args = vec!["ls-tree", "-r", "-z", "--name-only", commit];
        // An empty pathspec is an error to git; a stack at the root lists everything.
        if !self.prefix.is_empty() {
            args.extend(["--", self.prefix.as_str()]);
        }
        let listing = git(&self.root, &args).map_err(|e| {
            Diag::error("review::git", format!("cannot list files at {commit}: {e}"))
        })?;
        let mut snap = Snapshot::default();
        for path in listing.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let path = String::from_utf8_lossy(path).to_string();
            let Some(rel) = path.strip_prefix(&self.prefix) else {
                continue;
            };
            let list = match rel.split('/').collect::<Vec<_>>().as_slice() {
                [f] if f.ends_with(".toml") => &mut snap.stack,
                ["policies", f] if f.ends_with(".toml") => &mut snap.policies,
                _ => continue,
            };
            let body = git(&self.root, &["show", &format!("{commit}:{path}")]).map_err(|e| {
                Diag::error(
                    "review::git",
                    format!("cannot read {path} at {commit}: {e}"),
                )
            })?;
            list.push(Arc::new(SourceFile {
                name: path,
                text: String::from_utf8_lossy(&body).into(),
            }));
        }
        Ok(snap)
    }
}
