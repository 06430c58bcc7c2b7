//! `cairn audit verify|log`, and the entries applies append.

use sha2::{Digest, Sha256};

use super::args::AuditCommand;
use super::ui::Ui;
use super::{CmdResult, EXIT_ERROR, EXIT_OK, Failure, load, state_dir};
use crate::apply::Outcome;
use crate::audit::{AuditLog, Keys, Record, Verdict};
use crate::diag::Diag;
use crate::plan::{Action, Plan};

/// The audit keys, if configured; a malformed configuration is an error before anything runs.
pub fn keys() -> Result<Option<Keys>, Failure> {
    Keys::from_env().map_err(|e| Diag::error("audit::key", e).into())
}

fn required_keys() -> Result<Keys, Failure> {
    keys()?.ok_or_else(|| {
        Diag::error(
            "audit::key",
            "no audit key: set CAIRN_AUDIT_KEY=ID:SECRET or CAIRN_AUDIT_KEY_FILE",
        )
        .into()
    })
}

fn plan_digest(plan: &Plan) -> String {
    Sha256::digest(serde_json::to_vec(plan).expect("plans serialize"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends a policy entry (`override`, `waiver`) about applying `plan`.
pub fn record_policy(
    keys: &Keys,
    plan: &Plan,
    action: &str,
    details: serde_json::Value,
) -> Result<(), Failure> {
    let record = Record {
        action: action.into(),
        stack: plan.stack.clone(),
        environment: plan.environment.clone(),
        plan_digest: Some(plan_digest(plan)),
        result: "ok".into(),
        details,
    };
    append(keys, &plan.target.state_dir, record)
}

/// Appends the entry for an apply or destroy of `plan`.
pub fn record_apply(keys: &Keys, plan: &Plan, outcome: &Outcome) -> Result<(), Failure> {
    let digest = plan_digest(plan);
    let result = if outcome.failed.is_empty() && outcome.skipped.is_empty() {
        "ok".to_string()
    } else {
        format!(
            "{} failed, {} skipped",
            outcome.failed.len(),
            outcome.skipped.len()
        )
    };
    let record = Record {
        action: if plan.destroy { "destroy" } else { "apply" }.into(),
        stack: plan.stack.clone(),
        environment: plan.environment.clone(),
        plan_digest: Some(digest),
        result,
        details: serde_json::json!({
            "created": outcome.count(Action::Create),
            "updated": outcome.count(Action::Update),
            "replaced": outcome.count(Action::Replace),
            "destroyed": outcome.count(Action::Delete),
        }),
    };
    append(keys, &plan.target.state_dir, record)
}

/// Appends an entry for an action other than an apply (import, state rm), when keys are set.
pub fn record(
    stack: &crate::config::Stack,
    action: &str,
    details: serde_json::Value,
) -> Result<(), Failure> {
    let Some(keys) = keys()? else { return Ok(()) };
    let record = Record {
        action: action.into(),
        stack: stack.name.clone(),
        environment: stack.environment.clone(),
        plan_digest: None,
        result: "ok".into(),
        details,
    };
    append(&keys, &state_dir(stack)?, record)
}

fn append(keys: &Keys, state_dir: &std::path::Path, record: Record) -> Result<(), Failure> {
    AuditLog::at(state_dir)
        .append(keys, record)
        .map(|_| ())
        .map_err(|e| {
            Diag::error(
                "audit::write",
                format!("the change was made, but the audit entry could not be written: {e}"),
            )
            .into()
        })
}

pub fn run(c: AuditCommand, ui: &Ui) -> CmdResult {
    match c {
        AuditCommand::Verify(a) => {
            let (stack, _) = load(&a, ui)?;
            let keys = required_keys()?;
            let log = AuditLog::at(&state_dir(&stack)?);
            match log
                .verify(&keys)
                .map_err(|e| Diag::error("audit::verify", e))?
            {
                Verdict::Intact { count, head } => {
                    let short = &head[..head.len().min(16)];
                    ui.message(
                        &format!(
                            "Audit log intact: {count} entr{} (head {short}), checkpoint matches.",
                            if count == 1 { "y" } else { "ies" }
                        ),
                        serde_json::json!({ "intact": true, "entries": count, "head": head }),
                    );
                    Ok(EXIT_OK)
                }
                Verdict::Broken { entry, reason } => {
                    if ui.json {
                        ui.print_json(&serde_json::json!({ "intact": false, "entry": entry, "reason": reason }));
                        return Ok(EXIT_ERROR);
                    }
                    let at = if entry == 0 {
                        "the log".to_string()
                    } else {
                        format!("entry {entry}")
                    };
                    Err(Diag::error(
                        "audit::tampered",
                        format!("the audit log was tampered with at {at}: {reason}"),
                    )
                    .help(format!("log: {}", log.path().display()))
                    .into())
                }
            }
        }
        AuditCommand::Log {
            stack: a,
            action,
            since,
        } => {
            let (stack, _) = load(&a, ui)?;
            let log = AuditLog::at(&state_dir(&stack)?);
            let entries = log.entries().map_err(|e| Diag::error("audit::read", e))?;
            for e in entries.iter().filter(|e| {
                action.as_ref().is_none_or(|a| &e.action == a) && since.is_none_or(|s| e.time >= s)
            }) {
                if ui.json {
                    println!("{}", serde_json::to_string(e).expect("entries serialize"));
                } else {
                    println!(
                        "{:>4}  {}  {:<15} {:<22} {}  {}",
                        e.seq,
                        e.time.strftime("%Y-%m-%d %H:%M:%S"),
                        e.action,
                        e.who,
                        e.result,
                        e.details
                    );
                }
            }
            Ok(EXIT_OK)
        }
    }
}
