//! Carries out version rollouts planned by [`crate::rollout`]: observes every node of the chain,
//! steps the plan, deletes the Pod it picks and publishes its Events, and reflects the rollout in
//! the chain's phase and conditions.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{apps::v1::StatefulSet, core::v1::Pod},
    jiff::Timestamp,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams},
};

use super::{Context, Error, kube_err};
use crate::{
    conditions::{self, DEGRADED, PROGRESSING},
    crd::{ChainPhase, ConsortiumChain, ConsortiumChainStatus, Member, NodeType, RolloutPhase},
    names, nodes,
    rollout::{self, Effect, ObservedNode},
};

/// What the rollout step leaves for the rest of the chain's reconcile.
pub struct Outcome {
    /// A rollout is under way (reconcile again soon).
    pub active: bool,
    /// The compatibility version every node's build executes, with no rollout under way.
    pub compatibility_target: Option<u32>,
}

/// Steps the chain's rollout and applies what it decides.
pub async fn reconcile(
    chain: &ConsortiumChain,
    ctx: &Context,
    namespace: &str,
    members: &[Member],
    fault_budget: u32,
    status: &mut ConsortiumChainStatus,
) -> Result<Outcome, Error> {
    let (observed, compatibility) = observe(chain, ctx, namespace, members).await?;
    if compatibility.is_some() {
        status.compatibility_version = compatibility;
    }
    let effects =
        rollout::step(status, &chain.spec.version, &chain.spec.upgrade, &observed, fault_budget, Timestamp::now());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    for effect in effects {
        match effect {
            Effect::DeletePod(name) => match pods.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(response)) if response.code == 404 => {}
                Err(source) => return Err(Error::Kube { what: format!("deleting Pod {name} to upgrade it"), source }),
            },
            Effect::Event { warning, reason, note, node: None } => ctx.event(chain, warning, reason, note).await,
            Effect::Event { warning, reason, note, node: Some(pod) } => {
                ctx.node_event(chain, &pod, warning, reason, note).await
            }
        }
    }
    reflect(status, &chain.spec.version, chain.metadata.generation);
    Ok(Outcome {
        active: status.rollout.as_ref().is_some_and(|rollout| rollout.phase.is_active()),
        compatibility_target: rollout::compatibility_target(status, &observed),
    })
}

/// Every node Pod of the chain with what it reports and its Member's template version, and the
/// highest compatibility version in force any of them reports.
async fn observe(
    chain: &ConsortiumChain,
    ctx: &Context,
    namespace: &str,
    members: &[Member],
) -> Result<(Vec<ObservedNode>, Option<u32>), Error> {
    let selector = format!("{}={}", names::CHAIN_LABEL, chain.name_any());
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let endpoints = nodes::pods(&pods, &selector).await.map_err(kube_err("listing Pods"))?;
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), namespace);
    let templates: BTreeMap<String, String> = sets
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(kube_err("listing StatefulSets"))?
        .items
        .into_iter()
        .filter_map(|set| {
            let member = set.labels().get(names::MEMBER_LABEL)?.clone();
            let image = set.spec?.template.spec?.containers.first()?.image.clone()?;
            Some((member, nodes::image_tag(&image)?))
        })
        .collect();
    let registered: BTreeMap<&str, NodeType> = members
        .iter()
        .flat_map(|member| member.status.iter().flat_map(|status| &status.nodes))
        .map(|node| (node.name.as_str(), node.registered_type))
        .collect();
    let mut observed = Vec::with_capacity(endpoints.len());
    let mut compatibility = None;
    for pod in endpoints {
        let Some(member) = pod.member.clone() else { continue };
        let reported = nodes::status(&pod).await;
        compatibility = compatibility.max(reported.as_ref().map(|status| status.compatibility_version));
        observed.push(ObservedNode {
            consensus: registered.get(pod.name.as_str()) == Some(&NodeType::Consensus),
            ready: pod.ready,
            image_version: pod.image_version.clone(),
            reported_version: reported.as_ref().map(|status| status.version.clone()),
            height: reported.as_ref().map(|status| status.height),
            leader: reported.as_ref().is_some_and(|status| status.leading),
            template_version: templates.get(&member).cloned(),
            max_compatibility_version: reported.as_ref().map(|status| status.max_compatibility_version),
            member,
            name: pod.name,
        });
    }
    Ok((observed, compatibility))
}

/// The rollout in the chain's phase and conditions.
fn reflect(status: &mut ConsortiumChainStatus, spec_version: &str, generation: Option<i64>) {
    let Some(rollout) = status.rollout.as_ref() else { return };
    let message = rollout.message.clone();
    match rollout.phase {
        RolloutPhase::Progressing | RolloutPhase::RollingBack | RolloutPhase::Paused => {
            let reason = match rollout.phase {
                RolloutPhase::Progressing => "Upgrading",
                RolloutPhase::RollingBack => "RollingBack",
                _ => "UpgradePaused",
            };
            conditions::set(&mut status.conditions, PROGRESSING, true, reason, message, generation);
            if status.phase != ChainPhase::Degraded {
                status.phase = ChainPhase::Upgrading;
            }
        }
        RolloutPhase::Halted => {
            conditions::set(&mut status.conditions, DEGRADED, true, "UpgradeHalted", message, generation);
            status.phase = ChainPhase::Degraded;
        }
        // Once spec.version names another version, the failed one is history.
        RolloutPhase::RolledBack if rollout.to_version == spec_version => {
            let note = format!("{message}. Set spec.version to {} or to a fixed version", rollout.from_version);
            conditions::set(&mut status.conditions, DEGRADED, true, "UpgradeRolledBack", note, generation);
            status.phase = ChainPhase::Degraded;
        }
        RolloutPhase::RolledBack | RolloutPhase::Complete => {}
    }
}
