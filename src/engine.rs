//! The planning half of the pipeline, shared by the commands and the daemon: where a stack's
//! state is, which providers serve it, and lock → refresh → plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::ProviderSet;
use crate::config::{Backend, Stack};
use crate::diag::Diag;
use crate::model::{Address, Attrs, Cloud, ProviderKind, RecordType, Routing};
use crate::plan::{self, Filter, Plan, Target};
use crate::provider::sandbox::Sandbox;
use crate::provider::{GroupRef, LiveResource, Provider, Scope};
use crate::state::{self, LocalState, Location, LockError, LockHolder, StateError, StateStore};

/// A state error as the user should read it: a held lock names its holder.
pub fn state_error(e: &StateError) -> Diag {
    if let StateError::Fenced { .. } = e {
        return Diag::error("state::fenced", e.to_string())
            .help("this replica lost its lease; the replica that holds it now applies instead");
    }
    if let StateError::Postgres(_) = e {
        return Diag::error("state::postgres", e.to_string()).help(
            "check [backend] url (or CAIRN_PG_URL) and that the database is reachable; what completed before the error is in the state",
        );
    }
    match e {
        StateError::Lock(LockError::Held { holder, waited }) => {
            let d = Diag::error("state::locked", format!("the state is locked by {holder}"));
            match waited {
                Some(w) => d.help(format!(
                    "waited {}; try again when it finishes",
                    humantime::format_duration(*w)
                )),
                None => d.help("wait for it to finish, or pass --lock-timeout 5m to wait"),
            }
        }
        _ => Diag::error("state::error", e.to_string()),
    }
}

/// The directory of the stack's local files: the state itself with the local backend, and
/// beside it the audit log and the daemon's failovers in force (kept locally with either).
pub fn state_dir(stack: &Stack) -> Result<PathBuf, Diag> {
    match &stack.backend {
        Backend::Local { dir } | Backend::Postgres { dir, .. } => {
            Ok(LocalState::dir_for(dir, &stack.environment))
        }
    }
}

/// Where the stack's state is.
pub fn location(stack: &Stack) -> Location {
    match &stack.backend {
        Backend::Local { dir } => Location::Local {
            dir: absolute(&LocalState::dir_for(dir, &stack.environment)),
        },
        Backend::Postgres { db, .. } => Location::Postgres {
            db: db.clone(),
            stack: stack.name.clone(),
            environment: stack.environment.clone(),
        },
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn target_of(stack: &Stack) -> Result<Target, Diag> {
    Ok(Target {
        stack_dir: absolute(&stack.dir),
        state_dir: absolute(&state_dir(stack)?),
        state: match location(stack) {
            Location::Local { .. } => None,
            pg => Some(pg),
        },
        sandbox_dir: absolute(&stack.providers.sandbox_dir),
        clouds: Cloud::ALL
            .iter()
            .map(|c| (*c, stack.providers.for_cloud(*c).kind))
            .collect(),
        scope: scope_of(stack),
        aws: stack.providers.aws.clone(),
        azure: stack.providers.azure.clone(),
        gcp: stack.providers.gcp.clone(),
    })
}

/// The providers serving the target's clouds: the sandbox, and AWS, Azure and Google Cloud
/// where configured.
pub async fn providers(target: &Target) -> Result<ProviderSet, Diag> {
    let served_by = |kind| {
        target
            .clouds
            .iter()
            .filter(move |(_, k)| **k == kind)
            .map(|(c, _)| *c)
    };
    let sandbox =
        Sandbox::open(&target.sandbox_dir, served_by(ProviderKind::Sandbox)).map_err(|e| {
            Diag::error(
                "provider::sandbox",
                format!(
                    "cannot open the sandbox at `{}`: {e}",
                    target.sandbox_dir.display()
                ),
            )
        })?;
    let mut set = ProviderSet::default();
    set.by_kind.insert(
        ProviderKind::Sandbox,
        Arc::new(sandbox) as Arc<dyn Provider>,
    );
    if let Some(aws) = &target.aws {
        let provider = crate::provider::aws::Aws::new(aws).await;
        set.by_kind
            .insert(ProviderKind::Aws, Arc::new(provider) as Arc<dyn Provider>);
    }
    if let Some(azure) = &target.azure {
        let provider = crate::provider::azure::Azure::new(azure)
            .map_err(|e| Diag::error("provider::azure", e))?;
        set.by_kind
            .insert(ProviderKind::Azure, Arc::new(provider) as Arc<dyn Provider>);
    }
    if let Some(gcp) = &target.gcp {
        let provider =
            crate::provider::gcp::Gcp::new(gcp).map_err(|e| Diag::error("provider::gcp", e))?;
        set.by_kind
            .insert(ProviderKind::Gcp, Arc::new(provider) as Arc<dyn Provider>);
    }
    Ok(set)
}

/// Refuses, before anything is locked or written, a stack whose resources need a provider
/// this version cannot serve, or that two deployments would manage one Azure scale set.
pub fn check_providers(stack: &Stack) -> Result<(), Diag> {
    // Scale set names are unique in a resource group, not per region as ASG names are.
    let mut scale_sets: std::collections::HashMap<String, &Address> = Default::default();
    for r in &stack.resources {
        if let (ProviderKind::Azure, Attrs::Group(g)) = (r.provider.kind, &r.attrs)
            && let Some(first) = scale_sets.insert(g.group_name().to_lowercase(), &r.address)
        {
            let group = stack
                .providers
                .azure
                .as_ref()
                .map_or("", |a| a.resource_group.as_str());
            return Err(Diag::error(
                "provider::scale_set_shared",
                format!(
                    "{first} and {} would both manage the scale set `{}` in resource group `{group}`",
                    r.address,
                    g.group_name()
                ),
            )
            .at(r.origin.clone(), "the second deployment")
            .help("set `group` on one of them to the name of its own scale set"));
        }
    }
    for r in &stack.resources {
        let refusal = match r.provider.kind {
            ProviderKind::Sandbox | ProviderKind::Aws | ProviderKind::Azure => None,
            ProviderKind::Gcp => gcp_refusal(&r.attrs),
        };
        if let Some((message, help)) = refusal {
            return Err(Diag::error("provider::unavailable", message)
                .at(r.origin.clone(), format!("{} needs it", r.address))
                .help(help));
        }
    }
    Ok(())
}

/// What Cloud DNS cannot serve of a record, and what to do instead.
fn gcp_refusal(attrs: &Attrs) -> Option<(&'static str, &'static str)> {
    let Attrs::Record(r) = attrs else {
        return None;
    };
    let ips = matches!(r.rtype, RecordType::A | RecordType::AAAA);
    match (&r.routing, &r.health_check) {
        (Routing::Latency { .. } | Routing::Multivalue { .. }, _) => Some((
            "Cloud DNS has no latency or multivalue routing",
            "use `geolocation` with Google Cloud regions as locations (Cloud DNS answers from \
             the region nearest the client), `weighted` or `failover`",
        )),
        (Routing::Failover { .. }, None) => Some((
            "Cloud DNS failover routing health-checks the primary: it needs a `health_check`",
            "add health_check = { protocol = \"https\", path = \"/healthz\" }",
        )),
        (Routing::Simple { .. }, Some(_)) => Some((
            "Cloud DNS health-checks routed records only",
            "remove the health_check, or give the record `weighted`, `geolocation` or \
             `failover` routing",
        )),
        (_, Some(_)) if !ips => Some((
            "Cloud DNS health-checks IP addresses only: a record with a health_check must be \
             A or AAAA",
            "remove the health_check",
        )),
        _ => None,
    }
}

pub async fn refresh(providers: &ProviderSet, scope: &Scope) -> Result<Vec<LiveResource>, Diag> {
    let mut live = Vec::new();
    for (kind, p) in &providers.by_kind {
        let mut part = p.refresh(scope).await.map_err(|e| {
            Diag::error(
                "provider::refresh",
                format!("refreshing {kind} failed: {e}"),
            )
        })?;
        live.append(&mut part);
    }
    Ok(live)
}

pub fn scope_of(stack: &Stack) -> Scope {
    let mut scope = Scope::default();
    for r in &stack.resources {
        match &r.attrs {
            Attrs::Zone(z) => scope.zones.push((r.provider.cloud, z.name.clone())),
            Attrs::Group(g) => scope.groups.push(GroupRef::of(&r.address, g)),
            Attrs::Record(_) => {}
        }
    }
    scope
}

/// Everything plan and apply share: the plan, the locked state, the providers.
pub struct Planned {
    pub plan: Plan,
    pub state: Box<dyn StateStore>,
    pub providers: ProviderSet,
    /// The holder of the previous lock, when its run was interrupted.
    pub interrupted: Option<LockHolder>,
}

/// What to plan.
pub struct PlanRequest<'a> {
    pub stack: &'a Stack,
    pub filter: &'a Filter,
    pub lock_timeout: Duration,
    pub destroy: bool,
    /// Who takes the lock, e.g. `cairn apply`.
    pub command: &'a str,
    /// The fencing token an enforce replica writes under (postgres backend).
    pub fence: Option<i64>,
}

/// Takes the state lock, refreshes the providers (while the state is read) and plans.
pub async fn plan(req: PlanRequest<'_>) -> Result<Planned, Vec<Diag>> {
    let PlanRequest {
        stack,
        filter,
        lock_timeout,
        destroy,
        command,
        fence,
    } = req;
    // Checks that need no lock come first, so a refusal leaves nothing behind.
    for pattern in filter.targets.iter().chain(&filter.excludes) {
        if pattern.trim_end_matches('*').parse::<Address>().is_err() && !pattern.ends_with('*') {
            return Err(vec![
                Diag::error("cli::address", format!("`{pattern}` is not an address")).help(
                    "addresses look like zone.NAME, record.ZONE/NAME/TYPE, group.SERVICE@CLOUD/REGION",
                ),
            ]);
        }
    }
    check_providers(stack).map_err(|d| vec![d])?;
    let mut target = target_of(stack).map_err(|d| vec![d])?;
    // The lock comes first; then the state is read while the providers refresh.
    let state = state::open_locked(
        &target.location(),
        state::Open {
            command,
            lock_timeout,
            fence,
        },
    )
    .await
    .map_err(|e| vec![state_error(&e)])?;
    let refreshed = async {
        let p = providers(&target).await?;
        let live = refresh(&p, &target.scope).await?;
        Ok::<_, Diag>((p, live))
    }
    .await;
    let (providers, mut live) = match refreshed {
        Ok(r) => r,
        Err(d) => {
            state.unlock().await;
            return Err(vec![d]);
        }
    };
    let interrupted = state.interrupted().cloned();
    // Zones and groups only the state still mentions (removed from the config) are listed
    // too, or their resources could not be found to delete.
    let extra = target.scope.missing_from(state.state());
    if !extra.is_empty() {
        live.extend(refresh(&providers, &extra).await.map_err(|d| vec![d])?);
        let mut seen = std::collections::HashSet::new();
        live.retain(|l| seen.insert((l.provider, l.id.clone())));
        target.scope.extend(extra);
    }
    let plan = plan::plan(plan::PlanInput {
        stack,
        live: &live,
        state: state.state(),
        state_serial: state.serial(),
        destroy,
        filter,
        target,
    });
    let plan = match plan {
        Ok(p) => p,
        Err(d) => {
            state.unlock().await;
            return Err(d);
        }
    };
    Ok(Planned {
        plan,
        state,
        providers,
        interrupted,
    })
}
