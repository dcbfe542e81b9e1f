//! Fixtures shared by the node's tests.

use std::sync::Arc;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, Bytes, TxKind};
use alloy_sol_types::SolCall;
use bcos_sdk::{
    config::{Committee, Genesis, SystemConfig, TxPoolConfig},
    crypto::{AccountKey, NodeKey},
    types::system::{GOVERNANCE_ADDRESS, IGovernance},
};
use prometheus::Registry;

use crate::{
    chain::{Chain, ChainError},
    metrics::{ChainMetrics, PoolMetrics, RpcMetrics},
    rpc::NodeApi,
    storage::RocksStore,
    txpool::TxPool,
    version::{MAX_COMPATIBILITY_VERSION, NodeVersion},
};

/// A chain and its pool on a RocksDB, in a temporary directory unless a test chose one.
pub(crate) struct TestNode {
    _dir: Option<tempfile::TempDir>,
    pub(crate) chain: Chain,
    pub(crate) pool: TxPool,
}

impl TestNode {
    /// A node of the chain `genesis` describes, at height 0.
    pub(crate) fn new(genesis: &Genesis) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let node = Self::open(dir.path(), genesis, MAX_COMPATIBILITY_VERSION).expect("chain");
        Self { _dir: Some(dir), ..node }
    }

    /// A node of the chain `genesis` describes with its data in `path` (opened again if there),
    /// executing the chain up to compatibility version `max`.
    pub(crate) fn open(path: &std::path::Path, genesis: &Genesis, max: u32) -> Result<Self, ChainError> {
        let store = Arc::new(RocksStore::open(path, false).expect("open"));
        let chain = Chain::open(store.clone(), genesis, max, ChainMetrics::register(&Registry::new()))?;
        let pool = TxPool::new(
            genesis.chain_id,
            TxPoolConfig::default(),
            genesis.system_config.block_gas_limit,
            store.clone(),
            store,
            PoolMetrics::register(&Registry::new()),
        );
        Ok(Self { _dir: None, chain, pool })
    }
}

/// The genesis of a chain whose one consensus node is `node`, with defaults everywhere else.
pub(crate) fn solo_genesis(chain_id: u64, node: B256) -> Genesis {
    Genesis {
        chain_id,
        timestamp_ms: 1_700_000_000_000,
        system_config: SystemConfig::default(),
        consensus_nodes: vec![node],
        observer_nodes: Vec::new(),
        node_addresses: Default::default(),
        ca_cert: None,
        committee: Committee::single(Address::repeat_byte(0xad)),
        permissions: Default::default(),
        alloc: Default::default(),
    }
}

/// What the RPC servers serve for a fresh single-node chain of `chain_id`, run by `key`, on a
/// RocksDB in the returned directory; its metrics go to `registry`.
pub(crate) fn solo_api(chain_id: u64, key: &NodeKey, registry: &Registry) -> (tempfile::TempDir, Arc<NodeApi>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = solo_genesis(chain_id, key.node_id());
    let store = Arc::new(RocksStore::open(dir.path(), false).expect("open store"));
    let chain = Arc::new(
        Chain::open(store.clone(), &genesis, MAX_COMPATIBILITY_VERSION, ChainMetrics::register(registry))
            .expect("chain"),
    );
    let pool = Arc::new(TxPool::new(
        chain_id,
        TxPoolConfig::default(),
        genesis.system_config.block_gas_limit,
        store.clone(),
        store,
        PoolMetrics::register(registry),
    ));
    let api = Arc::new(NodeApi {
        chain,
        pool,
        node_id: key.node_id(),
        live: Arc::new(crate::consensus::driver::LiveState::solo()),
        version: NodeVersion::this_build(),
        network: Default::default(),
        metrics: RpcMetrics::register(registry),
    });
    (dir, api)
}

/// A proposal by `key`, the committee's only member, that the governance contract call `target`
/// with `input`; it runs in the block that carries it.
pub(crate) fn signed_proposal(key: &AccountKey, chain_id: u64, nonce: u64, target: Address, input: Vec<u8>) -> Bytes {
    let propose = IGovernance::proposeCall { target, data: input.into(), expiresAtBlock: u64::MAX };
    key.sign_transaction(TxEip1559 {
        chain_id,
        nonce,
        gas_limit: 500_000,
        to: TxKind::Call(GOVERNANCE_ADDRESS),
        input: propose.abi_encode().into(),
        ..Default::default()
    })
}

/// A signed plain 21,000-gas call from `key` to `to`, for filling pools and blocks.
pub(crate) fn signed_transfer(key: &AccountKey, chain_id: u64, nonce: u64, to: Address) -> Bytes {
    key.sign_transaction(TxEip1559 { chain_id, nonce, gas_limit: 21_000, to: TxKind::Call(to), ..Default::default() })
}
