//! Virtual Machine Scale Sets (Microsoft.Compute, api-version 2024-07-01). As with Auto
//! Scaling groups, cairn adopts existing scale sets (their VM model: image, size, network,
//! extensions, stays where it is managed) and sets their capacity, `sku.capacity`; tags hold
//! the owner and what a scale set has no field for (min, max).
//!
//! An update is a conditional PATCH (`If-Match` with the ETag last read) and a long-running
//! operation: cairn waits for it (`Azure-AsyncOperation`, `Location`, or the scale set's
//! `provisioningState`, as ARM allows) up to `operation_timeout`. A PATCH whose outcome is
//! unknown is never re-sent blindly: the scale set is read again and the decision made again.

use std::time::Duration;

use azure_core::http::Method;
use futures_util::StreamExt;
use serde_json::{Map, Value, json};

use super::{AZURE, Answer, Azure, AzureError, Failure, MAX_CONFLICTS, OWNER_KEY, permanent};
use crate::model::{Attrs, Cloud, GroupAttrs};
use crate::provider::{Change, ChangeOp, ChangeResult, GroupRef, LiveResource, Scope};

const API_VERSION: &str = "2024-07-01";
/// Tags cairn writes on a scale set besides the owner.
const ADDRESS_TAG: &str = "cairn_address";
const MIN_TAG: &str = "cairn_min";
const MAX_TAG: &str = "cairn_max";
const INSTANCE_TYPE_TAG: &str = "cairn_instance_type";
const ENDPOINT_TAG: &str = "cairn_endpoint";
const CAIRN_TAGS: [&str; 6] = [
    OWNER_KEY,
    ADDRESS_TAG,
    MIN_TAG,
    MAX_TAG,
    INSTANCE_TYPE_TAG,
    ENDPOINT_TAG,
];
/// Scale set updates in flight at once (each waits for its operation).
const CONCURRENT_UPDATES: usize = 8;
/// Shortest pause between two polls, whatever `Retry-After` says.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Longest pause between two polls of an operation that names no `Retry-After`.
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(10);

/// What a scale set should carry: its capacity (if cairn sets it) and its whole tag set.
struct Wanted {
    capacity: Option<u64>,
    tags: Map<String, Value>,
}

impl Azure {
    fn scale_set_url(&self, name: &str) -> String {
        format!("{}/{name}?api-version={API_VERSION}", self.scale_sets_url)
    }

    /// Lists the resource group's scale sets (one request per page) and returns those the
    /// scope names, in the deployment's location.
    pub(super) async fn refresh_groups(
        &self,
        scope: &Scope,
    ) -> Result<Vec<LiveResource>, AzureError> {
        let wanted: Vec<&GroupRef> = scope
            .groups
            .iter()
            .filter(|g| g.cloud == Cloud::Azure)
            .collect();
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen = std::collections::HashMap::new();
        let mut next = Some(format!("{}?api-version={API_VERSION}", self.scale_sets_url));
        while let Some(url) = next {
            let page = self.get(&url).await?.unwrap_or(Value::Null);
            for set in page["value"].as_array().into_iter().flatten() {
                if let Some(name) = set["name"].as_str() {
                    seen.insert(name.to_lowercase(), set.clone());
                }
            }
            next = page["nextLink"].as_str().map(str::to_string);
        }
        let live = wanted
            .iter()
            .filter_map(|g| {
                let set = seen.get(&g.name.to_lowercase())?;
                same_location(set, &g.region).then(|| live_group(g, set))
            })
            .collect();
        *self.scale_sets.lock().expect("scale sets") = seen;
        Ok(live)
    }

    pub(super) async fn apply_groups(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        let updates: Vec<_> = changes.iter().map(|c| self.apply_group(c, owner)).collect();
        futures_util::stream::iter(updates)
            .buffered(CONCURRENT_UPDATES)
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
            .await
    }

    async fn apply_group(
        &self,
        change: &Change,
        owner: &str,
    ) -> Result<Option<LiveResource>, AzureError> {
        let (service, region) = parse_group(&change.address.name);
        let address = change.address.to_string();
        match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Group(g))) => {
                let gref = GroupRef::of(&change.address, g);
                let set = self
                    .converge(&gref.name, &g.region, owner, &|set| Wanted {
                        capacity: Some(u64::from(g.desired)),
                        tags: cairn_tags(set, owner, &address, Some(g)),
                    })
                    .await?
                    .ok_or_else(|| missing(&gref.name))?;
                Ok(Some(live_group(&gref, &set)))
            }
            (ChangeOp::Adopt { id }, _) => {
                let name = name_of(id, service);
                let set = self
                    .converge(name, region, owner, &|set| Wanted {
                        capacity: None,
                        tags: cairn_tags(set, owner, &address, None),
                    })
                    .await?
                    .ok_or_else(|| missing(name))?;
                let gref = GroupRef {
                    address: change.address.clone(),
                    cloud: Cloud::Azure,
                    region: region.to_string(),
                    name: name.to_string(),
                };
                Ok(Some(live_group(&gref, &set)))
            }
            // A scale set is released, never deleted: its VMs may serve other things, and
            // cairn did not make it. Its capacity stays as it is.
            (ChangeOp::Delete { id } | ChangeOp::Release { id }, _) => {
                let name = name_of(id, service);
                // Already gone: nothing to release.
                self.converge(name, region, owner, &|set| Wanted {
                    capacity: None,
                    tags: other_tags(set),
                })
                .await
                .map(|_| None)
            }
            _ => Err(permanent(format!("{}: not a group change", change.address))),
        }
    }

    /// Brings the scale set `name` to what `want` asks of it, conditional on its ETag: on a
    /// conflict or an unknown outcome it reads it again and decides again. Returns the scale
    /// set as it is afterwards (`None`: there is no such scale set).
    async fn converge(
        &self,
        name: &str,
        region: &str,
        owner: &str,
        want: &(dyn Fn(&Value) -> Wanted + Sync),
    ) -> Result<Option<Value>, AzureError> {
        let url = self.scale_set_url(name);
        let key = name.to_lowercase();
        let mut current = self
            .scale_sets
            .lock()
            .expect("scale sets")
            .get(&key)
            .cloned();
        let mut fresh = current.is_none();
        for _ in 0..MAX_CONFLICTS {
            if fresh {
                current = self.get(&url).await?;
            }
            let Some(set) = current.take() else {
                return Ok(None);
            };
            if !same_location(&set, region) {
                return Err(permanent(format!(
                    "scale set `{name}` is in {}, the deployment in {region}: set `group` on the deployment to a scale set in {region}",
                    set["location"].as_str().unwrap_or("another location")
                )));
            }
            if let Some(other) = set["tags"][OWNER_KEY].as_str()
                && other != owner
            {
                return Err(permanent(format!(
                    "scale set `{name}` is managed by another stack (owner {other})"
                )));
            }
            let wanted = want(&set);
            let capacity = set["sku"]["capacity"].as_u64();
            let tags = set["tags"].as_object().cloned().unwrap_or_default();
            if wanted.capacity.is_none_or(|c| Some(c) == capacity) && wanted.tags == tags {
                // Nothing to change; maybe our own update, whose outcome we did not learn, is
                // still running.
                let set = if provisioning(&set).is_some() {
                    self.wait(&url, None).await?
                } else {
                    set
                };
                return Ok(Some(set));
            }
            let mut body = json!({ "tags": wanted.tags });
            if let Some(c) = wanted.capacity.filter(|c| Some(*c) != capacity) {
                // The VM size is sent as it is, so that the update can only change the count.
                let mut sku = set["sku"].clone();
                sku["capacity"] = json!(c);
                body["sku"] = sku;
            }
            let condition: Vec<(&'static str, String)> = set["etag"]
                .as_str()
                .map(|e| ("if-match", e.to_string()))
                .into_iter()
                .collect();
            match self
                .call(false, Method::Patch, &url, &condition, Some(&body))
                .await
            {
                Ok(answer) => {
                    let set = self.wait(&url, Some(answer)).await?;
                    self.scale_sets
                        .lock()
                        .expect("scale sets")
                        .insert(key, set.clone());
                    return Ok(Some(set));
                }
                Err(e) if matches!(e.failure, Failure::Conflict | Failure::Ambiguous) => {
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(AzureError {
            failure: Failure::Permanent,
            status: 412,
            message: format!("scale set `{name}` kept changing under cairn's updates"),
            retry_after: None,
        })
    }

    /// Waits, up to `operation_timeout`, for the long-running operation `answer` started (or,
    /// without an answer, the one running on the scale set) to end, and returns the scale set
    /// as the update left it. A failed operation is an error with Azure's reason.
    async fn wait(&self, url: &str, answer: Option<Answer>) -> Result<Value, AzureError> {
        let deadline = tokio::time::Instant::now() + self.operation_timeout;
        let mut pause = self.poll_interval;
        let mut after = answer.as_ref().and_then(|a| a.retry_after);
        // ARM's three ways to follow an operation, in its order of preference: an operation
        // status resource, a location answering 202 until done, the resource's own state.
        let monitor = answer.as_ref().and_then(|a| {
            a.async_operation
                .clone()
                .map(|u| (u, true))
                .or_else(|| a.location.clone().map(|u| (u, false)))
        });
        if let Some((poll, _)) = &monitor
            && !poll.starts_with(&format!("{}/", self.origin))
        {
            return Err(permanent(format!(
                "Azure asked to poll {poll}, outside {}: refused (the request would carry the token)",
                self.origin
            )));
        }
        let mut set = answer.and_then(|a| a.body);
        if monitor.is_none()
            && let Some(s) = set.take_if(|s| provisioning(s).is_none())
        {
            return Ok(s);
        }
        loop {
            let done = match &monitor {
                Some((poll, status_resource)) => {
                    let a = self.call(true, Method::Get, poll, &[], None).await?;
                    after = a.retry_after;
                    let status = a.body.unwrap_or(Value::Null);
                    match (status_resource, status["status"].as_str()) {
                        (true, Some("Succeeded")) => true,
                        (true, Some(s @ ("Failed" | "Canceled"))) => {
                            return Err(permanent(format!(
                                "the update {}: {}",
                                s.to_lowercase(),
                                reason(&status["error"])
                            )));
                        }
                        (true, _) => false,
                        (false, _) => a.status != 202,
                    }
                }
                None => {
                    set = self.get(url).await?;
                    match set.as_ref().and_then(provisioning).as_deref() {
                        None => true,
                        Some(s @ ("Failed" | "Canceled")) => {
                            return Err(permanent(format!("the update ended {s}")));
                        }
                        Some(_) => false,
                    }
                }
            };
            if done {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(permanent(format!(
                    "the update was still running after {} (operation_timeout); the next run reads the scale set again",
                    humantime::format_duration(self.operation_timeout)
                )));
            }
            // A `Retry-After` of 0 would poll in a loop: a little pause all the same.
            let wait = after.take().map_or(pause, |a| a.max(MIN_POLL_INTERVAL));
            pause = (pause * 2).min(MAX_POLL_INTERVAL);
            tokio::time::sleep(wait.min(deadline - tokio::time::Instant::now())).await;
        }
        match set {
            Some(s) if monitor.is_none() => Ok(s),
            // A PATCH's final state is the resource's.
            _ => self
                .get(url)
                .await?
                .ok_or_else(|| permanent(format!("{url}: the scale set is gone"))),
        }
    }
}

fn missing(name: &str) -> AzureError {
    permanent(format!(
        "no scale set `{name}` in the resource group: cairn adopts existing scale sets; create it (image, VM size, network) first, or set `group` on the deployment to the name of one"
    ))
}

/// The scale set's provisioning state while an operation runs on it (`None` when it
/// `Succeeded`, or says nothing).
fn provisioning(set: &Value) -> Option<String> {
    set["properties"]["provisioningState"]
        .as_str()
        .filter(|s| *s != "Succeeded")
        .map(str::to_string)
}

fn reason(error: &Value) -> String {
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(c), Some(m)) => format!("{c}: {m}"),
        (Some(c), None) => c.to_string(),
        (None, Some(m)) => m.to_string(),
        (None, None) => "no reason given".to_string(),
    }
}

/// ARM locations are compared as Azure does: `West Europe` is `westeurope`.
fn same_location(set: &Value, region: &str) -> bool {
    let canon = |s: &str| s.replace(' ', "").to_lowercase();
    set["location"]
        .as_str()
        .is_some_and(|l| canon(l) == canon(region))
}

/// The tags not cairn's.
fn other_tags(set: &Value) -> Map<String, Value> {
    let mut tags = set["tags"].as_object().cloned().unwrap_or_default();
    for k in CAIRN_TAGS {
        tags.remove(k);
    }
    tags
}

/// The scale set's other tags, and cairn's: the owner, the address and, for a declared
/// group, what the scale set has no field for.
fn cairn_tags(
    set: &Value,
    owner: &str,
    address: &str,
    declared: Option<&GroupAttrs>,
) -> Map<String, Value> {
    let mut tags = match declared {
        Some(_) => other_tags(set),
        // Adopting keeps what is there (a declared min/max is written by the next apply).
        None => set["tags"].as_object().cloned().unwrap_or_default(),
    };
    tags.insert(OWNER_KEY.into(), json!(owner));
    tags.insert(ADDRESS_TAG.into(), json!(address));
    if let Some(g) = declared {
        tags.insert(MIN_TAG.into(), json!(g.min.to_string()));
        tags.insert(MAX_TAG.into(), json!(g.max.to_string()));
        if let Some(t) = &g.instance_type {
            tags.insert(INSTANCE_TYPE_TAG.into(), json!(t));
        }
        if let Some(e) = &g.endpoint {
            tags.insert(ENDPOINT_TAG.into(), json!(e));
        }
    }
    tags
}

/// `SERVICE@azure/REGION` → (SERVICE, REGION).
fn parse_group(name: &str) -> (&str, &str) {
    let (service, rest) = name.split_once('@').unwrap_or((name, ""));
    (service, rest.rsplit('/').next().unwrap_or_default())
}

/// A scale set's name from an import ID: its name or its ARM resource ID.
fn name_of<'a>(id: &'a str, default: &'a str) -> &'a str {
    match id.rsplit('/').next() {
        Some(n) if !n.is_empty() => n,
        _ => default,
    }
}

fn live_group(g: &GroupRef, set: &Value) -> LiveResource {
    let (service, _) = parse_group(&g.address.name);
    let tag = |k: &str| set["tags"][k].as_str().map(str::to_string);
    let capacity = set["sku"]["capacity"].as_u64().unwrap_or(0) as u32;
    // A scale set has no min and max of its own: cairn's tags hold them; one it never
    // managed reads as pinned at its capacity.
    let bound = |k: &str| tag(k).and_then(|v| v.parse().ok()).unwrap_or(capacity);
    let owner = tag(OWNER_KEY);
    LiveResource {
        provider: AZURE,
        id: set["id"].as_str().unwrap_or_default().to_string(),
        attrs: Attrs::Group(GroupAttrs {
            service: service.to_string(),
            cloud: Cloud::Azure,
            region: g.region.clone(),
            instance_type: tag(INSTANCE_TYPE_TAG),
            min: bound(MIN_TAG),
            max: bound(MAX_TAG),
            desired: capacity,
            endpoint: tag(ENDPOINT_TAG),
            group_name: (g.name != service).then(|| g.name.clone()),
            instances: None,
        }),
        adoptable: owner.is_none(),
        owner,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::Ordering;

    use super::*;
    use crate::model::Address;
    use crate::provider::Provider;
    use crate::provider::azure::tests::provider;
    use crate::testing::azure_compute::ScaleSet;
    use crate::testing::azure_dns::{AsyncHeader, AzureDnsFake, Faults, Options};
    use crate::testing::contract::Contract;

    fn fake(options: Options) -> AzureDnsFake {
        AzureDnsFake::start(
            Contract::azure_dns(),
            Options {
                page_size: 2,
                ..options
            },
        )
    }

    fn group(service: &str, min: u32, max: u32, desired: u32) -> GroupAttrs {
        GroupAttrs {
            service: service.into(),
            cloud: Cloud::Azure,
            region: "westeurope".into(),
            instance_type: None,
            min,
            max,
            desired,
            endpoint: None,
            group_name: None,
            instances: None,
        }
    }

    fn change(op: fn(Attrs) -> ChangeOp, g: &GroupAttrs) -> Change {
        Change {
            address: Address::group(&g.service, Cloud::Azure, &g.region),
            provider: AZURE,
            op: op(Attrs::Group(g.clone())),
        }
    }

    fn create(attrs: Attrs) -> ChangeOp {
        ChangeOp::Create { attrs }
    }

    fn scope(groups: &[&GroupAttrs]) -> Scope {
        Scope {
            zones: Vec::new(),
            groups: groups
                .iter()
                .map(|g| GroupRef::of(&Address::group(&g.service, Cloud::Azure, &g.region), g))
                .collect(),
        }
    }

    fn groups(live: &[LiveResource]) -> Vec<(GroupAttrs, Option<String>, bool)> {
        live.iter()
            .filter_map(|l| match &l.attrs {
                Attrs::Group(g) => Some((g.clone(), l.owner.clone(), l.adoptable)),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_scale_set_is_adopted_resized_and_tagged_whichever_way_its_update_is_followed() {
        for header in [
            AsyncHeader::AzureAsyncOperation,
            AsyncHeader::Location,
            AsyncHeader::None,
        ] {
            let fake = fake(Options {
                async_header: header,
                ..Options::default()
            });
            let mut existing = ScaleSet::new("api", "West Europe", 2);
            existing.tags.insert("team".into(), "web".into());
            fake.add_scale_set(existing);
            // Others in the resource group, listed over several pages, are not touched.
            for n in ["batch", "jobs", "web"] {
                fake.add_scale_set(ScaleSet::new(n, "westeurope", 1));
            }
            let azure = provider(&fake);
            let want = group("api", 1, 6, 4);

            let live = azure.refresh(&scope(&[&want])).await.unwrap();
            // Never managed: pinned at its capacity, adoptable.
            assert_eq!(
                groups(&live),
                [(group("api", 2, 2, 2), None, true)],
                "{header:?}"
            );

            let results = azure.apply(&[change(create, &want)], "lineage-1").await;
            assert!(results.iter().all(Result::is_ok), "{header:?}: {results:?}");
            let set = fake.scale_set("api").unwrap();
            assert_eq!(set.capacity, 4);
            assert_eq!(set.vm_size, "Standard_D2s_v3", "the VM size is left alone");
            let tags: BTreeMap<&str, &str> = set
                .tags
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                tags,
                BTreeMap::from([
                    ("cairn_address", "group.api@azure/westeurope"),
                    ("cairn_max", "6"),
                    ("cairn_min", "1"),
                    ("cairn_owner", "lineage-1"),
                    ("team", "web"),
                ])
            );
            assert_eq!(fake.capacity_history("api"), [4]);
            assert_eq!(fake.capacity_history("web"), Vec::<u64>::new());
            if header != AsyncHeader::None {
                assert!(fake.counts().operation_polls.load(Ordering::Relaxed) > 0);
            }

            let live = azure.refresh(&scope(&[&want])).await.unwrap();
            assert_eq!(
                groups(&live),
                [(want.clone(), Some("lineage-1".into()), false)]
            );
            assert!(fake.violations().is_empty(), "{:?}", fake.violations());
        }
    }

    #[tokio::test]
    async fn another_stacks_a_missing_or_a_distant_scale_set_is_refused_untouched() {
        let fake = fake(Options::default());
        let mut theirs = ScaleSet::new("api", "westeurope", 2);
        theirs
            .tags
            .insert(OWNER_KEY.into(), "another-lineage".into());
        fake.add_scale_set(theirs);
        fake.add_scale_set(ScaleSet::new("web", "northeurope", 2));
        let azure = provider(&fake);
        let errors: Vec<String> = azure
            .apply(
                &[
                    change(create, &group("api", 1, 3, 3)),
                    change(create, &group("web", 1, 3, 3)),
                    change(create, &group("jobs", 1, 3, 3)),
                ],
                "lineage-1",
            )
            .await
            .into_iter()
            .map(|r| r.unwrap_err())
            .collect();
        assert_eq!(
            errors,
            [
                "scale set `api` is managed by another stack (owner another-lineage)",
                "scale set `web` is in northeurope, the deployment in westeurope: set `group` on the deployment to a scale set in westeurope",
                "no scale set `jobs` in the resource group: cairn adopts existing scale sets; create it (image, VM size, network) first, or set `group` on the deployment to the name of one",
            ]
        );
        assert_eq!(fake.counts().scale_set_updates.load(Ordering::Relaxed), 0);
        // Seen from a refresh, the distant one is not the deployment's.
        let live = azure
            .refresh(&scope(&[&group("web", 1, 3, 3)]))
            .await
            .unwrap();
        assert!(live.is_empty(), "{live:?}");
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn updates_converge_through_faults_and_never_change_a_scale_set_twice() {
        let fake = fake(Options {
            faults: Faults {
                throttle: 0.15,
                retry_after_secs: 0,
                server_error: 0.15,
                reset: 0.1,
                stale_etag: 0.2,
            },
            seed: 11,
            ..Options::default()
        });
        let names: Vec<String> = (0..12).map(|i| format!("s{i}")).collect();
        for n in &names {
            fake.add_scale_set(ScaleSet::new(n, "westeurope", 1));
        }
        let azure = provider(&fake);
        let wanted: Vec<GroupAttrs> = names.iter().map(|n| group(n, 1, 9, 5)).collect();
        let refs: Vec<&GroupAttrs> = wanted.iter().collect();
        // The refresh itself meets faults: reads are retried.
        azure.refresh(&scope(&refs)).await.unwrap();
        // A scale set that meets five failed writes in a row is left to the next run, as
        // `cairn apply` does; three runs at most.
        let mut pending: Vec<Change> = wanted.iter().map(|g| change(create, g)).collect();
        for _ in 0..3 {
            let results = azure.apply(&pending, "lineage-1").await;
            let mut again = Vec::new();
            for (c, r) in pending.iter().zip(&results) {
                if let Err(e) = r {
                    assert!(e.ends_with("kept changing under cairn's updates"), "{e}");
                    again.push(c.clone());
                }
            }
            pending = again;
        }
        assert!(pending.is_empty(), "{pending:?}");
        for n in &names {
            assert_eq!(fake.capacity_history(n), [5], "{n} was changed once");
        }
        let c = fake.counts();
        for (what, n) in [
            ("throttled", &c.throttled),
            ("server errors", &c.server_errors),
            ("resets", &c.resets),
            ("stale etags", &c.stale_etags),
        ] {
            assert!(n.load(Ordering::Relaxed) > 0, "no {what}");
        }
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }

    #[tokio::test]
    async fn a_failed_update_is_reported_and_a_slow_one_times_out() {
        let fake = fake(Options {
            operation_time: Duration::from_secs(30),
            ..Options::default()
        });
        fake.add_scale_set(ScaleSet::new("api", "westeurope", 2));
        let mut azure = provider(&fake);
        azure.operation_timeout = Duration::from_millis(200);
        let started = std::time::Instant::now();
        let results = azure
            .apply(&[change(create, &group("api", 1, 5, 5))], "lineage-1")
            .await;
        assert_eq!(
            results[0].as_ref().unwrap_err(),
            "the update was still running after 200ms (operation_timeout); the next run reads the scale set again"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let fake_fast = fake_with_failure();
        let azure = provider(&fake_fast);
        let results = azure
            .apply(&[change(create, &group("web", 1, 5, 5))], "lineage-1")
            .await;
        assert_eq!(
            results[0].as_ref().unwrap_err(),
            "the update failed: AllocationFailed: Allocation failed. We do not have sufficient capacity for the requested VM size in this region."
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
        assert!(
            fake_fast.violations().is_empty(),
            "{:?}",
            fake_fast.violations()
        );
    }

    fn fake_with_failure() -> AzureDnsFake {
        let fake = fake(Options::default());
        fake.add_scale_set(ScaleSet::new("web", "westeurope", 2));
        fake.fail_next_operation(
            "web",
            "AllocationFailed",
            "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.",
        );
        fake
    }

    #[tokio::test]
    async fn a_released_scale_set_keeps_its_capacity_and_other_tags() {
        let fake = fake(Options::default());
        let mut set = ScaleSet::new("api", "westeurope", 2);
        set.tags.insert("team".into(), "web".into());
        fake.add_scale_set(set);
        let azure = provider(&fake);
        let g = group("api", 1, 5, 3);
        assert!(azure.apply(&[change(create, &g)], "l").await[0].is_ok());
        let release = Change {
            address: Address::group("api", Cloud::Azure, "westeurope"),
            provider: AZURE,
            op: ChangeOp::Delete {
                id: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/api".into(),
            },
        };
        let results = azure.apply(&[release], "l").await;
        assert!(
            results[0].as_ref().is_ok_and(Option::is_none),
            "{results:?}"
        );
        let set = fake.scale_set("api").unwrap();
        assert_eq!(set.capacity, 3);
        assert_eq!(
            set.tags,
            BTreeMap::from([("team".to_string(), "web".to_string())])
        );
        assert!(fake.violations().is_empty(), "{:?}", fake.violations());
    }
}
