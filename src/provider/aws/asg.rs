//! Auto Scaling groups. cairn adopts existing groups (their launch templates, subnets and
//! load balancers stay where they are managed) and sets their capacity; tags record the
//! owner and the attributes the group API does not hold.

use aws_sdk_autoscaling::types::Tag;

use super::{ADDRESS_TAG, Aws, AwsError, Failure, OWNER_TAG};
use crate::model::{Attrs, Cloud, GroupAttrs, ProviderKind, ProviderRef};
use crate::provider::{Change, ChangeOp, ChangeResult, GroupRef, LiveResource, Scope};

const INSTANCE_TYPE_TAG: &str = "cairn:instance-type";
const ENDPOINT_TAG: &str = "cairn:endpoint";
const AWS: ProviderRef = ProviderRef {
    kind: ProviderKind::Aws,
    cloud: Cloud::Aws,
};

impl Aws {
    pub(super) async fn refresh_groups(
        &self,
        scope: &Scope,
    ) -> Result<Vec<LiveResource>, AwsError> {
        let mut by_region: std::collections::BTreeMap<&str, Vec<&GroupRef>> = Default::default();
        for g in scope.groups.iter().filter(|g| g.cloud == Cloud::Aws) {
            by_region.entry(&g.region).or_default().push(g);
        }
        let mut live = Vec::new();
        for (region, groups) in by_region {
            for chunk in groups.chunks(50) {
                let names: Vec<String> = chunk.iter().map(|g| g.name.clone()).collect();
                for asg in self.describe(region, names).await? {
                    let Some(g) = chunk
                        .iter()
                        .find(|g| asg.auto_scaling_group_name() == Some(g.name.as_str()))
                    else {
                        continue;
                    };
                    live.push(group_live(g, &asg));
                }
            }
        }
        Ok(live)
    }

    async fn describe(
        &self,
        region: &str,
        names: Vec<String>,
    ) -> Result<Vec<aws_sdk_autoscaling::types::AutoScalingGroup>, AwsError> {
        let client = self.autoscaling(region);
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call(true, || {
                    client
                        .describe_auto_scaling_groups()
                        .set_auto_scaling_group_names(Some(names.clone()))
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            out.extend(page.auto_scaling_groups().iter().cloned());
            match page.next_token() {
                Some(t) => token = Some(t.to_string()),
                None => return Ok(out),
            }
        }
    }

    pub(super) async fn apply_groups(&self, changes: &[Change], owner: &str) -> Vec<ChangeResult> {
        let mut results = Vec::with_capacity(changes.len());
        for c in changes {
            results.push(self.apply_group(c, owner).await.map_err(|e| e.to_string()));
        }
        results
    }

    async fn apply_group(
        &self,
        change: &Change,
        owner: &str,
    ) -> Result<Option<LiveResource>, AwsError> {
        let (service, region) = parse_group(&change.address.name);
        match (&change.op, change.op.attrs()) {
            (_, Some(Attrs::Group(g))) => {
                let gref = GroupRef {
                    address: change.address.clone(),
                    cloud: Cloud::Aws,
                    region: g.region.clone(),
                    name: g.group_name().to_string(),
                };
                let asg = self.describe(&g.region, vec![gref.name.clone()]).await?.into_iter().next().ok_or_else(|| AwsError {
                    failure: Failure::Permanent,
                    code: "NoSuchGroup".into(),
                    message: format!(
                        "no Auto Scaling group `{}` in {}: cairn adopts existing groups; create it (launch template, subnets) first, or set `group` on the deployment",
                        gref.name, g.region
                    ),
                })?;
                if let Some(other) = tag(&asg, OWNER_TAG).filter(|o| o != owner) {
                    return Err(AwsError {
                        failure: Failure::Permanent,
                        code: "NotOwned".into(),
                        message: format!(
                            "Auto Scaling group `{}` is managed by another stack (owner {other})",
                            gref.name
                        ),
                    });
                }
                let client = self.autoscaling(&g.region);
                self.call(true, || {
                    client
                        .update_auto_scaling_group()
                        .auto_scaling_group_name(&gref.name)
                        .min_size(g.min as i32)
                        .max_size(g.max as i32)
                        .desired_capacity(g.desired as i32)
                        .send()
                })
                .await?;
                let mut tags = vec![
                    (OWNER_TAG, owner.to_string()),
                    (ADDRESS_TAG, change.address.to_string()),
                ];
                tags.extend(g.instance_type.clone().map(|t| (INSTANCE_TYPE_TAG, t)));
                tags.extend(g.endpoint.clone().map(|e| (ENDPOINT_TAG, e)));
                self.group_tags(&g.region, &gref.name, tags, true).await?;
                let attrs = GroupAttrs {
                    instances: in_service(&asg),
                    ..g.clone()
                };
                Ok(Some(LiveResource {
                    provider: AWS,
                    id: group_id(&g.region, &gref.name),
                    attrs: Attrs::Group(attrs),
                    owner: Some(owner.to_string()),
                    adoptable: false,
                }))
            }
            // An adopted group is released, not deleted: its instances may serve other things.
            (ChangeOp::Delete { id } | ChangeOp::Release { id }, _) => {
                let (region, name) = id.split_once('/').unwrap_or((region, service));
                let keys = [OWNER_TAG, ADDRESS_TAG, INSTANCE_TYPE_TAG, ENDPOINT_TAG]
                    .map(|k| (k, String::new()));
                self.group_tags(region, name, keys.to_vec(), false).await?;
                Ok(None)
            }
            (ChangeOp::Adopt { id }, _) => {
                let (region, name) = id.split_once('/').unwrap_or((region, service));
                self.group_tags(
                    region,
                    name,
                    vec![
                        (OWNER_TAG, owner.to_string()),
                        (ADDRESS_TAG, change.address.to_string()),
                    ],
                    true,
                )
                .await?;
                let asg = self
                    .describe(region, vec![name.to_string()])
                    .await?
                    .into_iter()
                    .next();
                let gref = GroupRef {
                    address: change.address.clone(),
                    cloud: Cloud::Aws,
                    region: region.to_string(),
                    name: name.to_string(),
                };
                Ok(asg.map(|a| group_live(&gref, &a)))
            }
            _ => Err(AwsError {
                failure: Failure::Permanent,
                code: String::new(),
                message: format!("{}: not a group change", change.address),
            }),
        }
    }

    async fn group_tags(
        &self,
        region: &str,
        name: &str,
        tags: Vec<(&str, String)>,
        add: bool,
    ) -> Result<(), AwsError> {
        let client = self.autoscaling(region);
        let tags: Vec<Tag> = tags
            .into_iter()
            .map(|(k, v)| {
                let t = Tag::builder()
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .key(k)
                    .propagate_at_launch(false);
                if add { t.value(v).build() } else { t.build() }
            })
            .collect();
        if add {
            self.call(true, || {
                client
                    .create_or_update_tags()
                    .set_tags(Some(tags.clone()))
                    .send()
            })
            .await
            .map(|_| ())
        } else {
            self.call(true, || {
                client.delete_tags().set_tags(Some(tags.clone())).send()
            })
            .await
            .map(|_| ())
        }
    }
}

fn tag(asg: &aws_sdk_autoscaling::types::AutoScalingGroup, key: &str) -> Option<String> {
    asg.tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

/// Instances in service, as observed (read-only).
fn in_service(asg: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Option<u32> {
    Some(
        asg.instances()
            .iter()
            .filter(|i| {
                i.lifecycle_state()
                    .is_some_and(|s| s.as_str() == "InService")
            })
            .count() as u32,
    )
}

fn group_id(region: &str, name: &str) -> String {
    format!("{region}/{name}")
}

/// `SERVICE@aws/REGION` → (SERVICE, REGION).
fn parse_group(name: &str) -> (&str, &str) {
    let (service, rest) = name.split_once('@').unwrap_or((name, ""));
    (service, rest.rsplit('/').next().unwrap_or_default())
}

fn group_live(g: &GroupRef, asg: &aws_sdk_autoscaling::types::AutoScalingGroup) -> LiveResource {
    let (service, _) = parse_group(&g.address.name);
    LiveResource {
        provider: AWS,
        id: group_id(&g.region, &g.name),
        attrs: Attrs::Group(GroupAttrs {
            service: service.to_string(),
            cloud: Cloud::Aws,
            region: g.region.clone(),
            instance_type: tag(asg, INSTANCE_TYPE_TAG),
            min: asg.min_size().unwrap_or(0).max(0) as u32,
            max: asg.max_size().unwrap_or(0).max(0) as u32,
            desired: asg.desired_capacity().unwrap_or(0).max(0) as u32,
            endpoint: tag(asg, ENDPOINT_TAG),
            group_name: (g.name != service).then(|| g.name.clone()),
            instances: in_service(asg),
        }),
        owner: tag(asg, OWNER_TAG),
        adoptable: tag(asg, OWNER_TAG).is_none(),
    }
}
