//! The node's APIs: Ethereum JSON-RPC over HTTP and WebSocket ([`eth`]), optionally over TLS
//! ([`tls`]), and gRPC ([`grpc`]).
//!
//! Both are thin layers over [`NodeApi`], which answers from the chain, the pool and the state
//! store; neither holds state of its own.

pub mod eth;
pub mod filters;
pub mod grpc;
pub mod tls;

use std::sync::{Arc, OnceLock};

use alloy_primitives::B256;
use serde::Serialize;

use crate::{
    chain::Chain,
    consensus::driver::LiveState,
    executor::{CallError, CallOutcome, CallRequest},
    metrics::RpcMetrics,
    network::NetworkHandle,
    txpool::TxPool,
    version::NodeVersion,
};

/// What both APIs serve from.
pub struct NodeApi {
    /// The committed chain.
    pub chain: Arc<Chain>,
    /// The transaction pool.
    pub pool: Arc<TxPool>,
    /// This node's id.
    pub node_id: B256,
    /// Readiness, leadership and sync, as the consensus driver publishes them.
    pub live: Arc<LiveState>,
    /// What this node reports about its versions.
    pub version: NodeVersion,
    /// The peer-to-peer network, once started (never, for a single node without peers).
    pub network: OnceLock<NetworkHandle>,
    /// Call metrics.
    pub metrics: RpcMetrics,
}

/// A node's status, as `bcos_nodeStatus` and gRPC `GetStatus` report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Software version (as reported; see [`crate::version::REPORTED_VERSION_ENV`]).
    pub version: String,
    /// Highest peer-to-peer protocol version spoken.
    pub protocol_version: u32,
    /// Highest chain compatibility version this node executes.
    pub max_compatibility_version: u32,
    /// Why the node applies no more blocks; `None` while it applies them.
    pub halted: Option<String>,
    /// Chain id.
    pub chain_id: u64,
    /// Hash of block 0.
    pub genesis_hash: B256,
    /// Latest committed height.
    pub height: u64,
    /// Latest committed hash.
    pub head_hash: B256,
    /// Consensus mode in force.
    pub consensus_mode: String,
    /// Compatibility version in force.
    pub compatibility_version: u32,
    /// This node's id.
    pub node_id: B256,
    /// Connected peers.
    pub peers: u32,
    /// Whether the node is catching up with peers.
    pub syncing: bool,
    /// Whether the node leads the round being decided.
    pub leading: bool,
    /// Pending transactions.
    pub txpool_size: u32,
    /// What each connected peer said about its versions, in node-id order.
    pub peer_versions: Vec<PeerStatus>,
}

/// A connected peer's versions, as it stated them in admission.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    /// Its node id.
    pub node_id: B256,
    /// Its software version; `None` when it did not say (it predates the version exchange, or
    /// the chain has no CA and so no admission exchange).
    pub version: Option<String>,
    /// The protocol version spoken with it; `None` when not exchanged (no chain CA).
    pub protocol_version: Option<u32>,
}

impl NodeApi {
    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, crate::chain::ChainError> {
        let head = self.chain.head()?;
        let config = self.chain.system_config();
        let peers = self.network.get().map(NetworkHandle::peers).unwrap_or_default();
        Ok(NodeStatus {
            version: self.version.software().to_owned(),
            protocol_version: self.version.protocol().max,
            max_compatibility_version: self.version.max_compatibility_version(),
            halted: self.chain.incompatibility().map(|incompatible| incompatible.to_string()),
            chain_id: self.chain.chain_id(),
            genesis_hash: self.chain.genesis_hash(),
            height: head.number,
            head_hash: head.hash(),
            consensus_mode: config.consensus_mode.to_string(),
            compatibility_version: config.compatibility_version,
            node_id: self.node_id,
            peers: u32::try_from(peers.len()).unwrap_or(u32::MAX),
            syncing: self.live.syncing(),
            leading: self.live.leading(),
            txpool_size: u32::try_from(self.pool.len()).unwrap_or(u32::MAX),
            peer_versions: peers
                .into_iter()
                .map(|(node_id, version)| PeerStatus {
                    node_id,
                    version: version.as_ref().and_then(|v| v.software.clone()),
                    protocol_version: version.map(|v| v.protocol),
                })
                .collect(),
        })
    }

    /// Runs a read-only call against a consistent snapshot of the latest state.
    pub fn call(&self, request: &CallRequest) -> Result<CallOutcome, CallError> {
        let input = self.chain.call_input().map_err(|e| CallError::Invalid(e.to_string()))?;
        let store = self.chain.store();
        let snapshot = store.state_snapshot();
        self.chain.executor().call(&snapshot, store.as_ref(), &input, request)
    }
}
