//! Applying a plan: walk the changes in dependency order (deletions in reverse), send them to
//! providers in batches with bounded parallelism, and persist every completed change as it
//! completes. A failure skips what depends on it; independent branches go on; the state
//! reached is returned and every failure reported at the end.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use tokio::task::JoinSet;

use crate::model::{Address, ProviderKind};
use crate::plan::{Action, Plan, PlannedChange, StateFix};
use crate::provider::{Change, ChangeOp, ChangeResult, Provider};
use crate::state::{StateError, StateOp, StateResource, StateStore};

/// The providers a plan uses, by implementation.
#[derive(Clone, Default)]
pub struct ProviderSet {
    pub by_kind: BTreeMap<ProviderKind, Arc<dyn Provider>>,
}

impl ProviderSet {
    pub fn get(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.by_kind.get(&kind)
    }
    /// API calls made so far, per provider (`sandbox`, `aws`, ...).
    pub fn api_calls(&self) -> BTreeMap<String, u64> {
        self.by_kind
            .iter()
            .map(|(k, p)| (format!("{k:?}").to_lowercase(), p.api_calls()))
            .collect()
    }
}

/// Told about progress as changes complete.
pub trait Progress: Send + Sync {
    fn start(&self, total: usize);
    fn done(&self, change: &PlannedChange, result: &Result<(), String>);
    fn finish(&self);
}

#[derive(Debug, Default, Serialize)]
pub struct Outcome {
    pub applied: Vec<Applied>,
    pub failed: Vec<Failed>,
    pub skipped: Vec<Failed>,
    /// The provider returned something other than what was planned (reported, not fatal).
    pub inconsistent: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Applied {
    pub address: Address,
    pub action: Action,
}

#[derive(Debug, Serialize)]
pub struct Failed {
    pub address: Address,
    pub action: Action,
    pub error: String,
}

impl Outcome {
    pub fn count(&self, action: Action) -> usize {
        self.applied.iter().filter(|a| a.action == action).count()
    }
}

pub async fn apply(
    plan: &Plan,
    providers: &ProviderSet,
    state: &mut dyn StateStore,
    parallelism: usize,
    progress: &dyn Progress,
) -> Result<Outcome, StateError> {
    if state.state().lineage.is_empty() {
        state
            .write(vec![StateOp::Init {
                lineage: plan.lineage.clone(),
            }])
            .await?;
    }
    let fixes: Vec<StateOp> = plan
        .state_fixes
        .iter()
        .map(|f| match f {
            StateFix::Record {
                address, resource, ..
            } => StateOp::Put {
                address: address.clone(),
                resource: resource.clone(),
            },
            StateFix::Forget { address, .. } => StateOp::Remove {
                address: address.clone(),
            },
        })
        .collect();
    state.write(fixes).await?;
    // Intents left by an interrupted apply were accounted for by this plan.
    if !state.state().pending.is_empty() {
        state.write(vec![StateOp::ClearPending]).await?;
    }

    let changes = &plan.changes;
    let order = Order::new(changes);
    let mut indegree = order.indegree.clone();
    let mut ready: VecDeque<usize> = (0..changes.len()).filter(|i| indegree[*i] == 0).collect();
    let mut blocked = vec![false; changes.len()];
    let mut outcome = Outcome::default();
    let mut inflight: JoinSet<(Vec<usize>, Vec<ChangeResult>)> = JoinSet::new();
    progress.start(changes.len());

    loop {
        // Group what is ready into batches per provider and batch key, then launch.
        let mut groups: BTreeMap<(ProviderKind, String), Vec<usize>> = BTreeMap::new();
        let mut unavailable = Vec::new();
        while let Some(i) = ready.pop_front() {
            match providers.get(changes[i].provider.kind) {
                Some(p) => groups
                    .entry((
                        changes[i].provider.kind,
                        p.batch_key(&to_change(&changes[i])),
                    ))
                    .or_default()
                    .push(i),
                None => unavailable.push(i),
            }
        }
        for i in unavailable {
            let err = format!("provider {} is not available", changes[i].provider);
            fail(
                i,
                err,
                changes,
                &order,
                &mut blocked,
                &mut outcome,
                progress,
            );
        }
        let mut queued: VecDeque<(ProviderKind, Vec<usize>)> = VecDeque::new();
        for ((kind, _), idx) in groups {
            let max = providers.get(kind).map_or(1, |p| p.max_batch().max(1));
            for chunk in idx.chunks(max) {
                queued.push_back((kind, chunk.to_vec()));
            }
        }
        while let Some((kind, idx)) = queued.pop_front() {
            if inflight.len() >= parallelism.max(1) {
                // Not launched now: back to ready, to be regrouped when a slot frees.
                ready.extend(idx);
                ready.extend(queued.drain(..).flat_map(|(_, i)| i));
                break;
            }
            let provider = providers
                .get(kind)
                .expect("grouped by available providers")
                .clone();
            let batch: Vec<Change> = idx.iter().map(|i| to_change(&changes[*i])).collect();
            // Write-ahead: what this batch creates or changes, before the cloud sees it.
            let intents: Vec<(Address, crate::model::Attrs)> = idx
                .iter()
                .filter_map(|i| Some((changes[*i].address.clone(), changes[*i].after.clone()?)))
                .collect();
            if intents.is_empty() {
                // Deletes write no intent, whose fencing check would stop a replica paused
                // past its lease: they confirm the lease instead.
                state.confirm_fence().await?;
            } else {
                state
                    .write(vec![StateOp::Intend { changes: intents }])
                    .await?;
            }
            let owner = plan.lineage.clone();
            inflight.spawn(async move {
                let results = provider.apply(&batch, &owner).await;
                (idx, results)
            });
        }
        let Some(joined) = inflight.join_next().await else {
            break;
        };
        let (idx, results) = joined.expect("apply task panicked");
        let mut ops = Vec::new();
        let mut done = Vec::new();
        for (n, i) in idx.into_iter().enumerate() {
            let c = &changes[i];
            let result = results
                .get(n)
                .cloned()
                .unwrap_or_else(|| Err("provider returned no result".into()));
            match result {
                Ok(live) => {
                    match (&live, c.action) {
                        (Some(l), _) => {
                            if c.after
                                .as_ref()
                                .is_some_and(|a| a.with_observed(&l.attrs) != l.attrs)
                            {
                                outcome.inconsistent.push(format!(
                                    "{}: provider returned attributes other than planned",
                                    c.address
                                ));
                            }
                            ops.push(StateOp::Put {
                                address: c.address.clone(),
                                resource: Box::new(StateResource {
                                    provider: l.provider,
                                    id: l.id.clone(),
                                    attrs: l.attrs.clone(),
                                    depends_on: c.depends_on.clone(),
                                    protected: c.protected,
                                }),
                            });
                        }
                        (None, Action::Delete) => ops.push(StateOp::Remove {
                            address: c.address.clone(),
                        }),
                        (None, _) => outcome
                            .inconsistent
                            .push(format!("{}: provider returned no resource", c.address)),
                    }
                    done.push(i);
                }
                Err(e) => fail(i, e, changes, &order, &mut blocked, &mut outcome, progress),
            }
        }
        // Persist before releasing dependents: what is recorded is what completed.
        state.write(ops).await?;
        for i in done {
            outcome.applied.push(Applied {
                address: changes[i].address.clone(),
                action: changes[i].action,
            });
            progress.done(&changes[i], &Ok(()));
            for &next in &order.dependents[i] {
                indegree[next] -= 1;
                if indegree[next] == 0 && !blocked[next] {
                    ready.push_back(next);
                }
            }
        }
    }
    progress.finish();
    state.compact().await?;
    Ok(outcome)
}

fn fail(
    i: usize,
    error: String,
    changes: &[PlannedChange],
    order: &Order,
    blocked: &mut [bool],
    outcome: &mut Outcome,
    progress: &dyn Progress,
) {
    let err = Err(error.clone());
    progress.done(&changes[i], &err);
    outcome.failed.push(Failed {
        address: changes[i].address.clone(),
        action: changes[i].action,
        error,
    });
    let mut stack = order.dependents[i].clone();
    while let Some(j) = stack.pop() {
        if !blocked[j] {
            blocked[j] = true;
            let reason = format!("skipped: depends on {}, which failed", changes[i].address);
            progress.done(&changes[j], &Err(reason.clone()));
            outcome.skipped.push(Failed {
                address: changes[j].address.clone(),
                action: changes[j].action,
                error: reason,
            });
            stack.extend(order.dependents[j].iter().copied());
        }
    }
}

/// The change graph: creates and updates after their dependencies, deletes before theirs.
struct Order {
    dependents: Vec<Vec<usize>>,
    indegree: Vec<usize>,
}

impl Order {
    fn new(changes: &[PlannedChange]) -> Order {
        let index: HashMap<&Address, usize> = changes
            .iter()
            .enumerate()
            .map(|(i, c)| (&c.address, i))
            .collect();
        let mut dependents = vec![Vec::new(); changes.len()];
        let mut indegree = vec![0; changes.len()];
        for (i, c) in changes.iter().enumerate() {
            for dep in &c.depends_on {
                let Some(&j) = index.get(dep) else { continue };
                let (first, then) = match (c.action, changes[j].action) {
                    (Action::Delete, Action::Delete) => (i, j),
                    (Action::Delete, _) | (_, Action::Delete) => continue,
                    _ => (j, i),
                };
                dependents[first].push(then);
                indegree[then] += 1;
            }
        }
        Order {
            dependents,
            indegree,
        }
    }
}

fn to_change(c: &PlannedChange) -> Change {
    let id = c.id.clone().unwrap_or_default();
    let op = match (c.action, &c.after) {
        (Action::Create, Some(a)) => ChangeOp::Create { attrs: a.clone() },
        (Action::Update, Some(a)) => ChangeOp::Update {
            id,
            attrs: a.clone(),
        },
        (Action::Replace, Some(a)) => ChangeOp::Replace {
            id,
            attrs: a.clone(),
        },
        _ => ChangeOp::Delete { id },
    };
    Change {
        address: c.address.clone(),
        provider: c.provider,
        op,
    }
}
