//! `Member`: one institution of a chain and the nodes it runs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceRequirements, Toleration};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Condition;

/// An institution taking part in a [`ConsortiumChain`](super::ConsortiumChain), with its nodes.
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bcos.dev",
    version = "v1alpha1",
    kind = "Member",
    namespaced,
    status = "MemberStatus",
    printcolumn = r#"{"name":"Chain","type":"string","jsonPath":".spec.chainRef.name"}"#,
    printcolumn = r#"{"name":"Role","type":"string","jsonPath":".spec.role"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Consensus","type":"integer","jsonPath":".spec.consensusNodes"}"#,
    printcolumn = r#"{"name":"Observers","type":"integer","jsonPath":".spec.observerNodes"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MemberSpec {
    /// The chain, in this namespace.
    pub chain_ref: ChainRef,
    /// Who the institution is; it goes into the member CA certificate.
    pub institution: Institution,
    /// What the institution does on the chain.
    #[serde(default)]
    pub role: MemberRole,
    /// Nodes that vote.
    #[schemars(range(min = 0, max = 16))]
    pub consensus_nodes: u32,
    /// Nodes that follow the chain and serve RPC but never vote.
    #[serde(default)]
    #[schemars(range(min = 0, max = 16))]
    pub observer_nodes: u32,
    /// Each node's data volume.
    #[serde(default)]
    pub storage: StorageSpec,
    /// Each node container's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Where the nodes may run.
    #[serde(default)]
    pub scheduling: SchedulingSpec,
}

/// A chain by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainRef {
    /// The ConsortiumChain's name.
    #[schemars(length(min = 1, max = 40))]
    pub name: String,
}

/// The institution behind a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Institution {
    /// Display name (certificate subject O), e.g. `Bank A`.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// Short id (certificate subject OU), e.g. `bank-a`.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"))]
    pub id: String,
    /// Who to call about its nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub contact: Option<String>,
}

/// What a member does on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// Runs nodes and transacts.
    #[default]
    Participant,
    /// Supervises: reads everything, the audit log included.
    Regulator,
    /// Audits: reads the governance audit log.
    Auditor,
}

/// A node's data volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size, as a Kubernetes quantity.
    #[serde(default = "StorageSpec::default_size")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"))]
    pub size: String,
    /// Storage class; the cluster default without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

impl StorageSpec {
    fn default_size() -> String {
        "10Gi".to_owned()
    }
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: Self::default_size(), storage_class_name: None }
    }
}

/// Placement of the member's nodes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SchedulingSpec {
    /// Labels a Kubernetes node must have.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the nodes tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Prefer putting each node on a different Kubernetes node (pod anti-affinity).
    #[serde(default = "SchedulingSpec::default_spread")]
    pub spread_across_nodes: bool,
}

impl SchedulingSpec {
    fn default_spread() -> bool {
        true
    }
}

/// A member's lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum MemberPhase {
    /// Waiting for its chain or the genesis.
    #[default]
    Pending,
    /// Nodes starting, syncing or waiting for admission.
    Joining,
    /// Every node admitted and ready.
    Running,
    /// Its nodes are being removed from the chain.
    Leaving,
    /// Something needs attention (see the conditions).
    Degraded,
}

/// What the operator last saw of a member.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: MemberPhase,
    /// Ready, Progressing, Degraded and Admitted.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Whether the member was part of the genesis.
    #[serde(default)]
    pub founding: bool,
    /// The member CA certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CertificateStatus>,
    /// Each node.
    #[serde(default)]
    pub nodes: Vec<NodeStatus>,
    /// A governance proposal of the operator's that awaits other committee members' votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_proposal: Option<PendingProposal>,
}

/// A proposal waiting for votes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingProposal {
    /// The proposal id in the governance contract.
    pub id: String,
    /// What it does.
    pub action: String,
    /// The last block it can be approved in.
    pub expires_at_block: u64,
}

/// A certificate's identity and lifetime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CertificateStatus {
    /// Serial number, hex.
    pub serial: String,
    /// End of validity (RFC 3339).
    pub not_after: String,
}

/// What a node is in the chain's registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeType {
    /// Votes.
    Consensus,
    /// Follows without voting.
    Observer,
    /// Not in the registry (yet, or any more).
    None,
}

/// One node of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// The Pod's name.
    pub name: String,
    /// Node id (Ed25519 public key), hex.
    pub node_id: String,
    /// What the spec asks this node to be.
    pub desired_type: NodeType,
    /// What the chain's registry says it is.
    pub registered_type: NodeType,
    /// The Pod is Ready.
    pub ready: bool,
    /// Its head block.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// The software version it reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Peers it is connected to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<u32>,
    /// The consensus mode it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_mode: Option<String>,
}
