//! `cairn state ...` and `cairn import`: inspect and edit recorded state, adopt live resources.

use super::args::{ImportArgs, StackArgs, StateCommand};
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, load, providers, refresh, runtime, state_dir, target_of};
use crate::diag::Diag;
use crate::model::Address;
use crate::provider::{Change, ChangeOp};
use crate::state::{LocalState, LockStatus, StateLock, StateOp, StateResource};

pub fn run(c: StateCommand, ui: &Ui) -> CmdResult {
    match c {
        StateCommand::List(a) => {
            let (stack, _) = load(&a, ui)?;
            let st = LocalState::open_read(&state_dir(&stack)?)?;
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
            let st = LocalState::open_read(&state_dir(&stack)?)?;
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
            let mut state =
                LocalState::open_locked(&target.state_dir, "cairn state rm", lock.lock_timeout)?;
            let rt = runtime();
            let providers = providers(&target, &rt)?;
            let mut removed = Vec::new();
            for a in &addresses {
                let addr: Address = a
                    .parse()
                    .map_err(|e: String| Diag::error("cli::address", e))?;
                let r = state.state().resources.get(&addr).cloned().ok_or_else(|| {
                    Diag::error("state::missing", format!("{addr} is not in state"))
                })?;
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
                state.write(vec![StateOp::Remove {
                    address: addr.clone(),
                }])?;
                removed.push(addr);
            }
            state.compact()?;
            super::audit::record(
                &stack,
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
        StateCommand::Unlock(a) => {
            let (stack, _) = load(&a, ui)?;
            let dir = state_dir(&stack)?;
            let io = |e: std::io::Error| Diag::error("state::error", e.to_string());
            match StateLock::status(&dir).map_err(io)? {
                LockStatus::Free => {
                    ui.message(
                        "The state is not locked.",
                        serde_json::json!({ "locked": false }),
                    );
                    Ok(EXIT_OK)
                }
                LockStatus::Stale(_) => {
                    let h = StateLock::clear_stale(&dir).map_err(io)?;
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
                LockStatus::HeldUnknown => Err(Diag::error(
                    "state::locked",
                    "the state is locked by another process",
                )
                .into()),
            }
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
    let mut state =
        LocalState::open_locked(&target.state_dir, "cairn import", a.lock.lock_timeout)?;
    if state.state().resources.contains_key(&addr) {
        return Err(Diag::error("import::exists", format!("{addr} is already in state")).into());
    }
    let rt = runtime();
    let providers = providers(&target, &rt)?;
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
        state.write(vec![StateOp::Init {
            lineage: uuid::Uuid::new_v4().to_string(),
        }])?;
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
    state.write(vec![StateOp::Put {
        address: addr.clone(),
        resource: Box::new(StateResource {
            provider: live.provider,
            id: live.id.clone(),
            attrs,
            depends_on,
            protected: false,
        }),
    }])?;
    state.compact()?;
    super::audit::record(
        &stack,
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
