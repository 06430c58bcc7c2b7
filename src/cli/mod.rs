//! The command-line interface: parse arguments, call the library, print, return an exit code.
//! Errors are printed in one place (`run`).

mod args;
mod audit;
mod enforce;
mod nab;
mod policy;
mod recommend;
mod review;
mod sandbox;
mod scale;
mod simulate;
mod state;
mod ui;

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser};

pub use args::Cli;
use args::*;
use ui::{TerminalProgress, Ui};

use crate::apply::{self, Outcome, ProviderSet};
use crate::config::{self, Stack};
use crate::diag::{self, Diag};
use crate::engine::{self, Planned};
use crate::plan::{self, Filter, Plan};
use crate::provider::{LiveResource, Scope};
use crate::state::{self as st, StateError, StateStore};

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_CHANGES: i32 = 2;
/// `review` and `policy check`: findings that would stop an apply.
pub const EXIT_BLOCKED: i32 = 2;

/// A command failure: diagnostics already shaped for the user.
pub struct Failure(pub Vec<Diag>);

impl From<Diag> for Failure {
    fn from(d: Diag) -> Self {
        Failure(vec![d])
    }
}

impl From<Vec<Diag>> for Failure {
    fn from(d: Vec<Diag>) -> Self {
        Failure(d)
    }
}

impl From<StateError> for Failure {
    fn from(e: StateError) -> Self {
        Failure(vec![engine::state_error(&e)])
    }
}

type CmdResult = Result<i32, Failure>;

pub fn main() -> i32 {
    // Usage errors exit 1, like every other error: 2 means only "changes pending".
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
        }
    };
    let ui = Ui::new(cli.no_color, cli.json);
    match run(cli, &ui) {
        Ok(code) => code,
        Err(Failure(diags)) => {
            ui.diagnostics(&diags);
            EXIT_ERROR
        }
    }
}

fn run(cli: Cli, ui: &Ui) -> CmdResult {
    match cli.command {
        Command::Validate(a) => validate(&a, ui),
        Command::Plan(a) => plan_cmd(&a, ui),
        Command::Apply(a) => apply_cmd(a, ui),
        Command::Destroy(a) => destroy_cmd(a, ui),
        Command::Review(a) => review::run(&a, ui),
        Command::Recommend(a) => recommend::run(&a, ui),
        Command::Scale(ScaleCommand::Explain(a)) => scale::explain(&a, ui),
        Command::Enforce(a) => enforce::run(&a, ui),
        Command::Policy(c) => policy::run(c, ui),
        Command::Show(a) => show(&a, ui),
        Command::Graph(a) => {
            let (stack, _) = load(&a, ui)?;
            let g = crate::graph::Graph::build(&stack.resources)?;
            if ui.json {
                ui.print_json(&g.to_json());
            } else {
                print!("{}", g.to_dot());
            }
            Ok(EXIT_OK)
        }
        Command::State(c) => state::run(c, ui),
        Command::Import(a) => state::import(&a, ui),
        Command::Sandbox(c) => sandbox::run(c, ui),
        Command::Audit(c) => audit::run(c, ui),
        Command::Schema => {
            print!("{}", config::raw::json_schema());
            Ok(EXIT_OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cairn", &mut std::io::stdout());
            Ok(EXIT_OK)
        }
        Command::Simulate(a) => simulate::run(&a, ui),
        Command::Nab(c) => nab::run(c, ui),
    }
}

/// Loads and compiles; prints warnings; errors become the failure.
fn load(a: &StackArgs, ui: &Ui) -> Result<(Stack, Vec<Diag>), Failure> {
    let (stack, warnings) = config::load_stack(&a.dir, a.env.as_deref())?;
    if !ui.json {
        ui.diagnostics(&warnings);
    }
    Ok((stack, warnings))
}

fn validate(a: &StackArgs, ui: &Ui) -> CmdResult {
    let result = config::load_stack(&a.dir, a.env.as_deref());
    let (mut ok, mut diags, stack) = match result {
        Ok((stack, warnings)) => (true, warnings, Some(stack)),
        Err(diags) => (false, diags, None),
    };
    // The stack's policy files are configuration too: their errors are reported here.
    if let Some(s) = &stack {
        match crate::policy::for_stack(s) {
            Ok(p) => diags.extend(p.warnings),
            Err(errors) => {
                ok = false;
                diags.extend(errors);
            }
        }
    }
    let counts = stack.as_ref().map(|s| {
        let mut c: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &s.resources {
            *c.entry(r.address.kind.as_str()).or_default() += 1;
        }
        c
    });
    if ui.json {
        ui.print_json(&serde_json::json!({
            "valid": ok,
            "environment": stack.as_ref().map(|s| s.environment.clone()),
            "resources": counts,
            "diagnostics": diags.iter().map(Diag::to_json).collect::<Vec<_>>(),
        }));
    } else {
        ui.diagnostics(&diags);
        if let (true, Some(s), Some(c)) = (ok, &stack, &counts) {
            let n = |k: &str| c.get(k).copied().unwrap_or(0);
            println!(
                "{} stack `{}` ({}): {} zone{}, {} record{}, {} group{}.",
                ui.ok("Valid:"),
                s.name,
                s.environment,
                n("zone"),
                diag::plural(n("zone")),
                n("record"),
                diag::plural(n("record")),
                n("group"),
                diag::plural(n("group"))
            );
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_ERROR })
}

/// The stack's state, read without the lock.
fn read_state(stack: &Stack) -> Result<st::State, Failure> {
    Ok(runtime().block_on(st::read(&engine::location(stack)))?.0)
}

fn state_dir(stack: &Stack) -> Result<PathBuf, Failure> {
    Ok(engine::state_dir(stack)?)
}

fn target_of(stack: &Stack) -> Result<plan::Target, Failure> {
    Ok(engine::target_of(stack)?)
}

fn providers(target: &plan::Target, rt: &tokio::runtime::Runtime) -> Result<ProviderSet, Failure> {
    Ok(rt.block_on(engine::providers(target))?)
}

async fn refresh(providers: &ProviderSet, scope: &Scope) -> Result<Vec<LiveResource>, Failure> {
    Ok(engine::refresh(providers, scope).await?)
}

pub(super) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("cannot start the async runtime")
}

/// Lock, refresh and plan for a command; notes an interrupted previous run.
pub(super) fn make_plan(
    stack: &Stack,
    filter: &FilterArgs,
    lock: &LockArgs,
    destroy: bool,
    command: &str,
    rt: &tokio::runtime::Runtime,
    ui: &Ui,
) -> Result<Planned, Failure> {
    let filter = Filter {
        targets: filter.target.clone(),
        excludes: filter.exclude.clone(),
    };
    let planned = rt.block_on(engine::plan(engine::PlanRequest {
        stack,
        filter: &filter,
        lock_timeout: lock.lock_timeout,
        destroy,
        command,
        fence: None,
    }))?;
    if let Some(h) = &planned.interrupted {
        ui.note(&format!("the previous {h} was interrupted; its completed changes are in the state and this plan picks up where it stopped"));
    }
    Ok(planned)
}

fn plan_cmd(a: &PlanArgs, ui: &Ui) -> CmdResult {
    let (stack, _) = load(&a.stack, ui)?;
    let rt = runtime();
    let Planned {
        mut plan,
        providers,
        state,
        ..
    } = make_plan(&stack, &a.filter, &a.lock, a.destroy, "cairn plan", &rt, ui)?;
    // Planning reads under the lock; it is released before anything is printed.
    rt.block_on(state.unlock());
    policy::evaluate_plan(&stack, &mut plan, &a.policy, ui)?;
    if let Some(out) = &a.out {
        let body = serde_json::to_vec_pretty(&plan).expect("plans serialize");
        std::fs::write(out, body).map_err(|e| {
            Diag::error(
                "plan::write",
                format!("cannot write `{}`: {e}", out.display()),
            )
        })?;
    }
    if ui.json {
        // The plan document, plus how many API calls computing it took.
        let mut doc = serde_json::to_value(&plan).expect("plans serialize");
        doc["api_calls"] = serde_json::json!(providers.api_calls());
        ui.print_json(&doc);
    } else {
        print!("{}", plan::render(&plan, ui.color_out));
        print!("{}", policy::render_findings(&plan.findings, ui.color_out));
        if plan.findings.iter().any(|f| f.blocks()) {
            println!(
                "cairn apply will refuse this plan until the blocking findings are fixed, waived or (soft-mandatory only) overridden."
            );
        }
        if let Some(out) = &a.out {
            println!(
                "\nSaved the plan to {}. Apply exactly this plan with:\n  cairn apply {}",
                out.display(),
                out.display()
            );
        }
    }
    Ok(if a.detailed_exitcode && plan.has_changes() {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}

fn apply_cmd(a: ApplyArgs, ui: &Ui) -> CmdResult {
    if a.path.is_file() {
        if !a.filter.target.is_empty() || !a.filter.exclude.is_empty() {
            return Err(Diag::error("cli::usage", "--target and --exclude are fixed when a plan is saved; they cannot be given with a plan file").into());
        }
        return apply_saved(&a, ui);
    }
    let stack_args = StackArgs {
        dir: a.path.clone(),
        env: a.env.clone(),
    };
    run_apply(
        &stack_args,
        &ApplyOptions {
            filter: &a.filter,
            lock: &a.lock,
            policy: &a.policy,
            overrides: &a.overrides,
            destroy: false,
            auto_approve: a.auto_approve,
            parallelism: a.parallelism as usize,
        },
        ui,
    )
}

fn destroy_cmd(a: DestroyArgs, ui: &Ui) -> CmdResult {
    run_apply(
        &a.stack,
        &ApplyOptions {
            filter: &a.filter,
            lock: &a.lock,
            policy: &a.policy,
            overrides: &a.overrides,
            destroy: true,
            auto_approve: a.auto_approve,
            parallelism: a.parallelism as usize,
        },
        ui,
    )
}

/// What apply and destroy share.
struct ApplyOptions<'a> {
    filter: &'a FilterArgs,
    lock: &'a LockArgs,
    policy: &'a PolicyArgs,
    overrides: &'a OverrideArgs,
    destroy: bool,
    auto_approve: bool,
    parallelism: usize,
}

fn run_apply(s: &StackArgs, o: &ApplyOptions<'_>, ui: &Ui) -> CmdResult {
    let destroy = o.destroy;
    if ui.json && !o.auto_approve {
        return Err(Diag::error(
            "cli::usage",
            "--json needs --auto-approve: a confirmation prompt cannot share stdout with JSON",
        )
        .into());
    }
    let (stack, _) = load(s, ui)?;
    let rt = runtime();
    let command = if destroy {
        "cairn destroy"
    } else {
        "cairn apply"
    };
    let Planned {
        plan,
        state,
        providers,
        ..
    } = make_plan(&stack, o.filter, o.lock, destroy, command, &rt, ui)?;
    let (result, state) = decide_and_apply(&stack, plan, &providers, state, o, ui, &rt);
    rt.block_on(state.unlock());
    result
}

/// Policies, confirmation, apply: the part of apply and destroy that runs under the lock.
/// Returns the state with the outcome so the caller releases the lock in one place.
fn decide_and_apply(
    stack: &Stack,
    mut plan: Plan,
    providers: &ProviderSet,
    mut state: Box<dyn StateStore>,
    o: &ApplyOptions<'_>,
    ui: &Ui,
    rt: &tokio::runtime::Runtime,
) -> (CmdResult, Box<dyn StateStore>) {
    let mut run = |state: &mut Box<dyn StateStore>| -> CmdResult {
        policy::evaluate_plan(stack, &mut plan, o.policy, ui)?;
        if !ui.json {
            print!("{}", plan::render(&plan, ui.color_out));
            print!("{}", policy::render_findings(&plan.findings, ui.color_out));
        }
        if !plan.has_changes() {
            return Ok(nothing_to_do(&plan, ui));
        }
        let gate = policy::gate(&plan.findings, o.overrides)?;
        if !o.auto_approve && !confirm(o.destroy)? {
            println!("\nApply cancelled: nothing was changed.");
            return Ok(EXIT_ERROR);
        }
        policy::record(&gate, &plan)?;
        execute(&plan, providers, state.as_mut(), o.parallelism, ui, rt)
    };
    let result = run(&mut state);
    (result, state)
}

fn execute(
    plan: &Plan,
    providers: &ProviderSet,
    state: &mut dyn StateStore,
    parallelism: usize,
    ui: &Ui,
    rt: &tokio::runtime::Runtime,
) -> CmdResult {
    // A misconfigured audit key stops the apply before anything changes.
    let audit_keys = audit::keys()?;
    let progress = TerminalProgress::new(ui, plan.changes.len());
    let before = providers.api_calls();
    let outcome = rt.block_on(apply::apply(plan, providers, state, parallelism, &progress))?;
    if let Some(keys) = &audit_keys {
        audit::record_apply(keys, plan, &outcome)?;
    }
    let ok = outcome.failed.is_empty() && outcome.skipped.is_empty();
    if ui.json {
        let total = providers.api_calls();
        // The refresh's calls were made before; `apply_api_calls` are the changes' own.
        let apply_calls: BTreeMap<&String, u64> = total
            .iter()
            .map(|(k, n)| (k, n - before.get(k).copied().unwrap_or(0)))
            .collect();
        ui.print_json(&serde_json::json!({
            "plan": plan.summary,
            "findings": plan.findings,
            "outcome": outcome,
            "state_serial": state.serial(),
            "api_calls": total,
            "apply_api_calls": apply_calls,
        }));
    } else {
        ui.outcome(&outcome);
    }
    Ok(if ok { EXIT_OK } else { EXIT_ERROR })
}

fn confirm(destroy: bool) -> Result<bool, Failure> {
    let mut stdout = std::io::stdout();
    let what = if destroy {
        "destroy every resource listed above"
    } else {
        "perform the actions described above"
    };
    let _ = write!(
        stdout,
        "\nDo you want to continue? cairn will {what}.\n  Only 'yes' will be accepted: "
    );
    let _ = stdout.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Diag::error("cli::input", format!("cannot read the answer: {e}")))?;
    if line.is_empty() && !std::io::stdin().is_terminal() {
        println!();
        return Err(
            Diag::error("cli::input", "no answer: input is not a terminal")
                .help("pass --auto-approve to apply without asking")
                .into(),
        );
    }
    Ok(line.trim() == "yes")
}

fn apply_saved(a: &ApplyArgs, ui: &Ui) -> CmdResult {
    let (path, lock_timeout, parallelism) = (&a.path, a.lock.lock_timeout, a.parallelism as usize);
    let text = std::fs::read_to_string(path).map_err(|e| {
        Diag::error(
            "plan::read",
            format!("cannot read `{}`: {e}", path.display()),
        )
    })?;
    let plan: Plan = serde_json::from_str(&text).map_err(|e| {
        Diag::error(
            "plan::read",
            format!("`{}` is not a cairn plan file: {e}", path.display()),
        )
    })?;
    if plan.format_version != plan::FORMAT_VERSION {
        return Err(Diag::error(
            "plan::version",
            format!(
                "plan format {} is not supported (this cairn reads {})",
                plan.format_version,
                plan::FORMAT_VERSION
            ),
        )
        .into());
    }
    let rt = runtime();
    let mut state = rt.block_on(st::open_locked(
        &plan.target.location(),
        st::Open {
            command: "cairn apply (saved plan)",
            lock_timeout,
            fence: None,
        },
    ))?;
    let result = apply_saved_locked(&plan, state.as_mut(), a, parallelism, ui, &rt);
    rt.block_on(state.unlock());
    result
}

fn apply_saved_locked(
    plan: &Plan,
    state: &mut dyn StateStore,
    a: &ApplyArgs,
    parallelism: usize,
    ui: &Ui,
    rt: &tokio::runtime::Runtime,
) -> CmdResult {
    let stale = |why: String| -> Failure {
        Diag::error("plan::stale", format!("the saved plan is stale: {why}"))
            .help("nothing was changed; run `cairn plan --out FILE` again and review the new plan")
            .into()
    };
    if state.serial() != plan.state_serial {
        return Err(stale(format!(
            "the state changed since it was made (serial {} then, {} now)",
            plan.state_serial,
            state.serial()
        )));
    }
    let lineage_now = &state.state().lineage;
    if !lineage_now.is_empty() && *lineage_now != plan.lineage {
        return Err(stale(
            "it was made for a different state (lineage differs)".into(),
        ));
    }
    let providers = providers(&plan.target, rt)?;
    let live = rt.block_on(refresh(&providers, &plan.target.scope))?;
    if plan::live_digest(&live) != plan.live_digest {
        return Err(stale("live resources changed since it was made".into()));
    }
    if !ui.json {
        print!("{}", plan::render(plan, ui.color_out));
        print!("{}", policy::render_findings(&plan.findings, ui.color_out));
    }
    if !plan.has_changes() {
        return Ok(nothing_to_do(plan, ui));
    }
    let gate = policy::gate(&plan.findings, &a.overrides)?;
    policy::record(&gate, plan)?;
    execute(plan, &providers, state, parallelism, ui, rt)
}

/// An apply with nothing to do: the plan already said so in text; JSON needs a document.
fn nothing_to_do(plan: &Plan, ui: &Ui) -> i32 {
    if ui.json {
        ui.print_json(&serde_json::json!({ "plan": plan.summary, "outcome": Outcome::default() }));
    }
    EXIT_OK
}

fn show(a: &ShowArgs, ui: &Ui) -> CmdResult {
    if a.path.is_file() {
        let text = std::fs::read_to_string(&a.path).map_err(|e| {
            Diag::error(
                "plan::read",
                format!("cannot read `{}`: {e}", a.path.display()),
            )
        })?;
        let plan: Plan = serde_json::from_str(&text)
            .map_err(|e| Diag::error("plan::read", format!("not a cairn plan file: {e}")))?;
        if ui.json {
            ui.print_json(&plan);
        } else {
            print!("{}", plan::render(&plan, ui.color_out));
        }
        return Ok(EXIT_OK);
    }
    let (stack, _) = load(
        &StackArgs {
            dir: a.path.clone(),
            env: a.env.clone(),
        },
        ui,
    )?;
    let st = read_state(&stack)?;
    if ui.json {
        ui.print_json(&st);
    } else if st.resources.is_empty() {
        println!(
            "The state is empty: nothing has been applied for `{}` ({}).",
            stack.name, stack.environment
        );
    } else {
        for (addr, r) in &st.resources {
            ui.resource(addr, r);
            println!();
        }
    }
    Ok(EXIT_OK)
}
