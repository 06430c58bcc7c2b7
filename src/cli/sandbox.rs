//! `cairn sandbox ...`: change the embedded cloud behind cairn's back, as an operator with a
//! console would, so drift can be seen and tested.

use std::path::PathBuf;

use super::args::{SandboxCommand, SandboxDir};
use super::ui::Ui;
use super::{CmdResult, EXIT_OK, Failure};
use crate::config;
use crate::diag::Diag;
use crate::model::{Address, Attrs, Cloud, RecordAttrs, RecordType, Routing};
use crate::provider::sandbox::{Object, Sandbox, SandboxOp, sandbox_id};

fn open(d: &SandboxDir) -> Result<Sandbox, Failure> {
    // The stack says where its sandbox is (per environment, or `[provider.sandbox] path`).
    let (stack, _) = config::load_stack(&d.dir, d.env.as_deref())?;
    let dir: PathBuf = stack.providers.sandbox_dir;
    Sandbox::open(&dir, Cloud::ALL).map_err(|e| {
        Diag::error(
            "sandbox::open",
            format!("cannot open the sandbox at `{}`: {e}", dir.display()),
        )
        .into()
    })
}

fn io(e: std::io::Error) -> Failure {
    Diag::error("sandbox::io", e.to_string()).into()
}

pub fn run(cmd: SandboxCommand, ui: &Ui) -> CmdResult {
    match cmd {
        SandboxCommand::List(d) => {
            let sb = open(&d)?;
            let (objects, down) = sb
                .call(|c| (Vec::new(), (c.objects.clone(), c.endpoints_down.clone())))
                .map_err(io)?;
            if ui.json {
                ui.print_json(&serde_json::json!({ "objects": objects, "endpoints_down": down }));
                return Ok(EXIT_OK);
            }
            if objects.is_empty() {
                println!("The sandbox is empty. Run `cairn apply` on a stack to fill it.");
            }
            for (id, o) in &objects {
                let owner = o.owner.as_deref().map_or("unmanaged".to_string(), |l| {
                    format!("owner {}", &l[..l.len().min(8)])
                });
                println!("{id}  [{owner}]  {}", summary(&o.attrs));
            }
            for dep in &down {
                println!("endpoint {dep}: DOWN");
            }
            Ok(EXIT_OK)
        }
        SandboxCommand::SetRecord {
            zone,
            name,
            rtype,
            ttl,
            values,
            cloud,
            dir,
        } => {
            let sb = open(&dir)?;
            let rtype: RecordType = serde_json::from_value(serde_json::Value::String(
                rtype.to_uppercase(),
            ))
            .map_err(|_| Diag::error("sandbox::usage", format!("unknown record type `{rtype}`")))?;
            let address = Address::record(&zone, &name, rtype);
            let cloud_arg: Option<Cloud> = cloud
                .map(|c| c.parse())
                .transpose()
                .map_err(|e: String| Diag::error("sandbox::usage", e))?;
            let result = sb
                .call(|c| {
                    let existing: Vec<Cloud> = Cloud::ALL.into_iter().filter(|cl| c.objects.contains_key(&sandbox_id(*cl, &address))).collect();
                    let zone_clouds: Vec<Cloud> = Cloud::ALL.into_iter().filter(|cl| c.objects.contains_key(&sandbox_id(*cl, &Address::zone(&zone)))).collect();
                    let cl = match cloud_arg.or_else(|| existing.first().copied()).or_else(|| (zone_clouds.len() == 1).then(|| zone_clouds[0])) {
                        Some(cl) => cl,
                        None => return (Vec::new(), Err(format!("zone {zone} is not in the sandbox (or is in several clouds: pass --cloud)"))),
                    };
                    let id = sandbox_id(cl, &address);
                    let mut object = match c.objects.get(&id) {
                        Some(o) => o.clone(),
                        None if values.is_empty() => return (Vec::new(), Err(format!("{address} does not exist; give --value to create it"))),
                        None => Object {
                            cloud: cl,
                            attrs: Attrs::Record(RecordAttrs { zone: zone.clone(), name: name.clone(), rtype, ttl: 300, routing: Routing::Simple { values: Vec::new() }, health_check: None }),
                            owner: None,
                        },
                    };
                    if let Attrs::Record(r) = &mut object.attrs {
                        if let Some(t) = ttl {
                            r.ttl = t;
                        }
                        if !values.is_empty() {
                            r.routing = Routing::Simple { values: values.clone() };
                        }
                    }
                    (vec![SandboxOp::Put { id: id.clone(), object: Box::new(object) }], Ok(id))
                })
                .map_err(io)?;
            let id = result.map_err(|e| Diag::error("sandbox::usage", e))?;
            ui.message(
                &format!("Changed {id} in the sandbox. `cairn plan` will show the drift."),
                serde_json::json!({ "changed": id }),
            );
            Ok(EXIT_OK)
        }
        SandboxCommand::Delete { what, dir } => {
            let sb = open(&dir)?;
            let result = sb
                .call(|c| {
                    let ids: Vec<String> = if c.objects.contains_key(&what) {
                        vec![what.clone()]
                    } else {
                        Cloud::ALL
                            .iter()
                            .map(|cl| format!("{cl}/{what}"))
                            .filter(|id| c.objects.contains_key(id))
                            .collect()
                    };
                    match ids.as_slice() {
                        [id] => (vec![SandboxOp::Delete { id: id.clone() }], Ok(id.clone())),
                        [] => (
                            Vec::new(),
                            Err(format!(
                                "nothing in the sandbox is `{what}` (see `cairn sandbox list`)"
                            )),
                        ),
                        _ => (
                            Vec::new(),
                            Err(format!(
                                "`{what}` exists in several clouds: give the full ID, one of {}",
                                ids.join(", ")
                            )),
                        ),
                    }
                })
                .map_err(io)?;
            let id = result.map_err(|e| Diag::error("sandbox::usage", e))?;
            ui.message(
                &format!("Deleted {id} from the sandbox."),
                serde_json::json!({ "deleted": id }),
            );
            Ok(EXIT_OK)
        }
        SandboxCommand::Resize {
            deployment,
            desired,
            dir,
        } => {
            let sb = open(&dir)?;
            let address: Address = format!("group.{deployment}")
                .parse()
                .map_err(|e: String| Diag::error("sandbox::usage", e))?;
            let result = sb
                .call(|c| {
                    let found = c
                        .objects
                        .iter()
                        .find(|(id, _)| id.ends_with(&format!("/{address}")));
                    match found {
                        Some((id, o)) => {
                            let mut o = o.clone();
                            if let Attrs::Group(g) = &mut o.attrs {
                                g.desired = desired;
                            }
                            (
                                vec![SandboxOp::Put {
                                    id: id.clone(),
                                    object: Box::new(o),
                                }],
                                Ok(id.clone()),
                            )
                        }
                        None => (
                            Vec::new(),
                            Err(format!("no group `{deployment}` in the sandbox")),
                        ),
                    }
                })
                .map_err(io)?;
            let id = result.map_err(|e| Diag::error("sandbox::usage", e))?;
            ui.message(
                &format!("Resized {id} to {desired} replicas."),
                serde_json::json!({ "resized": id, "desired": desired }),
            );
            Ok(EXIT_OK)
        }
        SandboxCommand::Endpoint {
            state,
            deployment,
            dir,
        } => {
            let sb = open(&dir)?;
            let address: Address = format!("group.{deployment}")
                .parse()
                .map_err(|e: String| Diag::error("sandbox::usage", e))?;
            let known = sb
                .call(|c| {
                    (
                        Vec::new(),
                        c.objects
                            .keys()
                            .any(|id| id.ends_with(&format!("/{address}"))),
                    )
                })
                .map_err(io)?;
            if !known {
                return Err(Diag::error("sandbox::usage", format!("no deployment `{deployment}` in the sandbox"))
                    .help("deployments are written SERVICE@CLOUD/REGION; `cairn sandbox list` shows the groups")
                    .into());
            }
            let up = state == "up";
            sb.call(|_| {
                (
                    vec![SandboxOp::Endpoint {
                        deployment: deployment.clone(),
                        up,
                    }],
                    (),
                )
            })
            .map_err(io)?;
            let text = format!(
                "Endpoint of {deployment} is now {}.",
                if up { "UP" } else { "DOWN" }
            );
            ui.message(
                &text,
                serde_json::json!({ "endpoint": deployment, "up": up }),
            );
            Ok(EXIT_OK)
        }
    }
}

fn summary(a: &Attrs) -> String {
    match a {
        Attrs::Zone(z) => format!("zone {}", z.name),
        Attrs::Record(r) => {
            let answers = match &r.routing {
                Routing::Simple { values } => values.join(","),
                Routing::Failover { primary, secondary } => {
                    format!("failover {} / {}", primary.id, secondary.id)
                }
                Routing::Weighted { members }
                | Routing::Latency { members }
                | Routing::Multivalue { members }
                | Routing::Geolocation { members } => {
                    format!(
                        "{} {}",
                        r.routing.policy(),
                        members
                            .iter()
                            .map(|m| m.id.as_str())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                }
            };
            format!("{} {} ttl={} {answers}", r.name, r.rtype, r.ttl)
        }
        Attrs::Group(g) => format!("group desired={} min={} max={}", g.desired, g.min, g.max),
    }
}
