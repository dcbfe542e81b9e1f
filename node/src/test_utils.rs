//! Fixtures shared by the node's tests.

use std::sync::Arc;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, Bytes, TxKind};
use bcos_sdk::{
    config::{Genesis, TxPoolConfig},
    crypto::AccountKey,
};
use prometheus::Registry;

use crate::{
    chain::Chain,
    metrics::{ChainMetrics, PoolMetrics},
    storage::RocksStore,
    txpool::TxPool,
};

/// A chain and its pool on a fresh RocksDB in a temporary directory.
pub(crate) struct TestNode {
    _dir: tempfile::TempDir,
    pub(crate) chain: Chain,
    pub(crate) pool: TxPool,
}

impl TestNode {
    /// A node of the chain `genesis` describes, at height 0.
    pub(crate) fn new(genesis: &Genesis) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RocksStore::open(dir.path(), false).expect("open"));
        let chain = Chain::open(store.clone(), genesis, ChainMetrics::register(&Registry::new())).expect("chain");
        let pool = TxPool::new(
            genesis.chain_id,
            TxPoolConfig::default(),
            genesis.system_config.block_gas_limit,
            store.clone(),
            store,
            PoolMetrics::register(&Registry::new()),
        );
        Self { _dir: dir, chain, pool }
    }
}

/// A signed plain 21,000-gas call from `key` to `to`, for filling pools and blocks.
pub(crate) fn signed_transfer(key: &AccountKey, chain_id: u64, nonce: u64, to: Address) -> Bytes {
    key.sign_transaction(TxEip1559 { chain_id, nonce, gas_limit: 21_000, to: TxKind::Call(to), ..Default::default() })
}
