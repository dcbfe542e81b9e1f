//! `ConsortiumChain`: one permissioned chain, its consensus, committee, CA and upgrade policy.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, NodeCounts};

/// The consensus algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsensusMode {
    /// PBFT: tolerates f faulty of 3f+1 consensus nodes.
    #[default]
    Pbft,
    /// Raft: tolerates f crashed of 2f+1 consensus nodes.
    Raft,
}

impl From<ConsensusMode> for bcos_sdk::config::ConsensusMode {
    fn from(mode: ConsensusMode) -> Self {
        match mode {
            ConsensusMode::Pbft => Self::Pbft,
            ConsensusMode::Raft => Self::Raft,
        }
    }
}

impl ConsensusMode {
    /// Consensus nodes that may be down while the chain keeps committing, out of `nodes`.
    pub fn fault_budget(self, nodes: u32) -> u32 {
        match self {
            Self::Pbft => nodes.saturating_sub(1) / 3,
            Self::Raft => nodes.saturating_sub(1) / 2,
        }
    }
}

/// A BCOS chain run by several institutions ([`Member`](super::Member)s).
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "bcos.dev",
    version = "v1alpha1",
    kind = "ConsortiumChain",
    namespaced,
    status = "ConsortiumChainStatus",
    shortname = "chain",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".status.consensusMode"}"#,
    printcolumn = r#"{"name":"Switching-To","type":"string","jsonPath":".status.pendingConsensusMode"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.version"}"#,
    printcolumn = r#"{"name":"Rollout","type":"string","jsonPath":".status.rollout.phase"}"#,
    printcolumn = r#"{"name":"Height","type":"integer","jsonPath":".status.height"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.nodes.ready"}"#,
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".status.nodes.desired"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumChainSpec {
    /// EIP-155 chain id every transaction is signed for. Fixed once the genesis exists.
    #[schemars(range(min = 1, max = 4_503_599_627_370_495u64))]
    pub chain_id: u64,
    /// The node image; its tag is `version`.
    pub image: NodeImage,
    /// The node software version (the image tag).
    #[schemars(length(min = 1, max = 128), regex(pattern = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"))]
    pub version: String,
    /// The Members (by name, in this namespace) the genesis is made from. The genesis is created
    /// once all of them exist, and never changes afterwards; later Members join by governance.
    #[schemars(length(min = 1, max = 64))]
    pub founding_members: Vec<String>,
    /// Consensus settings; they become on-chain system config.
    #[serde(default)]
    pub consensus: ConsensusSpec,
    /// The governing committee.
    #[serde(default)]
    pub committee: CommitteeSpec,
    /// The chain's certificate authority.
    #[serde(default)]
    pub ca: CaSpec,
    /// How version changes roll out.
    #[serde(default)]
    pub upgrade: UpgradeSpec,
    /// Role-based permission checks on transactions.
    #[serde(default)]
    pub permissions: PermissionsSpec,
}

/// Where the node image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeImage {
    /// Image repository, e.g. `ghcr.io/bcos-rs/bcos-node`.
    #[schemars(length(min = 1, max = 255))]
    pub repository: String,
    /// Kubernetes image pull policy.
    #[serde(default = "NodeImage::default_pull_policy")]
    pub pull_policy: PullPolicy,
}

impl NodeImage {
    fn default_pull_policy() -> PullPolicy {
        PullPolicy::IfNotPresent
    }
}

/// Kubernetes image pull policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    /// Always pull.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Consensus settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsensusSpec {
    /// The algorithm.
    #[serde(default)]
    pub mode: ConsensusMode,
    /// Target time between blocks, in milliseconds.
    #[serde(default = "ConsensusSpec::default_block_interval_ms")]
    #[schemars(range(min = 50, max = 60_000))]
    pub block_interval_ms: u64,
    /// Base consensus timeout in milliseconds (PBFT view timeout, Raft election timeout).
    #[serde(default = "ConsensusSpec::default_timeout_ms")]
    #[schemars(range(min = 200, max = 600_000))]
    pub timeout_ms: u64,
    /// Most transactions in one block.
    #[serde(default = "ConsensusSpec::default_max_txs_per_block")]
    #[schemars(range(min = 1, max = 100_000))]
    pub max_txs_per_block: u64,
    /// Most gas one block may use.
    #[serde(default = "ConsensusSpec::default_block_gas_limit")]
    #[schemars(range(min = 1_000_000, max = 100_000_000_000u64))]
    pub block_gas_limit: u64,
}

impl ConsensusSpec {
    fn default_block_interval_ms() -> u64 {
        500
    }
    fn default_timeout_ms() -> u64 {
        3_000
    }
    fn default_max_txs_per_block() -> u64 {
        1_000
    }
    fn default_block_gas_limit() -> u64 {
        1_000_000_000
    }
}

impl Default for ConsensusSpec {
    fn default() -> Self {
        Self {
            mode: ConsensusMode::default(),
            block_interval_ms: Self::default_block_interval_ms(),
            timeout_ms: Self::default_timeout_ms(),
            max_txs_per_block: Self::default_max_txs_per_block(),
            block_gas_limit: Self::default_block_gas_limit(),
        }
    }
}

/// The governing committee: the operator's own key (kept in a Secret) plus these accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommitteeSpec {
    /// Approvals a proposal needs (at most the number of members, the operator's key included).
    #[serde(default = "CommitteeSpec::default_threshold")]
    #[schemars(range(min = 1, max = 100))]
    pub threshold: u32,
    /// Further committee accounts (0x-prefixed addresses) beside the operator's own key.
    #[serde(default)]
    #[schemars(length(max = 99), inner(regex(pattern = r"^0x[0-9a-fA-F]{40}$")))]
    pub members: Vec<String>,
}

impl CommitteeSpec {
    fn default_threshold() -> u32 {
        1
    }
}

impl Default for CommitteeSpec {
    fn default() -> Self {
        Self { threshold: Self::default_threshold(), members: Vec::new() }
    }
}

/// The chain CA: created by the operator, or an existing Secret (`ca.crt`, `ca.key`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaSpec {
    /// A Secret in this namespace holding `ca.crt` and `ca.key` (PKCS#8 Ed25519) of an existing
    /// chain CA; without it the operator creates one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_secret: Option<String>,
    /// Lifetime of an operator-created chain CA, in days.
    #[serde(default = "CaSpec::default_validity_days")]
    #[schemars(range(min = 1, max = 36_500))]
    pub validity_days: u32,
    /// Lifetime of member CA certificates, in days.
    #[serde(default = "CaSpec::default_member_validity_days")]
    #[schemars(range(min = 1, max = 36_500))]
    pub member_validity_days: u32,
    /// Lifetime of node certificates, in days.
    #[serde(default = "CaSpec::default_node_validity_days")]
    #[schemars(range(min = 1, max = 36_500))]
    pub node_validity_days: u32,
}

impl CaSpec {
    fn default_validity_days() -> u32 {
        3_650
    }
    fn default_member_validity_days() -> u32 {
        1_825
    }
    fn default_node_validity_days() -> u32 {
        365
    }
}

impl Default for CaSpec {
    fn default() -> Self {
        Self {
            existing_secret: None,
            validity_days: Self::default_validity_days(),
            member_validity_days: Self::default_member_validity_days(),
            node_validity_days: Self::default_node_validity_days(),
        }
    }
}

/// How a version change rolls out: one node at a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeSpec {
    /// Stop after the node being upgraded.
    #[serde(default)]
    pub paused: bool,
    /// How long one node may take to become ready and catch up, in seconds.
    #[serde(default = "UpgradeSpec::default_node_timeout_seconds")]
    #[schemars(range(min = 30, max = 86_400))]
    pub node_timeout_seconds: u32,
    /// When a node fails to become healthy, put the previous version back on the nodes already
    /// upgraded.
    #[serde(default = "UpgradeSpec::default_rollback")]
    pub rollback_on_failure: bool,
}

impl UpgradeSpec {
    fn default_node_timeout_seconds() -> u32 {
        600
    }
    fn default_rollback() -> bool {
        true
    }
}

impl Default for UpgradeSpec {
    fn default() -> Self {
        Self {
            paused: false,
            node_timeout_seconds: Self::default_node_timeout_seconds(),
            rollback_on_failure: Self::default_rollback(),
        }
    }
}

/// Role-based permission checks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PermissionsSpec {
    /// Deploying needs the `deployer` role and other transactions `transactor`.
    #[serde(default)]
    pub enabled: bool,
}

/// The chain's lifecycle phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
pub enum ChainPhase {
    /// Waiting for founding members or the CA.
    #[default]
    Pending,
    /// Genesis made; nodes starting.
    Creating,
    /// Committing blocks.
    Running,
    /// Committing blocks while nodes are replaced one at a time by a version rollout.
    Upgrading,
    /// Something needs attention (see the conditions).
    Degraded,
}

/// What the operator last saw of the chain.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConsortiumChainStatus {
    /// Lifecycle phase.
    #[serde(default)]
    pub phase: ChainPhase,
    /// Ready, Progressing and Degraded.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The generation these conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The chain id the genesis was made with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<u64>,
    /// Hash of the genesis block, as the nodes report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    /// Highest block any node reports.
    #[serde(default)]
    pub height: u64,
    /// Node counts across all members.
    #[serde(default)]
    pub nodes: NodeCounts,
    /// Members of the chain (founding and joined), by name.
    #[serde(default)]
    pub members: Vec<String>,
    /// The consensus mode every node reports (unset while they disagree, as during a switch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_mode: Option<String>,
    /// A consensus mode scheduled on chain and not yet in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_consensus_mode: Option<String>,
    /// The height the latest consensus switch takes (or took) effect at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consensus_switch_height: Option<u64>,
    /// A settings proposal of the operator's that awaits other committee members' votes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<super::PendingProposal>,
    /// Software versions the nodes report, each once.
    #[serde(default)]
    pub versions: Vec<String>,
    /// The version the chain's nodes are deployed with when no rollout is under way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The chain's compatibility version in force (its execution rules), as the nodes report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compatibility_version: Option<u32>,
    /// The latest version rollout, node by node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
}

/// Where a version rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RolloutPhase {
    /// Nodes are being upgraded one at a time.
    Progressing,
    /// `spec.upgrade.paused`: no further node is started.
    Paused,
    /// A node failed and nothing is being rolled back; a human decides.
    Halted,
    /// The nodes already upgraded are being put back on the previous version.
    RollingBack,
    /// Every changed node runs the previous version again.
    RolledBack,
    /// Every node runs the new version.
    Complete,
}

impl RolloutPhase {
    /// Whether the rollout still changes nodes or waits for a human to resume it.
    pub fn is_active(self) -> bool {
        matches!(self, Self::Progressing | Self::Paused | Self::Halted | Self::RollingBack)
    }
}

/// One version rollout across every member's nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The version the nodes ran before.
    pub from_version: String,
    /// The version being rolled out.
    pub to_version: String,
    /// Where it stands.
    pub phase: RolloutPhase,
    /// What it is doing or waiting for.
    pub message: String,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Each node, in the order they are taken (observers first, consensus nodes after).
    #[serde(default)]
    pub nodes: Vec<NodeRollout>,
}

impl RolloutStatus {
    /// The version nodes are being moved to: the new one, or the previous one while rolling back.
    pub fn target(&self) -> &str {
        match self.phase {
            RolloutPhase::RollingBack | RolloutPhase::RolledBack => &self.from_version,
            _ => &self.to_version,
        }
    }
}

/// Where one node stands in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum NodeRolloutState {
    /// Not started.
    Pending,
    /// Its Pod was deleted to come back on the new version.
    Upgrading,
    /// Runs the new version, caught up, and the chain committed since.
    Upgraded,
    /// Did not become healthy on the new version in time.
    Failed,
    /// Its Pod was deleted to come back on the previous version.
    Reverting,
    /// Runs the previous version again.
    Reverted,
}

/// One node in a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeRollout {
    /// The Pod's name.
    pub name: String,
    /// The Member it belongs to.
    pub member: String,
    /// Whether it votes.
    pub consensus: bool,
    /// Where it stands.
    pub state: NodeRolloutState,
    /// When its Pod was deleted (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarted_at: Option<String>,
    /// The chain's head when its Pod was deleted: it is done once the chain committed past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_at_restart: Option<u64>,
    /// When it was found done (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}
