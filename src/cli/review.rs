//! `cairn review --base REV`: both revisions from git, the semantic diff, HEAD's plan, and
//! the findings the change adds.

use super::args::{FilterArgs, LockArgs, ReviewArgs, ReviewFormat};
use super::ui::Ui;
use super::{CmdResult, EXIT_BLOCKED, EXIT_OK, Planned, make_plan, runtime};
use crate::policy::Options;
use crate::review::{self, Report, Revision, git::Repo};

pub fn run(a: &ReviewArgs, ui: &Ui) -> CmdResult {
    let dir = &a.stack.dir;
    let env = a.stack.env.as_deref();
    let repo = Repo::discover(dir)?;
    let base_commit = repo.resolve(&a.base)?;
    let head_commit = repo.resolve(&a.head)?;

    let (head, warnings) = review::side(repo.snapshot(&head_commit)?, dir, env)?;
    // The base may predate the stack, or not compile: then everything at HEAD is new.
    let base = review::side(repo.snapshot(&base_commit)?, dir, env)
        .ok()
        .map(|(side, _)| side);
    let changes = review::semantic(base.as_ref(), &head);

    let (plan, plan_note) = if a.no_plan {
        (None, Some("not computed (--no-plan)".to_string()))
    } else {
        let rt = runtime();
        match make_plan(
            &head.stack,
            &FilterArgs::default(),
            &LockArgs {
                lock_timeout: std::time::Duration::ZERO,
            },
            false,
            "cairn review",
            &rt,
            ui,
        ) {
            Ok(Planned { plan, .. }) => (Some(plan), None),
            Err(super::Failure(diags)) => (
                None,
                Some(format!(
                    "the plan could not be computed: {}",
                    diags
                        .first()
                        .map_or("unknown error".to_string(), |d| d.message.clone())
                )),
            ),
        }
    };

    let opts = Options::new(!a.policy.no_waivers);
    let found = review::findings(
        &review::Inputs {
            base: base.as_ref(),
            head: &head,
            plan: plan.as_ref(),
            all: a.all,
            opts: &opts,
        },
        &changes,
    )?;
    let mut notes = warnings;
    notes.extend(found.notes);
    let report = Report {
        stack: head.stack.name.clone(),
        environment: head.stack.environment.clone(),
        base: Revision {
            rev: a.base.clone(),
            commit: base_commit,
            present: base.is_some(),
        },
        head: Revision {
            rev: a.head.clone(),
            commit: head_commit,
            present: true,
        },
        changes,
        plan,
        plan_note,
        findings: found.reported,
        all: a.all,
        unchanged: found.unchanged,
        notes,
    };
    let format = if ui.json {
        ReviewFormat::Json
    } else {
        a.format
    };
    match format {
        ReviewFormat::Human => {
            ui.diagnostics(&report.notes);
            print!("{}", review::format::human(&report, ui.color_out));
        }
        ReviewFormat::Json => ui.print_json(&review::format::json(&report)),
        ReviewFormat::Sarif => ui.print_json(&review::format::sarif(&report)),
        ReviewFormat::Github => {
            print!("{}", review::format::github(&report));
        }
        ReviewFormat::Markdown => print!("{}", review::format::markdown(&report)),
    }
    Ok(if report.blocking().next().is_some() {
        EXIT_BLOCKED
    } else {
        EXIT_OK
    })
}
