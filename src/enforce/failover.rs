//! What a routed record should answer, given the health of its members.
//!
//! Pure functions: the daemon keeps the decisions as an overlay on the declared routing and
//! plans with it, so DNS changes go through the same plan/apply path as everything else.

use serde::{Deserialize, Serialize};

use super::health::Health;
use crate::model::{Member, Routing};

/// When a failover record returns to its primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Failback {
    /// As soon as the primary has passed its recovery threshold.
    #[default]
    Auto,
    /// Only when an operator asks (`POST /failback`), or when the secondary fails too.
    Manual,
}

/// The outcome for one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Publish the declared routing.
    Declared,
    /// Publish this instead (a failover, or unhealthy weighted members dropped).
    Publish(Routing, String),
    /// Every member is down: keep what is published and raise an alert.
    KeepLast(String),
}

/// Decides a record's answer. `published` is the override in force, if any; `health` gives
/// each member's state by its set identifier.
pub fn decide(
    declared: &Routing,
    published: Option<&Routing>,
    health: &dyn Fn(&str) -> Health,
    failback: Failback,
) -> Decision {
    let down = |m: &Member| health(&m.id) == Health::Unhealthy;
    match declared {
        Routing::Failover { primary, secondary } => {
            let failed_over = published.is_some();
            // Fail back only onto a primary known to be healthy: after a restart its state is
            // unknown until probed.
            let primary_healthy = health(&primary.id) == Health::Healthy;
            match (down(primary), down(secondary)) {
                (true, true) => Decision::KeepLast(format!(
                    "both {} and {} are unhealthy; keeping the current answer",
                    primary.id, secondary.id
                )),
                (true, false) if !failed_over => Decision::Publish(
                    swapped(primary, secondary),
                    format!(
                        "{} is unhealthy: failing over to {}",
                        primary.id, secondary.id
                    ),
                ),
                (true, false) => Decision::Publish(
                    swapped(primary, secondary),
                    format!("{} is still unhealthy", primary.id),
                ),
                (false, true) if failed_over => Decision::Declared,
                (false, _) if failed_over && !primary_healthy => Decision::Publish(
                    swapped(primary, secondary),
                    format!("{} is not known to be healthy yet", primary.id),
                ),
                (false, _) if failed_over && failback == Failback::Manual => Decision::Publish(
                    swapped(primary, secondary),
                    format!("{} is healthy again; fail-back is manual", primary.id),
                ),
                (false, _) => Decision::Declared,
            }
        }
        Routing::Weighted { members } => {
            let healthy: Vec<&Member> = members.iter().filter(|m| !down(m)).collect();
            if healthy.is_empty() {
                return Decision::KeepLast(format!(
                    "all {} members are unhealthy; keeping the current answer",
                    members.len()
                ));
            }
            if healthy.len() == members.len() {
                return Decision::Declared;
            }
            let dropped: Vec<&str> = members
                .iter()
                .filter(|m| down(m))
                .map(|m| m.id.as_str())
                .collect();
            Decision::Publish(
                Routing::Weighted {
                    members: renormalized(members, &|m| !down(m)),
                },
                format!("dropping unhealthy {}", dropped.join(", ")),
            )
        }
        Routing::Multivalue { members } => {
            let healthy: Vec<Member> = members.iter().filter(|m| !down(m)).cloned().collect();
            if healthy.is_empty() {
                Decision::KeepLast(format!(
                    "all {} answers are unhealthy; keeping the current answer",
                    members.len()
                ))
            } else if healthy.len() == members.len() {
                Decision::Declared
            } else {
                Decision::Publish(
                    Routing::Multivalue { members: healthy },
                    "dropping unhealthy answers".into(),
                )
            }
        }
        // Latency and geolocation answers are chosen per client; a member cannot be dropped
        // without changing who is served from where. Simple records have no members.
        _ => Decision::Declared,
    }
}

fn swapped(primary: &Member, secondary: &Member) -> Routing {
    Routing::Failover {
        primary: secondary.clone(),
        secondary: primary.clone(),
    }
}

/// Unhealthy members get weight 0; healthy ones keep their proportions, scaled so the total
/// stays what was declared (each at least 1 if it had weight, at most 255).
fn renormalized(members: &[Member], healthy: &dyn Fn(&Member) -> bool) -> Vec<Member> {
    let weight = |m: &Member| m.weight.unwrap_or(0);
    let total: u32 = members.iter().map(weight).sum();
    let kept: u32 = members.iter().filter(|m| healthy(m)).map(weight).sum();
    members
        .iter()
        .map(|m| {
            let w = if !healthy(m) {
                0
            } else if kept == 0 {
                // Healthy members all declared weight 0: give them equal shares.
                1
            } else {
                let scaled = (u64::from(weight(m)) * u64::from(total)).div_ceil(u64::from(kept));
                (scaled as u32).clamp(u32::from(weight(m) > 0), 255)
            };
            Member {
                weight: Some(w),
                ..m.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, weight: Option<u32>) -> Member {
        Member {
            id: id.into(),
            values: vec![format!("192.0.2.{}", id.len())],
            weight,
            location: None,
        }
    }

    fn failover() -> Routing {
        Routing::Failover {
            primary: member("p", None),
            secondary: member("s", None),
        }
    }

    fn health(down: &'static [&'static str]) -> impl Fn(&str) -> Health {
        move |id| {
            if down.contains(&id) {
                Health::Unhealthy
            } else {
                Health::Healthy
            }
        }
    }

    #[test]
    fn failover_fails_over_keeps_last_and_fails_back() {
        let r = failover();
        assert_eq!(
            decide(&r, None, &health(&[]), Failback::Auto),
            Decision::Declared
        );
        let Decision::Publish(swap, _) = decide(&r, None, &health(&["p"]), Failback::Auto) else {
            panic!("expected a failover")
        };
        assert_eq!(
            swap,
            Routing::Failover {
                primary: member("s", None),
                secondary: member("p", None)
            }
        );
        assert!(matches!(
            decide(&r, Some(&swap), &health(&["p", "s"]), Failback::Auto),
            Decision::KeepLast(_)
        ));
        assert_eq!(
            decide(&r, Some(&swap), &health(&[]), Failback::Auto),
            Decision::Declared
        );
        // Manual fail-back holds the secondary until asked, unless the secondary fails.
        assert!(matches!(
            decide(&r, Some(&swap), &health(&[]), Failback::Manual),
            Decision::Publish(_, _)
        ));
        assert_eq!(
            decide(&r, Some(&swap), &health(&["s"]), Failback::Manual),
            Decision::Declared
        );
    }

    #[test]
    fn weighted_members_are_dropped_and_the_rest_renormalized() {
        let r = Routing::Weighted {
            members: vec![
                member("a", Some(80)),
                member("bb", Some(20)),
                member("ccc", Some(0)),
            ],
        };
        let Decision::Publish(Routing::Weighted { members }, _) =
            decide(&r, None, &health(&["a"]), Failback::Auto)
        else {
            panic!("expected new weights")
        };
        let weights: Vec<u32> = members.iter().map(|m| m.weight.unwrap()).collect();
        assert_eq!(weights, [0, 100, 0]);
        assert!(matches!(
            decide(&r, None, &health(&["a", "bb", "ccc"]), Failback::Auto),
            Decision::KeepLast(_)
        ));
    }
}
