//! The node's APIs: Ethereum JSON-RPC over HTTP and WebSocket ([`eth`]), optionally over TLS
//! ([`tls`]), and gRPC ([`grpc`]).
//!
//! Both are thin layers over [`NodeApi`], which answers from the chain, the pool and the state
//! store; neither holds state of its own.

pub mod eth;
pub mod filters;
pub mod grpc;
pub mod tls;

use std::sync::Arc;

use alloy_primitives::B256;
use serde::Serialize;

use crate::{
    chain::Chain,
    consensus::driver::LiveState,
    executor::{CallError, CallOutcome, CallRequest},
    metrics::RpcMetrics,
    txpool::TxPool,
};

/// The protocol version this build speaks (messages, encodings, execution rules).
pub const PROTOCOL_VERSION: u32 = 1;

/// What both APIs serve from.
pub struct NodeApi {
    /// The committed chain.
    pub chain: Arc<Chain>,
    /// The transaction pool.
    pub pool: Arc<TxPool>,
    /// This node's id.
    pub node_id: B256,
    /// Readiness, leadership, sync and peers, as the consensus driver publishes them.
    pub live: Arc<LiveState>,
    /// Call metrics.
    pub metrics: RpcMetrics,
}

/// A node's status, as `bcos_nodeStatus` and gRPC `GetStatus` report it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Software version.
    pub version: String,
    /// Protocol version.
    pub protocol_version: u32,
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
}

impl NodeApi {
    /// The node's status.
    pub fn status(&self) -> Result<NodeStatus, crate::chain::ChainError> {
        let head = self.chain.head()?;
        let config = self.chain.system_config();
        Ok(NodeStatus {
            version: bcos_sdk::VERSION.to_owned(),
            protocol_version: PROTOCOL_VERSION,
            chain_id: self.chain.chain_id(),
            genesis_hash: self.chain.genesis_hash(),
            height: head.number,
            head_hash: head.hash(),
            consensus_mode: config.consensus_mode.to_string(),
            compatibility_version: config.compatibility_version,
            node_id: self.node_id,
            peers: self.live.peers(),
            syncing: self.live.syncing(),
            leading: self.live.leading(),
            txpool_size: u32::try_from(self.pool.len()).unwrap_or(u32::MAX),
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
