//! The custom resources, `bcos.dev/v1alpha1`: [`ConsortiumChain`] and [`Member`]. Their CRDs
//! are generated from these types (`bcos-operator crdgen`).

mod chain;
mod member;

pub use chain::{
    CaSpec, ChainPhase, CommitteeSpec, ConsensusMode, ConsensusSpec, ConsortiumChain, ConsortiumChainSpec,
    ConsortiumChainStatus, NodeImage, NodeRollout, NodeRolloutState, PermissionsSpec, PullPolicy, RolloutPhase,
    RolloutStatus, UpgradeSpec,
};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
pub use member::{
    CertificateStatus, ChainRef, Institution, Member, MemberPhase, MemberRole, MemberSpec, MemberStatus, NodeStatus,
    NodeType, PendingProposal, SchedulingSpec, StorageSpec,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Node counts of a chain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeCounts {
    /// Nodes the members ask for.
    pub desired: u32,
    /// Nodes whose Pod is Ready.
    pub ready: u32,
    /// Consensus nodes in the chain's registry.
    pub consensus: u32,
    /// Observer nodes in the chain's registry.
    pub observer: u32,
}
