//! The ConsortiumChain controller: the chain CA and the operator's governance key, the genesis
//! (once every founding member has its node identities), the peer Service, the consensus
//! disruption budget, and the chain's status gathered from its Members.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{Api, ResourceExt, api::PostParams, runtime::controller::Action};

use super::{
    Context, Error, RESYNC, WAIT, kube_err, patch_status,
    settings::{self, Change},
    upgrade,
};
use crate::{
    conditions::{self, DEGRADED, PROGRESSING, READY},
    crd::{ChainPhase, ConsortiumChain, ConsortiumChainStatus, Member, NodeCounts, NodeType},
    identity, names, nodes,
    plan::{self, NodeIdentity},
};

/// Annotation on the genesis ConfigMap recording the founding members it was made from.
const FOUNDERS_ANNOTATION: &str = "bcos.dev/founding-members";

/// Brings one chain to its spec.
pub async fn reconcile(chain: Arc<ConsortiumChain>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = chain.namespace().unwrap_or_default();
    let name = chain.name_any();
    let chains: Api<ConsortiumChain> = Api::namespaced(ctx.client.clone(), &namespace);
    // The status as last written, not as the watch cache has it: a rollout must continue from the
    // step it recorded, even when this reconcile was triggered before that write reached the cache.
    let mut status = chains
        .get_status(&name)
        .await
        .map_err(kube_err(format!("reading the status of ConsortiumChain {name}")))?
        .status
        .unwrap_or_default();
    let generation = chain.metadata.generation;

    if let Some(problem) = immutable_change(&chain, &ctx, &namespace).await? {
        conditions::set(&mut status.conditions, DEGRADED, true, "ImmutableFieldChanged", problem.clone(), generation);
        status.phase = ChainPhase::Degraded;
        ctx.event(chain.as_ref(), true, "ImmutableFieldChanged", problem).await;
        patch_status(&chains, chain.as_ref(), &status).await?;
        return Ok(Action::requeue(RESYNC * 6));
    }

    let owner = super::owner_of(chain.as_ref())?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let (ca, ca_created) = identity::chain_ca(&secrets, &chain, owner.clone()).await?;
    if ca_created {
        ctx.event(
            chain.as_ref(),
            false,
            "ChainCaCreated",
            format!("chain CA created in Secret {}", names::chain_ca_secret(&name)),
        )
        .await;
    }
    let admin = identity::admin_key(&secrets, &chain, owner.clone()).await?;
    ctx.apply(&plan::peer_service(&name, &namespace, owner.clone())).await?;

    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let genesis_name = names::genesis_config_map(&name);
    if config_maps.get_opt(&genesis_name).await.map_err(kube_err("reading the genesis"))?.is_none() {
        match founders(&chain, &ctx, &namespace, &secrets).await? {
            Err(waiting) => {
                conditions::set(
                    &mut status.conditions,
                    READY,
                    false,
                    "WaitingForFoundingMembers",
                    waiting.clone(),
                    generation,
                );
                conditions::set(
                    &mut status.conditions,
                    PROGRESSING,
                    true,
                    "WaitingForFoundingMembers",
                    waiting,
                    generation,
                );
                conditions::set(&mut status.conditions, DEGRADED, false, "AsExpected", "", generation);
                status.phase = ChainPhase::Pending;
                status.observed_generation = generation;
                patch_status(&chains, chain.as_ref(), &status).await?;
                return Ok(Action::requeue(WAIT));
            }
            Ok(founding_nodes) => {
                let now_ms = u64::try_from(k8s_openapi::jiff::Timestamp::now().as_millisecond()).unwrap_or_default();
                let genesis = match plan::genesis(
                    &chain,
                    &namespace,
                    ca.cert().pem(),
                    admin.address(),
                    &founding_nodes,
                    now_ms,
                ) {
                    Ok(genesis) => genesis,
                    Err(problem) => {
                        let message = format!("cannot make the genesis: {problem}");
                        conditions::set(
                            &mut status.conditions,
                            DEGRADED,
                            true,
                            "InvalidSpec",
                            message.clone(),
                            generation,
                        );
                        status.phase = ChainPhase::Degraded;
                        ctx.event(chain.as_ref(), true, "InvalidSpec", message).await;
                        patch_status(&chains, chain.as_ref(), &status).await?;
                        return Ok(Action::requeue(RESYNC * 6));
                    }
                };
                let yaml = genesis.to_yaml(std::path::Path::new(names::GENESIS_KEY))?;
                let mut config_map = plan::genesis_config_map(&name, &namespace, owner.clone(), yaml);
                config_map
                    .metadata
                    .annotations
                    .get_or_insert_with(Default::default)
                    .insert(FOUNDERS_ANNOTATION.to_owned(), chain.spec.founding_members.join(","));
                match config_maps.create(&PostParams::default(), &config_map).await {
                    Ok(_) => {
                        let note = format!(
                            "genesis created from {} with {} consensus and {} observer nodes",
                            chain.spec.founding_members.join(", "),
                            genesis.consensus_nodes.len(),
                            genesis.observer_nodes.len()
                        );
                        ctx.event(chain.as_ref(), false, "GenesisCreated", note).await;
                    }
                    Err(kube::Error::Api(response)) if response.code == 409 => {}
                    Err(source) => return Err(Error::Kube { what: "creating the genesis".into(), source }),
                }
                status.chain_id = Some(chain.spec.chain_id);
            }
        }
    }
    status.chain_id.get_or_insert(chain.spec.chain_id);

    let members = chain_members(&ctx, &namespace, &name).await?;
    summarize(&mut status, &chain, &members);
    let fault_budget = chain.spec.consensus.mode.fault_budget(status.nodes.consensus.max(1));
    let upgrade = upgrade::reconcile(&chain, &ctx, &namespace, &members, fault_budget, &mut status).await?;
    if upgrade.active {
        // Recorded before anything below can fail: a Pod this step deleted must show as
        // upgrading, or the next step would not wait for it.
        patch_status(&chains, chain.as_ref(), &status).await?;
    }
    if status.phase == ChainPhase::Running {
        apply_settings(&chain, &ctx, &namespace, &admin, upgrade.compatibility_target, &mut status).await?;
    }
    ctx.apply_disruption_budget(
        &namespace,
        &names::disruption_budget(&name),
        &names::chain_labels(&name),
        &owner,
        plan::disruption_budget_spec(&name, fault_budget),
    )
    .await?;
    status.observed_generation = generation;
    patch_status(&chains, chain.as_ref(), &status).await?;
    Ok(Action::requeue(if upgrade.active { WAIT } else { RESYNC }))
}

/// Proposes what `spec.consensus` changes on chain, and the compatibility version every node's
/// build executes, and reports it in Events.
async fn apply_settings(
    chain: &ConsortiumChain,
    ctx: &Context,
    namespace: &str,
    admin: &bcos_sdk::crypto::AccountKey,
    compatibility_target: Option<u32>,
    status: &mut ConsortiumChainStatus,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let selector = format!("{}={}", names::CHAIN_LABEL, chain.name_any());
    let chain_pods = nodes::pods(&pods, &selector).await.map_err(kube_err("listing Pods"))?;
    let Some(mut governor) = nodes::governor(&chain_pods, admin).await else { return Ok(()) };
    let change = settings::reconcile(&mut governor, &chain.spec.consensus, compatibility_target, status)
        .await
        .map_err(|source| Error::Governance { what: "changing the consensus settings".into(), source })?;
    let (warning, reason, note) = match change {
        None => return Ok(()),
        Some(Change::SwitchScheduled { mode, height, pending_votes: false }) => {
            (false, "ConsensusSwitchScheduled", format!("every node switches to {mode} at block {height}"))
        }
        Some(Change::SwitchScheduled { mode, height, pending_votes: true }) => {
            (false, "ConsensusSwitchProposed", format!("switch to {mode} at block {height} awaits committee votes"))
        }
        Some(Change::SettingChanged { key, value, pending_votes: false }) => {
            (false, "SystemConfigChanged", format!("{key} is {value} from the next block"))
        }
        Some(Change::SettingChanged { key, value, pending_votes: true }) => {
            (false, "SystemConfigProposed", format!("{key} = {value} awaits committee votes"))
        }
        Some(Change::Refused { what, reason }) => (true, "SettingRefused", format!("{what}: {reason}")),
    };
    ctx.event(chain, warning, reason, note).await;
    Ok(())
}

/// A change to what the genesis fixed: the chain id, or the founding members.
async fn immutable_change(chain: &ConsortiumChain, ctx: &Context, namespace: &str) -> Result<Option<String>, Error> {
    if let Some(recorded) = chain.status.as_ref().and_then(|status| status.chain_id)
        && recorded != chain.spec.chain_id
    {
        return Ok(Some(format!(
            "spec.chainId changed from {recorded} to {}; the chain id is fixed by the genesis. Set it back to {recorded}",
            chain.spec.chain_id
        )));
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let genesis = config_maps
        .get_opt(&names::genesis_config_map(&chain.name_any()))
        .await
        .map_err(kube_err("reading the genesis"))?;
    if let Some(recorded) = genesis.as_ref().and_then(|genesis| genesis.annotations().get(FOUNDERS_ANNOTATION)) {
        let now = chain.spec.founding_members.join(",");
        if *recorded != now {
            return Ok(Some(format!(
                "spec.foundingMembers changed from [{recorded}] to [{now}]; the genesis was made from the former. Members join later by adding Member resources"
            )));
        }
    }
    Ok(None)
}

/// The founding members' nodes, or what is still missing.
async fn founders(
    chain: &ConsortiumChain,
    ctx: &Context,
    namespace: &str,
    secrets: &Api<Secret>,
) -> Result<Result<Vec<NodeIdentity>, String>, Error> {
    let members: Api<Member> = Api::namespaced(ctx.client.clone(), namespace);
    let chain_name = chain.name_any();
    let mut missing = Vec::new();
    let mut nodes = Vec::new();
    for founder in &chain.spec.founding_members {
        let Some(member) = members.get_opt(founder).await.map_err(kube_err(format!("reading Member {founder}")))?
        else {
            missing.push(format!("{founder} (no such Member)"));
            continue;
        };
        if member.spec.chain_ref.name != chain_name {
            missing.push(format!("{founder} (belongs to chain {})", member.spec.chain_ref.name));
            continue;
        }
        let ids = identity::recorded_node_ids(secrets, &chain_name, founder).await?;
        let wanted = plan::desired_nodes(&member);
        let mut complete = true;
        for ordinal in 0..wanted {
            let pod = names::pod(&chain_name, founder, ordinal);
            match ids.get(&pod) {
                Some(node_id) => {
                    nodes.push(NodeIdentity { pod, node_id: *node_id, desired: plan::desired_type(&member, ordinal) })
                }
                None => complete = false,
            }
        }
        if !complete {
            missing.push(format!("{founder} (node identities not issued yet)"));
        }
    }
    if missing.is_empty() {
        Ok(Ok(nodes))
    } else {
        Ok(Err(format!("waiting for founding members: {}", missing.join(", "))))
    }
}

/// The Members of chain `name`.
pub async fn chain_members(ctx: &Context, namespace: &str, name: &str) -> Result<Vec<Member>, Error> {
    let members: Api<Member> = Api::namespaced(ctx.client.clone(), namespace);
    let list = members.list(&Default::default()).await.map_err(kube_err("listing Members"))?;
    Ok(list.items.into_iter().filter(|member| member.spec.chain_ref.name == name).collect())
}

/// The chain's status from its members' statuses.
fn summarize(status: &mut ConsortiumChainStatus, chain: &ConsortiumChain, members: &[Member]) {
    let generation = chain.metadata.generation;
    let mut counts = NodeCounts::default();
    let mut versions = BTreeSet::new();
    let mut modes = BTreeSet::new();
    let mut height = 0;
    for member in members {
        counts.desired += plan::desired_nodes(member);
        for node in member.status.iter().flat_map(|status| &status.nodes) {
            counts.ready += u32::from(node.ready);
            match node.registered_type {
                NodeType::Consensus => counts.consensus += 1,
                NodeType::Observer => counts.observer += 1,
                NodeType::None => {}
            }
            versions.extend(node.version.clone());
            // A node that did not answer counts as a mode of its own: unknown.
            modes.insert(node.consensus_mode.clone());
            height = height.max(node.height.unwrap_or_default());
        }
    }
    status.members = members.iter().map(ResourceExt::name_any).collect();
    status.nodes = counts;
    status.versions = versions.into_iter().collect();
    // The chain's mode is the one every node reports; during a switch, or while a node is silent,
    // there is none.
    status.consensus_mode = match modes.len() {
        1 => modes.into_iter().next().flatten(),
        _ => None,
    };
    status.height = status.height.max(height);
    let all_ready = counts.desired > 0 && counts.ready == counts.desired;
    let degraded_members: Vec<String> = members
        .iter()
        .filter(|member| member.status.as_ref().is_some_and(|status| conditions::is_true(&status.conditions, DEGRADED)))
        .map(ResourceExt::name_any)
        .collect();
    if all_ready && status.height > 0 {
        conditions::set(
            &mut status.conditions,
            READY,
            true,
            "Running",
            format!("{} nodes ready at height {}", counts.ready, status.height),
            generation,
        );
        conditions::set(&mut status.conditions, PROGRESSING, false, "Running", "", generation);
        status.phase = ChainPhase::Running;
    } else {
        let message = format!("{} of {} nodes ready", counts.ready, counts.desired);
        conditions::set(&mut status.conditions, READY, false, "NodesNotReady", message.clone(), generation);
        conditions::set(&mut status.conditions, PROGRESSING, true, "NodesStarting", message, generation);
        status.phase = ChainPhase::Creating;
    }
    if degraded_members.is_empty() {
        conditions::set(&mut status.conditions, DEGRADED, false, "AsExpected", "", generation);
    } else {
        let message = format!("members degraded: {}", degraded_members.join(", "));
        conditions::set(&mut status.conditions, DEGRADED, true, "MemberDegraded", message, generation);
        status.phase = ChainPhase::Degraded;
    }
}

/// How soon a failed reconcile is retried.
pub fn error_policy(chain: Arc<ConsortiumChain>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(chain = %chain.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed("chain", error);
    super::report_error(&ctx, &chain, chain.status.clone().unwrap_or_default(), error);
    Action::requeue(Duration::from_secs(5))
}
