//! The objects a chain and its members should have, computed from their specs and what the
//! operator has observed: pure functions, tested without an API server. The controllers apply
//! what these return.

use std::{collections::BTreeMap, path::PathBuf};

use alloy_primitives::{Address, B256};
use bcos_sdk::{
    config::{
        Committee, Genesis, GrpcConfig, MetricsConfig, NodeConfig, P2pConfig, PeerAddress, Permissions, RpcConfig,
        StorageConfig, SystemConfig, TxPoolConfig,
    },
    types::system::Role,
};
use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy},
        core::v1::{
            Affinity, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
            ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
            PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretVolumeSource, SecurityContext, Service,
            ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};

use crate::{
    crd::{ConsortiumChain, Member, NodeType},
    names::{self, CHAIN_LABEL, NODE_TYPE_LABEL},
};

/// One node of a member: its Pod name and node id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The Pod's name.
    pub pod: String,
    /// The node id (Ed25519 public key).
    pub node_id: B256,
    /// What the member's spec asks it to be.
    pub desired: NodeType,
}

/// What a member's spec asks node `ordinal` to be: consensus nodes first, then observers.
pub fn desired_type(member: &Member, ordinal: u32) -> NodeType {
    if ordinal < member.spec.consensus_nodes {
        NodeType::Consensus
    } else if ordinal < member.spec.consensus_nodes.saturating_add(member.spec.observer_nodes) {
        NodeType::Observer
    } else {
        NodeType::None
    }
}

/// Nodes a member's spec asks for.
pub fn desired_nodes(member: &Member) -> u32 {
    member.spec.consensus_nodes.saturating_add(member.spec.observer_nodes)
}

/// Problems with a genesis that the spec alone cannot rule out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GenesisError {
    /// No founding member asks for a consensus node.
    #[error("the founding members ask for no consensus node; at least one is needed")]
    NoConsensusNode,
    /// A committee address is malformed.
    #[error("committee member {0:?} is not a 0x-prefixed 20-byte address")]
    BadCommitteeMember(String),
    /// The threshold exceeds the committee.
    #[error("committee threshold {threshold} exceeds its {members} members (the operator's key included)")]
    ThresholdTooHigh {
        /// The spec's threshold.
        threshold: u32,
        /// Committee size.
        members: usize,
    },
    /// The sdk refused the result.
    #[error("{0}")]
    Invalid(String),
}

/// The genesis of `chain`, made from its founding members' nodes. `ca_pem` is the chain CA's
/// certificate and `admin` the operator's governance account.
pub fn genesis(
    chain: &ConsortiumChain,
    namespace: &str,
    ca_pem: &str,
    admin: Address,
    founders: &[NodeIdentity],
    timestamp_ms: u64,
) -> Result<Genesis, GenesisError> {
    let name = chain.metadata.name.as_deref().unwrap_or_default();
    let spec = &chain.spec;
    let of_type = |wanted| founders.iter().filter(move |node| node.desired == wanted).map(|node| node.node_id);
    let consensus_nodes: Vec<B256> = of_type(NodeType::Consensus).collect();
    if consensus_nodes.is_empty() {
        return Err(GenesisError::NoConsensusNode);
    }
    let mut members = vec![admin];
    for member in &spec.committee.members {
        let address: Address = member.parse().map_err(|_| GenesisError::BadCommitteeMember(member.clone()))?;
        if !members.contains(&address) {
            members.push(address);
        }
    }
    if spec.committee.threshold as usize > members.len() {
        return Err(GenesisError::ThresholdTooHigh { threshold: spec.committee.threshold, members: members.len() });
    }
    let genesis = Genesis {
        chain_id: spec.chain_id,
        timestamp_ms,
        system_config: SystemConfig {
            block_interval_ms: spec.consensus.block_interval_ms,
            max_txs_per_block: spec.consensus.max_txs_per_block,
            block_gas_limit: spec.consensus.block_gas_limit,
            consensus_mode: spec.consensus.mode.into(),
            compatibility_version: SystemConfig::default().compatibility_version,
            consensus_timeout_ms: spec.consensus.timeout_ms,
        },
        consensus_nodes,
        observer_nodes: of_type(NodeType::Observer).collect(),
        node_addresses: founders
            .iter()
            .filter(|node| node.desired != NodeType::None)
            .map(|node| (node.node_id, names::p2p_address(name, namespace, &node.pod)))
            .collect(),
        ca_cert: Some(ca_pem.to_owned()),
        committee: Committee { members, threshold: spec.committee.threshold },
        permissions: Permissions {
            enabled: spec.permissions.enabled,
            roles: BTreeMap::from([(admin, vec![Role::ChainOperator])]),
        },
        alloc: BTreeMap::new(),
    };
    genesis.to_yaml(&PathBuf::from(names::GENESIS_KEY)).map_err(|e| GenesisError::Invalid(e.to_string()))?;
    Ok(genesis)
}

/// The node file of `pod`, dialing `peers` (every other node it should know).
pub fn node_config(pod: &str, peers: Vec<PeerAddress>) -> NodeConfig {
    let any = |port| std::net::SocketAddr::from(([0, 0, 0, 0], port));
    NodeConfig {
        data_dir: PathBuf::from(names::DATA_DIR).join("data"),
        genesis_file: PathBuf::from(names::GENESIS_DIR).join(names::GENESIS_KEY),
        node_key_file: PathBuf::from(names::KEYS_DIR).join(names::node_key_file(pod)),
        rpc: RpcConfig::on(any(names::RPC_PORT)),
        grpc: GrpcConfig { listen: any(names::GRPC_PORT) },
        metrics: MetricsConfig { listen: any(names::METRICS_PORT) },
        txpool: TxPoolConfig::default(),
        storage: StorageConfig::default(),
        p2p: Some(P2pConfig {
            listen: any(names::P2P_PORT),
            peers,
            blacklist: Vec::new(),
            cert_file: Some(PathBuf::from(names::KEYS_DIR).join(names::node_cert_file(pod))),
        }),
    }
}

/// The peers node `own` dials: the genesis nodes at their addresses and its member's other
/// nodes; the node registry tells it about everyone else.
pub fn peers_of(own: B256, genesis: &Genesis, siblings: &[PeerAddress]) -> Vec<PeerAddress> {
    let mut peers: BTreeMap<B256, String> = genesis.node_addresses.clone();
    peers.extend(siblings.iter().map(|peer| (peer.node_id, peer.address.clone())));
    peers.remove(&own);
    peers.into_iter().map(|(node_id, address)| PeerAddress { node_id, address }).collect()
}

/// The ConfigMap of a member's node files.
pub fn node_config_map(
    chain: &str,
    member: &str,
    namespace: &str,
    owner: OwnerReference,
    files: BTreeMap<String, String>,
) -> ConfigMap {
    ConfigMap {
        metadata: meta(names::node_config_map(chain, member), namespace, names::member_labels(chain, member), owner),
        data: Some(files),
        ..Default::default()
    }
}

/// The genesis ConfigMap: immutable, like the genesis.
pub fn genesis_config_map(chain: &str, namespace: &str, owner: OwnerReference, yaml: String) -> ConfigMap {
    ConfigMap {
        metadata: meta(names::genesis_config_map(chain), namespace, names::chain_labels(chain), owner),
        data: Some(BTreeMap::from([(names::GENESIS_KEY.to_owned(), yaml)])),
        immutable: Some(true),
        ..Default::default()
    }
}

/// The headless Service that gives every node Pod of the chain a DNS name.
pub fn peer_service(chain: &str, namespace: &str, owner: OwnerReference) -> Service {
    Service {
        metadata: meta(names::peer_service(chain), namespace, names::chain_labels(chain), owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_owned()),
            // Peers must find each other before they are ready: readiness needs peers.
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([(CHAIN_LABEL.to_owned(), chain.to_owned())])),
            ports: Some(vec![service_port("p2p", names::P2P_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service of a member's JSON-RPC and gRPC endpoints (ready nodes only).
pub fn rpc_service(chain: &str, member: &str, namespace: &str, owner: OwnerReference) -> Service {
    Service {
        metadata: meta(names::rpc_service(chain, member), namespace, names::member_labels(chain, member), owner),
        spec: Some(ServiceSpec {
            selector: Some(names::member_labels(chain, member)),
            ports: Some(vec![service_port("rpc", names::RPC_PORT), service_port("grpc", names::GRPC_PORT)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The PodDisruptionBudget body (`spec`) of the chain's consensus nodes: at most the consensus
/// fault budget may be disrupted at once.
pub fn disruption_budget_spec(chain: &str, fault_budget: u32) -> serde_json::Value {
    serde_json::json!({
        "maxUnavailable": fault_budget,
        "selector": {"matchLabels": {CHAIN_LABEL: chain, NODE_TYPE_LABEL: "consensus"}},
    })
}

/// The StatefulSet of a member's nodes, `replicas` of them.
pub fn stateful_set(chain: &ConsortiumChain, member: &Member, replicas: u32, owner: OwnerReference) -> StatefulSet {
    let chain_name = chain.metadata.name.as_deref().unwrap_or_default();
    let member_name = member.metadata.name.as_deref().unwrap_or_default();
    let namespace = member.metadata.namespace.as_deref().unwrap_or_default();
    let labels = names::member_labels(chain_name, member_name);
    let annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
        ("prometheus.io/port".to_owned(), names::METRICS_PORT.to_string()),
        ("prometheus.io/path".to_owned(), "/metrics".to_owned()),
    ]);
    let probe = |path: &str, failure_threshold| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(5),
        failure_threshold: Some(failure_threshold),
        timeout_seconds: Some(3),
        ..Default::default()
    };
    let mount = |name: &str, path: &str| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: Some(path != names::DATA_DIR),
        ..Default::default()
    };
    let container = Container {
        name: "node".to_owned(),
        image: Some(format!("{}:{}", chain.spec.image.repository, crate::rollout::deployed_version(chain))),
        image_pull_policy: Some(chain.spec.image.pull_policy.as_str().to_owned()),
        command: Some(vec!["bcos-node".to_owned()]),
        args: Some(vec!["run".to_owned(), "--config".to_owned(), format!("{}/$(POD_NAME).yaml", names::CONFIG_DIR)]),
        env: Some(vec![EnvVar {
            name: "POD_NAME".to_owned(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "metadata.name".to_owned(), ..Default::default() }),
                ..Default::default()
            }),
            ..Default::default()
        }]),
        ports: Some(vec![
            container_port("p2p", names::P2P_PORT),
            container_port("rpc", names::RPC_PORT),
            container_port("grpc", names::GRPC_PORT),
            container_port("metrics", names::METRICS_PORT),
        ]),
        readiness_probe: Some(probe("/readyz", 3)),
        // Generous: a node replaying its log after a crash must not be killed for it.
        liveness_probe: Some(Probe { initial_delay_seconds: Some(30), ..probe("/healthz", 6) }),
        resources: member.spec.resources.clone(),
        volume_mounts: Some(vec![
            mount("genesis", names::GENESIS_DIR),
            mount("config", names::CONFIG_DIR),
            mount("keys", names::KEYS_DIR),
            mount("data", names::DATA_DIR),
        ]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let config_map_volume = |name: &str, config_map: String| Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource { name: config_map, ..Default::default() }),
        ..Default::default()
    };
    let scheduling = &member.spec.scheduling;
    let affinity = scheduling.spread_across_nodes.then(|| Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
                weight: 100,
                pod_affinity_term: PodAffinityTerm {
                    label_selector: Some(LabelSelector {
                        match_labels: Some(names::chain_labels(chain_name)),
                        ..Default::default()
                    }),
                    topology_key: "kubernetes.io/hostname".to_owned(),
                    ..Default::default()
                },
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    let mut requests = BTreeMap::new();
    requests.insert("storage".to_owned(), Quantity(member.spec.storage.size.clone()));
    StatefulSet {
        metadata: meta(names::stateful_set(chain_name, member_name), namespace, labels.clone(), owner),
        spec: Some(StatefulSetSpec {
            replicas: Some(i32::try_from(replicas).unwrap_or(i32::MAX)),
            service_name: Some(names::peer_service(chain_name)),
            // Nodes need each other to become ready; ordered start-up would wait forever.
            pod_management_policy: Some("Parallel".to_owned()),
            // A new image reaches a Pod only when the chain's rollout deletes it: the order runs
            // across Members (observers first, the leader last), which no StatefulSet can see.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".to_owned()),
                ..Default::default()
            }),
            selector: LabelSelector { match_labels: Some(labels.clone()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    volumes: Some(vec![
                        config_map_volume("genesis", names::genesis_config_map(chain_name)),
                        config_map_volume("config", names::node_config_map(chain_name, member_name)),
                        Volume {
                            name: "keys".to_owned(),
                            secret: Some(SecretVolumeSource {
                                secret_name: Some(names::node_keys_secret(chain_name, member_name)),
                                default_mode: Some(0o400),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                    ]),
                    security_context: Some(PodSecurityContext {
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        fs_group: Some(65532),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(30),
                    node_selector: (!scheduling.node_selector.is_empty()).then(|| scheduling.node_selector.clone()),
                    tolerations: (!scheduling.tolerations.is_empty()).then(|| scheduling.tolerations.clone()),
                    affinity,
                    ..Default::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta { name: Some("data".to_owned()), labels: Some(labels), ..Default::default() },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                    storage_class_name: member.spec.storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements { requests: Some(requests), ..Default::default() }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn meta(name: String, namespace: &str, labels: BTreeMap<String, String>, owner: OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        owner_references: Some(vec![owner]),
        ..Default::default()
    }
}

fn service_port(name: &str, port: u16) -> ServicePort {
    ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(port),
        target_port: Some(IntOrString::Int(i32::from(port))),
        // Server-side apply keys ports by port and protocol, and older API servers do not
        // default the protocol inside an apply.
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

fn container_port(name: &str, port: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(port),
        protocol: Some("TCP".to_owned()),
        ..Default::default()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
