//! The planning half of the pipeline, shared by the commands and the daemon: where a stack's
//! state is, which providers serve it, and lock → refresh → plan.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::apply::ProviderSet;
use crate::config::{Backend, Stack};
use crate::diag::Diag;
use crate::model::{Address, Attrs, Cloud, ProviderKind, RecordType, ResourceKind, Routing};
use crate::plan::{self, Filter, Plan, Target};
use crate::provider::sandbox::Sandbox;
use crate::provider::{GroupRef, LiveResource, Provider, Scope};
use crate::state::{LocalState, LockError, LockHolder, StateError};

/// A state error as the user should read it: a held lock names its holder.
pub fn state_error(e: &StateError) -> Diag {
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

pub fn state_dir(stack: &Stack) -> Result<PathBuf, Diag> {
    match &stack.backend {
        Backend::Local { dir } => Ok(LocalState::dir_for(dir, &stack.environment)),
        Backend::Postgres { .. } => Err(Diag::error(
            "state::backend",
            "the postgres backend is not available in this version of cairn",
        )
        .help("use [backend] kind = \"local\" (the default) for now")),
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

pub fn target_of(stack: &Stack) -> Result<Target, Diag> {
    Ok(Target {
        stack_dir: absolute(&stack.dir),
        state_dir: absolute(&state_dir(stack)?),
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
/// this version cannot serve.
pub fn check_providers(stack: &Stack) -> Result<(), Diag> {
    for r in &stack.resources {
        let refusal = match (r.provider.kind, r.address.kind) {
            (ProviderKind::Sandbox | ProviderKind::Aws, _) => None,
            // Azure DNS is served; scale sets are not yet.
            (ProviderKind::Azure, ResourceKind::Zone | ResourceKind::Record) => None,
            (ProviderKind::Azure, ResourceKind::Group) => Some((
                "Azure scale sets are not available in this version of cairn (Azure DNS is)",
                "remove [provider.azure] to run this deployment's group on the embedded sandbox, \
                 or declare the deployment on another cloud",
            )),
            (ProviderKind::Gcp, _) => gcp_refusal(&r.attrs),
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
                format!("refreshing {kind:?} failed: {e}"),
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
    pub state: LocalState,
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
}

/// Takes the state lock, refreshes the providers (while the state is read) and plans.
pub async fn plan(req: PlanRequest<'_>) -> Result<Planned, Vec<Diag>> {
    let PlanRequest {
        stack,
        filter,
        lock_timeout,
        destroy,
        command,
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
    let (dir, command) = (target.state_dir.clone(), command.to_string());
    // Locking may wait and reading is file I/O: both off the async workers. The lock comes
    // first; then the state is read while the providers refresh.
    let lock = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || LocalState::lock(&dir, &command, lock_timeout))
            .await
            .expect("the state locker panicked")
            .map_err(|e| vec![state_error(&e)])?
    };
    let state = tokio::task::spawn_blocking(move || LocalState::open_with(&dir, lock));
    let refreshed = async {
        let p = providers(&target).await?;
        let live = refresh(&p, &target.scope).await?;
        Ok::<_, Diag>((p, live))
    }
    .await;
    let state = state
        .await
        .expect("the state reader panicked")
        .map_err(|e| vec![state_error(&e)])?;
    let (providers, mut live) = refreshed.map_err(|d| vec![d])?;
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
    })?;
    Ok(Planned {
        plan,
        state,
        providers,
        interrupted,
    })
}
