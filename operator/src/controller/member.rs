//! The Member controller: the member CA and node identities, the node files, the StatefulSet and
//! RPC Service, admission of the member's nodes into the chain's registry by governance, leaving
//! the chain when the Member is deleted (finalizer), and the member's status from its nodes.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use alloy_primitives::{B256, Bytes};
use bcos_sdk::{
    config::{Genesis, PeerAddress},
    governance::{Governor, ProposalOutcome},
    pki::Member as Institution,
    types::system::{CERT_REVOCATION_ADDRESS, ICertRevocation, INodeRegistry, NODE_REGISTRY_ADDRESS},
};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{
        controller::Action,
        finalizer::{Event as Finalizer, finalizer},
    },
};

use super::{Context, Error, RESYNC, WAIT, kube_err, patch_status};
use crate::{
    conditions::{self, ADMITTED, DEGRADED, PROGRESSING, READY},
    crd::{
        CertificateStatus, ConsortiumChain, Member, MemberPhase, MemberStatus, NodeStatus, NodeType, PendingProposal,
    },
    identity,
    names::{self, MEMBER_FINALIZER},
    nodes::{self, PodEndpoint, Registry},
    plan,
};

/// Blocks a governance proposal of the operator stays open for other members' votes.
const PROPOSAL_LIFETIME: u64 = 100_000;
/// How far behind the chain's head a node may be and still count as caught up.
const CAUGHT_UP_BLOCKS: u64 = 2;

/// Brings one member to its spec, or takes it out of the chain when it is being deleted.
pub async fn reconcile(member: Arc<Member>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = member.namespace().unwrap_or_default();
    let members: Api<Member> = Api::namespaced(ctx.client.clone(), &namespace);
    finalizer(&members, MEMBER_FINALIZER, member, |event| async {
        match event {
            Finalizer::Apply(member) => apply(member, ctx.clone()).await,
            Finalizer::Cleanup(member) => leave(member, ctx.clone()).await,
        }
    })
    .await
    .map_err(|error| match error {
        kube::runtime::finalizer::Error::ApplyFailed(error) | kube::runtime::finalizer::Error::CleanupFailed(error) => {
            error
        }
        other => Error::Finalizer(other.to_string()),
    })
}

/// What `apply` has in hand once the chain and the identities exist.
struct Setting {
    chain: ConsortiumChain,
    chain_name: String,
    namespace: String,
}

async fn apply(member: Arc<Member>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = member.namespace().unwrap_or_default();
    let member_name = member.name_any();
    let members: Api<Member> = Api::namespaced(ctx.client.clone(), &namespace);
    let generation = member.metadata.generation;
    let mut status = member.status.clone().unwrap_or_default();
    let chain_name = member.spec.chain_ref.name.clone();

    let wait = |status: &mut MemberStatus, reason: &str, message: String| {
        conditions::set(&mut status.conditions, READY, false, reason, message.clone(), generation);
        conditions::set(&mut status.conditions, PROGRESSING, true, reason, message, generation);
        status.phase = MemberPhase::Pending;
        status.observed_generation = generation;
    };
    if names::stateful_set(&chain_name, &member_name).len() > names::MAX_STATEFUL_SET_NAME {
        let message = format!(
            "chain name + member name are too long: \"{}\" exceeds {} characters, too long for Pod labels",
            names::stateful_set(&chain_name, &member_name),
            names::MAX_STATEFUL_SET_NAME
        );
        conditions::set(&mut status.conditions, DEGRADED, true, "InvalidSpec", message.clone(), generation);
        status.phase = MemberPhase::Degraded;
        ctx.event(member.as_ref(), true, "InvalidSpec", message).await;
        patch_status(&members, member.as_ref(), &status).await?;
        return Ok(Action::requeue(RESYNC * 6));
    }
    let chains: Api<ConsortiumChain> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(chain) =
        chains.get_opt(&chain_name).await.map_err(kube_err(format!("reading ConsortiumChain {chain_name}")))?
    else {
        wait(
            &mut status,
            "ChainNotFound",
            format!("waiting for ConsortiumChain {chain_name} in namespace {namespace}"),
        );
        patch_status(&members, member.as_ref(), &status).await?;
        return Ok(Action::requeue(WAIT * 5));
    };
    status.founding = chain.spec.founding_members.contains(&member_name);

    let owner = super::owner_of(member.as_ref())?;
    let chain_owner = super::owner_of(&chain)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let (chain_ca, _) = identity::chain_ca(&secrets, &chain, chain_owner.clone()).await?;
    let institution =
        Institution { name: member.spec.institution.name.clone(), id: member.spec.institution.id.clone() };
    let (member_ca, created) = identity::member_ca(
        &secrets,
        &chain_name,
        &member_name,
        &namespace,
        &institution,
        &chain_ca,
        chain.spec.ca.member_validity_days,
        owner.clone(),
    )
    .await?;
    if created {
        ctx.event(
            member.as_ref(),
            false,
            "MemberCaCreated",
            format!("member CA for {} issued by the chain CA", institution.name),
        )
        .await;
    }
    status.certificate = Some(certificate_status(member_ca.cert().der(), member_ca.cert().serial().to_string()));

    let pods = pods_api(&ctx, &namespace);
    let setting = Setting { chain, chain_name: chain_name.clone(), namespace: namespace.clone() };
    let replicas = replicas_to_keep(&status, &member);
    let pod_names: Vec<String> = (0..replicas).map(|ordinal| names::pod(&chain_name, &member_name, ordinal)).collect();
    let (node_ids, issued) = identity::node_identities(
        &secrets,
        &chain_name,
        &member_name,
        &namespace,
        &pod_names,
        &member_ca,
        setting.chain.spec.ca.node_validity_days,
        owner.clone(),
    )
    .await?;
    if issued > 0 {
        ctx.event(
            member.as_ref(),
            false,
            "NodeIdentitiesIssued",
            format!("{issued} node keys and certificates issued"),
        )
        .await;
    }

    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(genesis_map) =
        config_maps.get_opt(&names::genesis_config_map(&chain_name)).await.map_err(kube_err("reading the genesis"))?
    else {
        wait(&mut status, "WaitingForGenesis", format!("waiting for the genesis of chain {chain_name}"));
        patch_status(&members, member.as_ref(), &status).await?;
        return Ok(Action::requeue(WAIT));
    };
    let genesis_yaml =
        genesis_map.data.as_ref().and_then(|data| data.get(names::GENESIS_KEY)).cloned().unwrap_or_default();
    let genesis = Genesis::parse(&genesis_yaml, std::path::Path::new(&names::genesis_config_map(&chain_name)))?;

    let siblings: Vec<PeerAddress> = pod_names
        .iter()
        .filter_map(|pod| {
            node_ids.get(pod).map(|node_id| PeerAddress {
                node_id: *node_id,
                address: names::p2p_address(&chain_name, &namespace, pod),
            })
        })
        .collect();
    let mut files = BTreeMap::new();
    for pod in &pod_names {
        let Some(node_id) = node_ids.get(pod) else { continue };
        let config = plan::node_config(pod, plan::peers_of(*node_id, &genesis, &siblings));
        files
            .insert(names::node_config_file(pod), config.to_yaml(std::path::Path::new(&names::node_config_file(pod)))?);
    }
    ctx.apply(&plan::node_config_map(&chain_name, &member_name, &namespace, owner.clone(), files)).await?;
    ctx.apply(&plan::stateful_set(&setting.chain, &member, replicas, owner.clone())).await?;
    ctx.apply(&plan::rpc_service(&chain_name, &member_name, &namespace, owner)).await?;

    let own_pods = nodes::pods(&pods, &names::member_selector(&chain_name, &member_name))
        .await
        .map_err(kube_err("listing Pods"))?;
    label_node_types(&pods, &member, &own_pods, &chain_name, &member_name).await?;
    let chain_pods =
        nodes::pods(&pods, &format!("{}={chain_name}", names::CHAIN_LABEL)).await.map_err(kube_err("listing Pods"))?;
    let mut node_statuses = observe(&member, &own_pods, &node_ids, &pod_names).await;
    let admin = identity::admin_key(&secrets, &setting.chain, chain_owner).await?;
    let chain_height = chain_height(&setting, &node_statuses);

    let mut governor = nodes::governor(&chain_pods, &admin).await;
    let registry = match governor.as_mut() {
        Some(governor) => Some(
            Registry::read(governor)
                .await
                .map_err(|source| Error::Governance { what: "reading the node registry".into(), source })?,
        ),
        None => None,
    };
    if let Some(registry) = &registry {
        for node in &mut node_statuses {
            if let Ok(id) = node.node_id.parse::<B256>() {
                node.registered_type = registry.type_of(&id);
            }
        }
    }
    status.nodes = node_statuses;
    status.observed_generation = generation;

    let pending_open = status.pending_proposal.as_ref().is_some_and(|pending| pending.expires_at_block >= chain_height);
    if !pending_open {
        status.pending_proposal = None;
    }
    let admitted = status.nodes.iter().all(|node| node.desired_type == node.registered_type);
    if let (Some(governor), false, false) = (governor.as_mut(), admitted, pending_open) {
        admit_next(&ctx, &member, &setting, governor, &mut status, chain_height).await?;
    }

    let ready = status.nodes.iter().filter(|node| node.desired_type != NodeType::None && node.ready).count();
    let desired = plan::desired_nodes(&member) as usize;
    let admitted = status.nodes.iter().all(|node| node.desired_type == node.registered_type);
    match (&registry, admitted) {
        (None, _) => conditions::set(
            &mut status.conditions,
            ADMITTED,
            false,
            "ChainUnreachable",
            "no ready node of the chain answers yet",
            generation,
        ),
        (Some(_), true) => conditions::set(
            &mut status.conditions,
            ADMITTED,
            true,
            "Registered",
            "every node is in the registry as the spec asks",
            generation,
        ),
        (Some(_), false) => {
            let message = match &status.pending_proposal {
                Some(pending) => format!("proposal {} ({}) awaits committee votes", pending.id, pending.action),
                None => "nodes are being admitted".to_owned(),
            };
            conditions::set(&mut status.conditions, ADMITTED, false, "Admitting", message, generation)
        }
    }
    let all_ready = ready == desired && admitted && registry.is_some();
    if all_ready {
        conditions::set(
            &mut status.conditions,
            READY,
            true,
            "Running",
            format!("{ready} nodes ready and admitted"),
            generation,
        );
        conditions::set(&mut status.conditions, PROGRESSING, false, "Running", "", generation);
        status.phase = MemberPhase::Running;
    } else {
        let message = format!("{ready} of {desired} nodes ready");
        conditions::set(&mut status.conditions, READY, false, "NodesNotReady", message.clone(), generation);
        conditions::set(&mut status.conditions, PROGRESSING, true, "NodesStarting", message, generation);
        status.phase = MemberPhase::Joining;
    }
    conditions::set(&mut status.conditions, DEGRADED, false, "AsExpected", "", generation);
    patch_status(&members, member.as_ref(), &status).await?;
    Ok(Action::requeue(if all_ready { RESYNC } else { WAIT }))
}

fn pods_api(ctx: &Context, namespace: &str) -> Api<Pod> {
    Api::namespaced(ctx.client.clone(), namespace)
}

/// The spec's node count, or more while nodes beyond it are still in the registry: a node
/// leaves the registry before its Pod goes, so the chain never counts on a node that is gone.
fn replicas_to_keep(status: &MemberStatus, member: &Member) -> u32 {
    let desired = plan::desired_nodes(member);
    let last_registered = status
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| node.registered_type != NodeType::None)
        .map(|(ordinal, _)| u32::try_from(ordinal + 1).unwrap_or(u32::MAX))
        .max()
        .unwrap_or(0);
    last_registered.max(desired)
}

/// Labels each Pod with what the spec asks it to be, for the consensus disruption budget.
async fn label_node_types(
    api: &Api<Pod>,
    member: &Member,
    own_pods: &[PodEndpoint],
    chain: &str,
    member_name: &str,
) -> Result<(), Error> {
    for pod in own_pods {
        let ordinal = pod.name.rsplit('-').next().and_then(|ordinal| ordinal.parse::<u32>().ok());
        let Some(ordinal) = ordinal.filter(|_| pod.name.starts_with(&names::stateful_set(chain, member_name))) else {
            continue;
        };
        let wanted = match plan::desired_type(member, ordinal) {
            NodeType::Consensus => "consensus",
            NodeType::Observer => "observer",
            NodeType::None => "none",
        };
        if pod.node_type_label.as_deref() != Some(wanted) {
            let patch = serde_json::json!({"metadata": {"labels": {names::NODE_TYPE_LABEL: wanted}}});
            api.patch(&pod.name, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(kube_err(format!("labelling Pod {}", pod.name)))?;
        }
    }
    Ok(())
}

/// Each node's status from its Pod and its gRPC status.
async fn observe(
    member: &Member,
    own_pods: &[PodEndpoint],
    node_ids: &BTreeMap<String, B256>,
    pod_names: &[String],
) -> Vec<NodeStatus> {
    let mut statuses = Vec::new();
    for (ordinal, name) in pod_names.iter().enumerate() {
        let pod = own_pods.iter().find(|pod| &pod.name == name);
        let reported = match pod {
            Some(pod) => nodes::status(pod).await,
            None => None,
        };
        statuses.push(NodeStatus {
            name: name.clone(),
            node_id: node_ids.get(name).map(|id| id.to_string()).unwrap_or_default(),
            desired_type: plan::desired_type(member, u32::try_from(ordinal).unwrap_or(u32::MAX)),
            registered_type: NodeType::None,
            ready: pod.is_some_and(|pod| pod.ready),
            height: reported.as_ref().map(|status| status.height),
            version: reported.as_ref().map(|status| status.version.clone()),
            peers: reported.as_ref().map(|status| status.peers),
            consensus_mode: reported.as_ref().map(|status| status.consensus_mode.clone()),
        });
    }
    statuses
}

/// The chain's head as far as this member can tell: its nodes' heights and the chain's status.
fn chain_height(setting: &Setting, nodes: &[NodeStatus]) -> u64 {
    let chain_height = setting.chain.status.as_ref().map(|status| status.height).unwrap_or_default();
    nodes.iter().filter_map(|node| node.height).fold(chain_height, u64::max)
}

/// Takes the next admission step for the member's nodes: add a missing node as an observer
/// (with its address), then promote a caught-up observer the spec wants voting, then remove
/// nodes the spec no longer has. One step per reconcile, so each shows in the status and Events.
async fn admit_next(
    ctx: &Context,
    member: &Member,
    setting: &Setting,
    governor: &mut Governor,
    status: &mut MemberStatus,
    chain_height: u64,
) -> Result<(), Error> {
    let nodes = status.nodes.clone();
    for node in &nodes {
        let Ok(node_id) = node.node_id.parse::<B256>() else { continue };
        let step = match (node.desired_type, node.registered_type) {
            (NodeType::Consensus | NodeType::Observer, NodeType::None) => Some(("AddObserver", "added as an observer")),
            (NodeType::Consensus, NodeType::Observer)
                if node.ready && node.height.is_some_and(|height| height + CAUGHT_UP_BLOCKS >= chain_height) =>
            {
                Some(("AdmitConsensus", "admitted as a consensus node"))
            }
            (NodeType::None, NodeType::Consensus | NodeType::Observer) => {
                Some(("RemoveNode", "removed from the chain"))
            }
            _ => None,
        };
        let Some((action, done)) = step else { continue };
        let outcome = match action {
            "AddObserver" => {
                let outcome = propose(
                    governor,
                    NODE_REGISTRY_ADDRESS,
                    &INodeRegistry::addObserverNodeCall { nodeId: node_id },
                    &node.name,
                )
                .await?;
                if matches!(outcome, ProposalOutcome::Executed { .. }) {
                    let address = names::p2p_address(&setting.chain_name, &setting.namespace, &node.name);
                    propose(
                        governor,
                        NODE_REGISTRY_ADDRESS,
                        &INodeRegistry::setNodeAddressCall { nodeId: node_id, p2pAddress: address },
                        &node.name,
                    )
                    .await?;
                }
                outcome
            }
            "AdmitConsensus" => {
                propose(
                    governor,
                    NODE_REGISTRY_ADDRESS,
                    &INodeRegistry::addConsensusNodeCall { nodeId: node_id },
                    &node.name,
                )
                .await?
            }
            _ => {
                propose(governor, NODE_REGISTRY_ADDRESS, &INodeRegistry::removeNodeCall { nodeId: node_id }, &node.name)
                    .await?
            }
        };
        record(ctx, member, status, action, &node.name, done, outcome).await;
        return Ok(());
    }
    Ok(())
}

async fn propose<C: alloy_sol_types::SolCall>(
    governor: &mut Governor,
    target: alloy_primitives::Address,
    call: &C,
    node: &str,
) -> Result<ProposalOutcome, Error> {
    governor
        .propose(target, call, PROPOSAL_LIFETIME)
        .await
        .map_err(|source| Error::Governance { what: format!("governance proposal for node {node}"), source })
}

/// Reports a proposal's outcome in Events and the status.
async fn record(
    ctx: &Context,
    member: &Member,
    status: &mut MemberStatus,
    action: &str,
    node: &str,
    done: &str,
    outcome: ProposalOutcome,
) {
    let (warning, note) = outcome_note(&outcome, &format!("node {node}"), done);
    if let ProposalOutcome::Pending { id, expires_at_block } = outcome {
        status.pending_proposal =
            Some(PendingProposal { id: id.to_string(), action: format!("{action} {node}"), expires_at_block });
    }
    ctx.node_event(member, node, warning, action, note).await;
}

/// Whether a proposal's outcome about `subject` is a warning, and its Event message.
fn outcome_note(outcome: &ProposalOutcome, subject: &str, done: &str) -> (bool, String) {
    match outcome {
        ProposalOutcome::Executed { block, .. } => (false, format!("{subject} {done} in block {block}")),
        ProposalOutcome::Pending { id, .. } => (false, format!("proposal {id} for {subject} awaits committee votes")),
        ProposalOutcome::Failed { id, reason } => (true, format!("proposal {id} for {subject} failed: {reason}")),
    }
}

/// Takes the member out of the chain before its resources go: every node of it leaves the
/// registry, then its member CA is revoked, so its certificates are refused from then on.
async fn leave(member: Arc<Member>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = member.namespace().unwrap_or_default();
    let member_name = member.name_any();
    let chain_name = member.spec.chain_ref.name.clone();
    let chains: Api<ConsortiumChain> = Api::namespaced(ctx.client.clone(), &namespace);
    let chain = chains.get_opt(&chain_name).await.map_err(kube_err(format!("reading ConsortiumChain {chain_name}")))?;
    let Some(chain) = chain.filter(|chain| chain.meta().deletion_timestamp.is_none()) else {
        // The chain itself is going: there is nothing left to leave.
        return Ok(Action::await_change());
    };
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(chain_owner) = chain.controller_owner_ref(&()) else { return Ok(Action::await_change()) };
    let admin = identity::admin_key(&secrets, &chain, chain_owner).await?;
    let pods = pods_api(&ctx, &namespace);
    let chain_pods =
        nodes::pods(&pods, &format!("{}={chain_name}", names::CHAIN_LABEL)).await.map_err(kube_err("listing Pods"))?;
    // Another member's node governs, so a member's own nodes can leave while running.
    let others: Vec<PodEndpoint> = chain_pods
        .into_iter()
        .filter(|pod| !pod.name.starts_with(&format!("{}-", names::stateful_set(&chain_name, &member_name))))
        .collect();
    let Some(mut governor) = nodes::governor(&others, &admin).await else {
        let note = format!("cannot leave chain {chain_name} yet: no other member's node is ready");
        ctx.event(member.as_ref(), true, "LeaveBlocked", note).await;
        return Ok(Action::requeue(WAIT * 3));
    };
    let registry = Registry::read(&mut governor)
        .await
        .map_err(|source| Error::Governance { what: "reading the node registry".into(), source })?;
    let ids = identity::recorded_node_ids(&secrets, &chain_name, &member_name).await?;
    for (pod, node_id) in &ids {
        if registry.type_of(node_id) == NodeType::None {
            continue;
        }
        let outcome =
            propose(&mut governor, NODE_REGISTRY_ADDRESS, &INodeRegistry::removeNodeCall { nodeId: *node_id }, pod)
                .await?;
        let mut scratch = MemberStatus::default();
        let executed = matches!(outcome, ProposalOutcome::Executed { .. });
        record(&ctx, member.as_ref(), &mut scratch, "RemoveNode", pod, "removed from the chain", outcome).await;
        if !executed {
            return Ok(Action::requeue(RESYNC));
        }
    }
    if let Some(secret) = secrets
        .get_opt(&names::member_ca_secret(&chain_name, &member_name))
        .await
        .map_err(kube_err("reading the member CA"))?
    {
        let pem = secret
            .data
            .as_ref()
            .and_then(|data| data.get(names::CA_CERT_KEY))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned());
        if let Some(cert) = pem.and_then(|pem| {
            bcos_sdk::pki::IssuedCert::from_pem(&pem, bcos_sdk::pki::CertRole::MemberCa, "member CA").ok()
        }) {
            let serial = Bytes::copy_from_slice(cert.serial().as_bytes());
            let revoked = governor
                .view(CERT_REVOCATION_ADDRESS, &ICertRevocation::isRevokedCall { serial: serial.clone() })
                .await
                .map_err(|source| Error::Governance { what: "reading the revocation list".into(), source })?;
            if !revoked {
                let call =
                    ICertRevocation::revokeCall { serial, reason: format!("member {member_name} left the chain") };
                let outcome = governor
                    .propose(CERT_REVOCATION_ADDRESS, &call, PROPOSAL_LIFETIME)
                    .await
                    .map_err(|source| Error::Governance { what: "revoking the member CA".into(), source })?;
                let executed = matches!(outcome, ProposalOutcome::Executed { .. });
                let subject = format!("member {member_name}");
                let (warning, note) = outcome_note(&outcome, &subject, "had its member CA revoked");
                ctx.event(member.as_ref(), warning, "RevokeMemberCa", note).await;
                if !executed {
                    return Ok(Action::requeue(RESYNC));
                }
            }
        }
    }
    ctx.event(member.as_ref(), false, "LeftChain", format!("{member_name} left chain {chain_name}")).await;
    Ok(Action::await_change())
}

/// The member CA certificate's serial and expiry.
fn certificate_status(der: &[u8], serial: String) -> CertificateStatus {
    let not_after = x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| k8s_openapi::jiff::Timestamp::from_second(cert.validity().not_after.timestamp()).ok())
        .map(|time| time.to_string())
        .unwrap_or_default();
    CertificateStatus { serial, not_after }
}

/// How soon a failed reconcile is retried; the error is shown in the Degraded condition.
pub fn error_policy(member: Arc<Member>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(member = %member.name_any(), %error, "reconcile failed");
    ctx.metrics.reconcile_failed("member", error);
    super::report_error(&ctx, &member, member.status.clone().unwrap_or_default(), error);
    Action::requeue(Duration::from_secs(5))
}
