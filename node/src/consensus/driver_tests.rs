//! Several nodes, each with its own RocksDB chain, pool, libp2p network and driver, agreeing on
//! blocks over loopback.

use std::{sync::Arc, time::Duration};

use alloy_primitives::Address;
use bcos_consensus::{Engine, EngineConfig, Validators, pbft::Pbft, raft::Raft};
use bcos_sdk::{
    config::{ConsensusMode, Genesis, SystemConfig, TxPoolConfig},
    crypto::{AccountKey, NodeKey},
};
use prometheus::Registry;
use tokio::sync::watch;

use super::driver::{Driver, WireMessage};
use crate::{
    chain::{Chain, now_ms},
    metrics::{ChainMetrics, PoolMetrics},
    network::{Network, NetworkConfig, NetworkHandle, tcp_multiaddr},
    storage::{BlockReader, RocksStore, StateReader},
    test_utils::signed_transfer,
    txpool::TxPool,
};

const TIMEOUT_MS: u64 = 2_000;
const CHAIN_ID: u64 = 31;

struct TestNode {
    _dir: tempfile::TempDir,
    chain: Arc<Chain>,
    pool: Arc<TxPool>,
    network: NetworkHandle,
}

async fn start_chain<E>(
    n: usize,
    mode: ConsensusMode,
    make: fn(EngineConfig) -> E,
) -> (Vec<TestNode>, watch::Sender<bool>)
where
    E: Engine + Send + 'static,
    E::Message: WireMessage,
{
    let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::generate()).collect();
    let genesis = Genesis {
        chain_id: CHAIN_ID,
        timestamp_ms: 0,
        system_config: SystemConfig { block_interval_ms: 200, consensus_mode: mode, ..SystemConfig::default() },
        consensus_nodes: keys.iter().map(NodeKey::node_id).collect(),
        admins: vec![],
        alloc: Default::default(),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut nodes = Vec::new();
    let mut pending = Vec::new();
    for key in &keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RocksStore::open(dir.path(), false).expect("open"));
        let registry = Registry::new();
        let chain = Arc::new(Chain::open(store.clone(), &genesis, ChainMetrics::register(&registry)).expect("chain"));
        let pool = Arc::new(TxPool::new(
            CHAIN_ID,
            TxPoolConfig::default(),
            genesis.system_config.block_gas_limit,
            store.clone(),
            store,
            PoolMetrics::register(&registry),
        ));
        let config = NetworkConfig::new(tcp_multiaddr(([127, 0, 0, 1], 0).into()));
        let (network, events) = Network::start(config, key, &registry).await.expect("network");
        pending.push((key.clone(), events));
        nodes.push(TestNode { _dir: dir, chain, pool, network });
    }
    let addresses: Vec<_> = nodes.iter().map(|n| n.network.listen_addrs().first().cloned()).collect();
    for node in &nodes {
        let peers = keys.iter().zip(&addresses).map(|(k, a)| (k.node_id(), a.clone())).collect();
        node.network.set_peers(peers).await.expect("peers");
    }
    let validators = Validators::new(genesis.consensus_nodes.clone()).expect("validators");
    for (node, (key, events)) in nodes.iter().zip(pending) {
        let engine = make(EngineConfig {
            key: key.clone(),
            validators: validators.clone(),
            height: 1,
            timeout_ms: TIMEOUT_MS,
            now_ms: now_ms(),
        });
        let driver = Driver::new(engine, node.chain.clone(), node.pool.clone(), node.network.clone(), &key, TIMEOUT_MS);
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move { driver.run(events, shutdown).await });
    }
    (nodes, shutdown)
}

/// Sends transfers to node 0 and waits until every node committed them, on the same blocks.
async fn commits_everywhere(nodes: &[TestNode]) {
    let sender = AccountKey::generate();
    let count = 30;
    for nonce in 0..count {
        let raw = signed_transfer(&sender, CHAIN_ID, nonce, Address::repeat_byte(5));
        nodes[0].pool.submit(&raw).expect("admitted");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let nonces: Vec<u64> = nodes
            .iter()
            .map(|n| n.chain.store().account(&sender.address()).expect("read").map_or(0, |a| a.nonce))
            .collect();
        if nonces.iter().all(|&nonce| nonce == count) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "not committed everywhere: nonces {nonces:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let height = nodes.iter().map(|n| n.chain.store().head_number()).min().expect("nodes");
    for number in 1..=height {
        let hashes: Vec<_> =
            nodes.iter().map(|n| n.chain.store().header(number).expect("read").map(|h| h.hash())).collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "fork at {number}: {hashes:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_pbft_nodes_commit_the_same_blocks_over_libp2p() {
    let (nodes, shutdown) = start_chain(4, ConsensusMode::Pbft, Pbft::new).await;
    commits_everywhere(&nodes).await;
    let _ = shutdown.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_raft_nodes_commit_the_same_blocks_over_libp2p() {
    let (nodes, shutdown) = start_chain(3, ConsensusMode::Raft, Raft::new).await;
    commits_everywhere(&nodes).await;
    let _ = shutdown.send(true);
}
