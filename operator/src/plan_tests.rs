//! Planning tests: the objects a spec yields, without an API server.

use alloy_primitives::{Address, B256};
use bcos_sdk::{
    config::PeerAddress,
    crypto::NodeKey,
    pki::{ChainCa, Validity},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use super::*;
use crate::crd::{ConsortiumChainSpec, MemberSpec};

fn chain(founders: &[&str]) -> ConsortiumChain {
    let spec: ConsortiumChainSpec = serde_json::from_value(serde_json::json!({
        "chainId": 20200,
        "image": {"repository": "ghcr.io/bcos-rs/bcos-node"},
        "version": "0.1.0",
        "foundingMembers": founders,
        "consensus": {"mode": "pbft", "blockIntervalMs": 300},
    }))
    .expect("a valid spec");
    ConsortiumChain {
        metadata: ObjectMeta { name: Some("trade".into()), namespace: Some("bcos".into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn member(name: &str, consensus: u32, observers: u32) -> Member {
    let spec: MemberSpec = serde_json::from_value(serde_json::json!({
        "chainRef": {"name": "trade"},
        "institution": {"name": format!("Bank {name}"), "id": name},
        "consensusNodes": consensus,
        "observerNodes": observers,
        "storage": {"size": "5Gi", "storageClassName": "fast"},
        "scheduling": {"nodeSelector": {"zone": "a"}},
    }))
    .expect("a valid spec");
    Member {
        metadata: ObjectMeta { name: Some(name.into()), namespace: Some("bcos".into()), ..Default::default() },
        spec,
        status: None,
    }
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "bcos.dev/v1alpha1".into(),
        kind: "Member".into(),
        name: "a".into(),
        uid: "1".into(),
        controller: Some(true),
        ..Default::default()
    }
}

fn ca_pem() -> String {
    ChainCa::generate("trade", Validity::starting(std::time::SystemTime::now(), std::time::Duration::from_secs(3600)))
        .expect("CA")
        .cert()
        .pem()
        .to_owned()
}

fn node(pod: &str, desired: NodeType) -> NodeIdentity {
    NodeIdentity { pod: pod.into(), node_id: NodeKey::generate().node_id(), desired }
}

#[test]
fn node_types_follow_ordinals_consensus_first() {
    let member = member("a", 2, 1);
    let types: Vec<NodeType> = (0..4).map(|ordinal| desired_type(&member, ordinal)).collect();
    assert_eq!(types, [NodeType::Consensus, NodeType::Consensus, NodeType::Observer, NodeType::None]);
    assert_eq!(desired_nodes(&member), 3);
}

#[test]
fn genesis_lists_founders_with_their_stable_addresses() {
    let admin = Address::repeat_byte(7);
    let nodes = [
        node("trade-a-0", NodeType::Consensus),
        node("trade-b-0", NodeType::Consensus),
        node("trade-b-1", NodeType::Observer),
    ];
    let genesis = genesis(&chain(&["a", "b"]), "bcos", &ca_pem(), admin, &nodes, 1_000).expect("genesis");
    assert_eq!(genesis.chain_id, 20200);
    assert_eq!(genesis.system_config.block_interval_ms, 300);
    assert_eq!(genesis.consensus_nodes, [nodes[0].node_id, nodes[1].node_id]);
    assert_eq!(genesis.observer_nodes, [nodes[2].node_id]);
    assert_eq!(genesis.node_addresses[&nodes[2].node_id], "trade-b-1.trade-peers.bcos.svc.cluster.local:30300");
    assert_eq!(genesis.committee.members, [admin]);
    assert_eq!(genesis.committee.threshold, 1);
    assert!(genesis.ca_cert.is_some());
}

#[test]
fn genesis_refuses_what_the_schema_cannot_rule_out() {
    let admin = Address::repeat_byte(7);
    let observers_only = [node("trade-a-0", NodeType::Observer)];
    assert_eq!(
        genesis(&chain(&["a"]), "bcos", &ca_pem(), admin, &observers_only, 0),
        Err(GenesisError::NoConsensusNode)
    );
    let mut high = chain(&["a"]);
    high.spec.committee.threshold = 2;
    let nodes = [node("trade-a-0", NodeType::Consensus)];
    assert_eq!(
        genesis(&high, "bcos", &ca_pem(), admin, &nodes, 0),
        Err(GenesisError::ThresholdTooHigh { threshold: 2, members: 1 })
    );
    high.spec.committee.members = vec!["0x12".into()];
    assert_eq!(
        genesis(&high, "bcos", &ca_pem(), admin, &nodes, 0),
        Err(GenesisError::BadCommitteeMember("0x12".into()))
    );
}

#[test]
fn a_node_dials_genesis_nodes_and_siblings_but_not_itself() {
    let nodes = [node("trade-a-0", NodeType::Consensus), node("trade-b-0", NodeType::Consensus)];
    let genesis = genesis(&chain(&["a", "b"]), "bcos", &ca_pem(), Address::repeat_byte(1), &nodes, 0).expect("genesis");
    let newcomer = B256::repeat_byte(9);
    let sibling = PeerAddress {
        node_id: B256::repeat_byte(8),
        address: "trade-c-1.trade-peers.bcos.svc.cluster.local:30300".into(),
    };
    let own = PeerAddress { node_id: newcomer, address: "trade-c-0.trade-peers.bcos.svc.cluster.local:30300".into() };
    let peers = peers_of(newcomer, &genesis, &[own, sibling.clone()]);
    let ids: Vec<B256> = peers.iter().map(|peer| peer.node_id).collect();
    assert_eq!(peers.len(), 3);
    assert!(ids.contains(&nodes[0].node_id) && ids.contains(&nodes[1].node_id) && ids.contains(&sibling.node_id));
    assert!(!ids.contains(&newcomer));
    let config = node_config("trade-c-0", peers);
    assert_eq!(config.node_key_file, std::path::Path::new("/etc/bcos/keys/trade-c-0.key"));
    config.to_yaml(std::path::Path::new("trade-c-0.yaml")).expect("a valid node file");
}

#[test]
fn the_stateful_set_runs_the_chains_version_with_probes_volumes_and_placement() {
    let sts = stateful_set(&chain(&["a"]), &member("a", 1, 1), 2, owner());
    assert_eq!(sts.metadata.name.as_deref(), Some("trade-a"));
    let spec = sts.spec.expect("spec");
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.service_name.as_deref(), Some("trade-peers"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    let pod = spec.template.spec.expect("pod spec");
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("ghcr.io/bcos-rs/bcos-node:0.1.0"));
    assert_eq!(
        container.args.as_deref(),
        Some(&["run".to_owned(), "--config".to_owned(), "/etc/bcos/config/$(POD_NAME).yaml".to_owned()][..])
    );
    let readiness =
        container.readiness_probe.as_ref().and_then(|probe| probe.http_get.as_ref()).expect("readiness probe");
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    let liveness = container.liveness_probe.as_ref().and_then(|probe| probe.http_get.as_ref()).expect("liveness probe");
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let mounts: Vec<&str> = container.volume_mounts.iter().flatten().map(|mount| mount.mount_path.as_str()).collect();
    assert_eq!(mounts, ["/etc/bcos/genesis", "/etc/bcos/config", "/etc/bcos/keys", "/var/lib/bcos"]);
    assert_eq!(pod.node_selector.as_ref().and_then(|selector| selector.get("zone")).map(String::as_str), Some("a"));
    assert!(pod.affinity.is_some(), "spread across nodes by default");
    let annotations = spec.template.metadata.and_then(|meta| meta.annotations).expect("annotations");
    assert_eq!(annotations.get("prometheus.io/port").map(String::as_str), Some("9100"));
    let claim = &spec.volume_claim_templates.expect("claims")[0];
    assert_eq!(claim.spec.as_ref().and_then(|spec| spec.storage_class_name.as_deref()), Some("fast"));
    assert_eq!(sts.metadata.owner_references.expect("owner")[0].kind, "Member");
    let strategy = spec.update_strategy.and_then(|strategy| strategy.type_);
    assert_eq!(strategy.as_deref(), Some("OnDelete"), "only the chain's rollout replaces Pods");
}

#[test]
fn the_stateful_set_image_follows_the_rollout_not_the_spec() {
    use crate::crd::{ConsortiumChainStatus, RolloutPhase, RolloutStatus};
    let image = |chain: &ConsortiumChain| {
        let sts = stateful_set(chain, &member("a", 1, 0), 1, owner());
        sts.spec.and_then(|spec| spec.template.spec).and_then(|pod| pod.containers[0].image.clone())
    };
    let mut chain = chain(&["a"]);
    chain.spec.version = "0.2.0".into();
    chain.status = Some(ConsortiumChainStatus { version: Some("0.1.0".into()), ..Default::default() });
    assert_eq!(image(&chain).as_deref(), Some("ghcr.io/bcos-rs/bcos-node:0.1.0"), "no rollout started yet");
    let rollout = RolloutStatus {
        from_version: "0.1.0".into(),
        to_version: "0.2.0".into(),
        phase: RolloutPhase::Progressing,
        message: String::new(),
        started_at: String::new(),
        nodes: Vec::new(),
    };
    chain.status.as_mut().expect("status").rollout = Some(rollout);
    assert_eq!(image(&chain).as_deref(), Some("ghcr.io/bcos-rs/bcos-node:0.2.0"));
    chain.status.as_mut().and_then(|status| status.rollout.as_mut()).expect("rollout").phase =
        RolloutPhase::RollingBack;
    assert_eq!(image(&chain).as_deref(), Some("ghcr.io/bcos-rs/bcos-node:0.1.0"));
}

#[test]
fn the_disruption_budget_is_the_consensus_fault_budget() {
    use crate::crd::ConsensusMode;
    assert_eq!([1, 3, 4, 7].map(|nodes| ConsensusMode::Pbft.fault_budget(nodes)), [0, 0, 1, 2]);
    assert_eq!([1, 3, 4, 5].map(|nodes| ConsensusMode::Raft.fault_budget(nodes)), [0, 1, 1, 2]);
    let spec = disruption_budget_spec("trade", 1);
    assert_eq!(spec["maxUnavailable"], 1);
    assert_eq!(spec["selector"]["matchLabels"]["bcos.dev/node-type"], "consensus");
}
