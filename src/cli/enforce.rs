//! `cairn enforce`: reads the daemon's settings and token file, sets up logging, runs it.

use std::collections::{BTreeMap, HashMap};

use super::args::{EnforceArgs, LogFormat};
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, runtime};
use crate::diag::Diag;
use crate::enforce::{self, Role, Settings};
use crate::model::ResourceKind;

pub fn run(a: &EnforceArgs, ui: &Ui) -> CmdResult {
    let tokens = match &a.token_file {
        Some(path) => read_tokens(path)?,
        None => HashMap::new(),
    };
    init_logging(a.log_format, ui.color_err);
    let settings = Settings {
        dirs: a.dirs.clone(),
        env: a.env.clone(),
        listen: a.listen,
        report_only: a.report_only,
        drift: BTreeMap::from([
            (ResourceKind::Zone, a.zone_interval),
            (ResourceKind::Record, a.record_interval),
            (ResourceKind::Group, a.group_interval),
        ]),
        failback: a.failback,
        probes: a.probes,
        tokens,
        debounce: a.debounce,
        lock_timeout: a.lock_timeout,
        scale_interval: a.scale_interval,
        ha: crate::enforce::ha::HaSettings {
            lease: a.lease,
            replica_id: a.replica_id.clone(),
            advertise: a.advertise.clone(),
        },
    };
    runtime().block_on(enforce::run(settings))?;
    Ok(EXIT_OK)
}

fn init_logging(format: LogFormat, color: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CAIRN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.with_ansi(color).try_init(),
    };
}

/// `ROLE TOKEN` per line; `#` starts a comment.
fn read_tokens(path: &std::path::Path) -> Result<HashMap<String, Role>, Diag> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diag::error(
            "enforce::tokens",
            format!("cannot read the token file `{}`: {e}", path.display()),
        )
    })?;
    let mut tokens = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = || {
            Diag::error(
                "enforce::tokens",
                format!("{}:{}: expected `ROLE TOKEN`", path.display(), i + 1),
            )
            .help("roles are viewer, operator and admin; tokens are at least 16 characters")
        };
        let (role, token) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        let role = match role {
            "viewer" => Role::Viewer,
            "operator" => Role::Operator,
            "admin" => Role::Admin,
            _ => return Err(bad()),
        };
        let token = token.trim();
        if token.len() < 16 {
            return Err(bad());
        }
        tokens.insert(token.to_string(), role);
    }
    Ok(tokens)
}
