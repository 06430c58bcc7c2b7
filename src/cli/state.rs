//! `cairn state ...` and `cairn import`: inspect and edit recorded state, adopt live resources.

use super::args::{BackendArg, ImportArgs, MigrateArgs, StackArgs, StateCommand};
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, load, providers, read_state, refresh, runtime, target_of};
use crate::config::Backend;
use crate::diag::Diag;
use crate::engine;
use crate::model::Address;
use crate::provider::{Change, ChangeOp};
use crate::state::{
    self as st, LocalState, Location, LockStatus, StateError, StateOp, StateResource, StateStore,
};

pub fn run(c: StateCommand, ui: &Ui) -> CmdResult {
    match c {
        StateCommand::List(a) => {
            let (stack, _) = load(&a, ui)?;
            let st = read_state(&stack)?;
            if ui.json {
                ui.print_json(&st.resources.keys().collect::<Vec<_>>());
            } else {
                for addr in st.resources.keys() {
                    println!("{addr}");
                }
            }
            Ok(EXIT_OK)
        }
        StateCommand::Show { address, stack: a } => {
            let (stack, _) = load(&a, ui)?;
            let addr: Address = address
                .parse()
                .map_err(|e: String| Diag::error("cli::address", e))?;
            let st = read_state(&stack)?;
            let r = st.resources.get(&addr).ok_or_else(|| {
                Diag::error("state::missing", format!("{addr} is not in state"))
                    .help("`cairn state list` shows what is")
            })?;
            if ui.json {
                ui.print_json(r);
            } else {
                ui.resource(&addr, r);
            }
            Ok(EXIT_OK)
        }
        StateCommand::Rm {
            addresses,
            dir,
            env,
            lock,
        } => {
            let (stack, _) = load(&StackArgs { dir, env }, ui)?;
            let target = target_of(&stack)?;
            let rt = runtime();
            let mut state = rt.block_on(st::open_locked(
                &target.location(),
                st::Open {
                    command: "cairn state rm",
                    lock_timeout: lock.lock_timeout,
                    fence: None,
                },
            ))?;
            let result = rm(&stack, &target, &addresses, state.as_mut(), &rt, ui);
            rt.block_on(state.unlock());
            result
        }
        StateCommand::Unlock(a) => {
            let (stack, _) = load(&a, ui)?;
            unlock(&engine::location(&stack), ui)
        }
        StateCommand::Migrate(a) => migrate(&a, ui),
        StateCommand::History { stack: a, limit } => {
            let (stack, _) = load(&a, ui)?;
            let entries = runtime().block_on(st::history(&engine::location(&stack), limit))?;
            if ui.json {
                ui.print_json(&entries);
            } else if entries.is_empty() {
                println!("Nothing has been written to this state yet.");
            } else {
                for e in &entries {
                    let by = e.by.as_ref().map_or_else(|| "?".into(), |h| h.to_string());
                    let what = match (&e.ops, &e.note) {
                        (_, Some(note)) => note.clone(),
                        (Some(ops), None) => {
                            format!("{} operation{}", ops.len(), crate::diag::plural(ops.len()))
                        }
                        (None, None) => String::new(),
                    };
                    let fence = e.fence.map(|f| format!(" (fence {f})")).unwrap_or_default();
                    println!(
                        "{:>6}  {}  {by}{fence}: {what}",
                        e.serial,
                        e.at.strftime("%Y-%m-%d %H:%M:%S UTC")
                    );
                }
            }
            Ok(EXIT_OK)
        }
    }
}

fn rm(
    stack: &crate::config::Stack,
    target: &crate::plan::Target,
    addresses: &[String],
    state: &mut dyn StateStore,
    rt: &tokio::runtime::Runtime,
    ui: &Ui,
) -> CmdResult {
    let providers = providers(target, rt)?;
    let mut removed = Vec::new();
    for a in addresses {
        let addr: Address = a
            .parse()
            .map_err(|e: String| Diag::error("cli::address", e))?;
        let r = state
            .state()
            .resources
            .get(&addr)
            .cloned()
            .ok_or_else(|| Diag::error("state::missing", format!("{addr} is not in state")))?;
        // Clear the ownership marker, or the next plan would treat it as a leftover to delete.
        if let Some(p) = providers.get(r.provider.kind) {
            let change = Change {
                address: addr.clone(),
                provider: r.provider,
                op: ChangeOp::Release { id: r.id.clone() },
            };
            if let Some(Err(e)) = rt
                .block_on(p.apply(&[change], &state.state().lineage))
                .pop()
            {
                return Err(Diag::error(
                    "state::release",
                    format!("cannot clear the ownership marker of {addr}: {e}"),
                )
                .into());
            }
        }
        rt.block_on(state.write(vec![StateOp::Remove {
            address: addr.clone(),
        }]))?;
        removed.push(addr);
    }
    rt.block_on(state.compact())?;
    super::audit::record(
        stack,
        "state rm",
        serde_json::json!({ "addresses": removed }),
    )?;
    if ui.json {
        ui.print_json(&removed);
    } else {
        for a in &removed {
            println!("Removed {a} from state; the live resource was left in place.");
        }
    }
    Ok(EXIT_OK)
}

fn unlock(location: &Location, ui: &Ui) -> CmdResult {
    let rt = runtime();
    match rt.block_on(st::lock_status(location))? {
        LockStatus::Free => {
            ui.message(
                "The state is not locked.",
                serde_json::json!({ "locked": false }),
            );
            Ok(EXIT_OK)
        }
        LockStatus::Stale(_) => {
            let h = rt.block_on(st::clear_stale(location))?;
            let text = match &h {
                Some(h) => format!(
                    "Cleared a stale lock left by {h}, which is no longer running. Run `cairn plan` to see where it stopped."
                ),
                None => "The state is not locked.".to_string(),
            };
            ui.message(&text, serde_json::json!({ "locked": false, "cleared": h }));
            Ok(EXIT_OK)
        }
        LockStatus::Held(h) => Err(Diag::error(
            "state::locked",
            format!("the state is locked by {h}"),
        )
        .help(format!(
            "the lock is released when that process ends; to stop it: kill {}",
            h.pid
        ))
        .into()),
        LockStatus::HeldUnknown => {
            Err(Diag::error("state::locked", "the state is locked by another process").into())
        }
    }
}

pub fn import(a: &ImportArgs, ui: &Ui) -> CmdResult {
    let (stack, _) = load(
        &StackArgs {
            dir: a.dir.clone(),
            env: a.env.clone(),
        },
        ui,
    )?;
    let addr: Address = a
        .address
        .parse()
        .map_err(|e: String| Diag::error("cli::address", e))?;
    let target = target_of(&stack)?;
    let rt = runtime();
    let mut state = rt.block_on(st::open_locked(
        &target.location(),
        st::Open {
            command: "cairn import",
            lock_timeout: a.lock.lock_timeout,
            fence: None,
        },
    ))?;
    let result = import_locked(a, &stack, &target, addr, state.as_mut(), &rt, ui);
    rt.block_on(state.unlock());
    result
}

fn import_locked(
    a: &ImportArgs,
    stack: &crate::config::Stack,
    target: &crate::plan::Target,
    addr: Address,
    state: &mut dyn StateStore,
    rt: &tokio::runtime::Runtime,
    ui: &Ui,
) -> CmdResult {
    if state.state().resources.contains_key(&addr) {
        return Err(Diag::error("import::exists", format!("{addr} is already in state")).into());
    }
    let providers = providers(target, rt)?;
    let live = rt.block_on(refresh(&providers, &target.scope))?;
    let found = live.iter().find(|l| l.id == a.id).ok_or_else(|| {
        Diag::error(
            "import::not_found",
            format!("no live resource has ID `{}`", a.id),
        )
        .help("IDs are the provider's: `cairn sandbox list` shows the sandbox's; on AWS a record is HOSTEDZONEID/NAME/TYPE, on Google Cloud MANAGEDZONE/NAME/TYPE, a group REGION/NAME; a plan that finds the resource prints the exact command")
    })?;
    if found.address() != addr {
        return Err(Diag::error(
            "import::mismatch",
            format!("`{}` is {}, not {addr}", a.id, found.address()),
        )
        .into());
    }
    if let Some(owner) = &found.owner
        && *owner != state.state().lineage
    {
        return Err(Diag::error(
            "import::owned",
            format!("{addr} is managed by another stack or environment (owner {owner})"),
        )
        .help("remove it from that stack's state first (`cairn state rm`), then import it here")
        .into());
    }
    if state.state().lineage.is_empty() {
        rt.block_on(state.write(vec![StateOp::Init {
            lineage: uuid::Uuid::new_v4().to_string(),
        }]))?;
    }
    let lineage = state.state().lineage.clone();
    let p = providers
        .get(found.provider.kind)
        .expect("refreshed from this provider");
    let change = Change {
        address: addr.clone(),
        provider: found.provider,
        op: ChangeOp::Adopt {
            id: found.id.clone(),
        },
    };
    let result = rt
        .block_on(p.apply(&[change], &lineage))
        .pop()
        .unwrap_or_else(|| Err("no result".into()));
    let live = result
        .map_err(|e| Diag::error("import::failed", e))?
        .unwrap_or_else(|| found.clone());
    let declaration = stack.resources.iter().find(|r| r.address == addr);
    let depends_on = declaration
        .map(|r| r.depends_on.iter().map(|d| d.address.clone()).collect())
        .unwrap_or_default();
    // What the cloud cannot keep (e.g. Cloud DNS routing member IDs) is the declaration's.
    let attrs = declaration.map_or_else(|| live.attrs.clone(), |d| live.attrs_against(&d.attrs));
    rt.block_on(state.write(vec![StateOp::Put {
        address: addr.clone(),
        resource: Box::new(StateResource {
            provider: live.provider,
            id: live.id.clone(),
            attrs,
            depends_on,
            protected: false,
        }),
    }]))?;
    rt.block_on(state.compact())?;
    super::audit::record(
        stack,
        "import",
        serde_json::json!({ "address": addr, "id": live.id }),
    )?;
    let declared = stack.resources.iter().any(|r| r.address == addr);
    if ui.json {
        ui.print_json(
            &serde_json::json!({ "imported": addr, "id": live.id, "declared": declared }),
        );
    } else {
        println!("Imported {addr} (id {}).", live.id);
        if !declared {
            ui.diagnostics(&[Diag::warning(
                "import::undeclared",
                format!("{addr} is not declared in the stack"),
            )
            .help("declare it, or the next apply will delete it")]);
        }
    }
    Ok(EXIT_OK)
}

/// Copies the state from the stack's backend to the other one, then reads both back.
fn migrate(a: &MigrateArgs, ui: &Ui) -> CmdResult {
    let (stack, _) = load(&a.stack, ui)?;
    let from = engine::location(&stack);
    let to = match (a.to, &stack.backend) {
        (BackendArg::Postgres, Backend::Local { .. }) => Location::Postgres {
            db: st::pg::Db {
                url: a.url.clone(),
                ca_file: a.ca_file.clone(),
            },
            stack: stack.name.clone(),
            environment: stack.environment.clone(),
        },
        (BackendArg::Local, Backend::Postgres { dir, .. }) => Location::Local {
            dir: LocalState::dir_for(
                &a.path
                    .as_ref()
                    .map_or_else(|| dir.clone(), |p| stack.dir.join(p)),
                &stack.environment,
            ),
        },
        (to, _) => {
            let name = if to == BackendArg::Local {
                "local"
            } else {
                "postgres"
            };
            return Err(Diag::error(
                "cli::usage",
                format!("the stack already uses the {name} backend"),
            )
            .help("migrate copies the state from the backend [backend] names to the other one: pass the other one to --to")
            .into());
        }
    };
    let rt = runtime();
    let open = |location: &Location| {
        rt.block_on(st::open_locked(
            location,
            st::Open {
                command: "cairn state migrate",
                lock_timeout: a.lock.lock_timeout,
                fence: None,
            },
        ))
    };
    let source = open(&from)?;
    let dest = match open(&to) {
        Ok(d) => d,
        Err(e) => {
            rt.block_on(source.unlock());
            return Err(e.into());
        }
    };
    let (source, mut dest) = (source, dest);
    let result = copy(&*source, dest.as_mut(), a.force, &rt).and_then(|()| {
        // Read both back through fresh reads, as any later command would.
        let (back, serial) = rt.block_on(st::read(&to))?;
        let (orig, orig_serial) = rt.block_on(st::read(&from))?;
        Ok(back == orig && serial == orig_serial)
    });
    let (lineage, resources, serial) = (
        source.state().lineage.clone(),
        source.state().resources.len(),
        source.serial(),
    );
    rt.block_on(dest.unlock());
    rt.block_on(source.unlock());
    let verified = result?;
    if !verified {
        return Err(Diag::error(
            "state::migrate",
            format!("the copy at {to} does not read back equal to {from}"),
        )
        .help("the source is unchanged; run the migration again with --force")
        .into());
    }
    let next = match to {
        Location::Postgres { .. } => {
            "set [backend] kind = \"postgres\" (and url, or CAIRN_PG_URL) in the stack to use it"
        }
        Location::Local { .. } => "set [backend] kind = \"local\" in the stack to use it",
    };
    ui.message(
        &format!(
            "Copied the state of `{}` ({}) from {from} to {to}: {resources} resource{}, serial {serial}.\nVerified: both read back identical. The source was left as it was; {next}.",
            stack.name,
            stack.environment,
            crate::diag::plural(resources),
        ),
        serde_json::json!({
            "stack": stack.name,
            "environment": stack.environment,
            "from": from.to_string(),
            "to": to.to_string(),
            "lineage": lineage,
            "resources": resources,
            "serial": serial,
            "verified": true,
        }),
    );
    Ok(EXIT_OK)
}

fn copy(
    source: &dyn StateStore,
    dest: &mut dyn StateStore,
    force: bool,
    rt: &tokio::runtime::Runtime,
) -> Result<(), super::Failure> {
    let existing = dest.state();
    if !force && (dest.serial() > 0 || !existing.resources.is_empty()) {
        return Err(Diag::error(
            "state::migrate",
            format!(
                "the destination already holds state (serial {}, {} resource{})",
                dest.serial(),
                existing.resources.len(),
                crate::diag::plural(existing.resources.len())
            ),
        )
        .help("pass --force to overwrite it with this stack's state")
        .into());
    }
    rt.block_on(dest.replace(source.state().clone(), source.serial()))
        .map_err(|e: StateError| e.into())
}
