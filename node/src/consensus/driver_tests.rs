//! Several nodes, each with its own RocksDB chain, pool, libp2p network and driver, agreeing on
//! blocks over loopback.

use std::{sync::Arc, time::Duration};

use alloy_primitives::{Address, U256};
use alloy_sol_types::SolCall;
use bcos_consensus::{EngineConfig, Validators};
use bcos_sdk::{
    config::{Committee, ConsensusMode, Genesis, SystemConfig, TxPoolConfig},
    crypto::{AccountKey, NodeKey},
    pki::{ChainCa, Member, MemberCa, Validity},
    types::system::{INodeRegistry, ISystemConfig, NODE_REGISTRY_ADDRESS, SYSTEM_CONFIG_ADDRESS},
};
use prometheus::Registry;
use tokio::sync::{mpsc, watch};

use super::{driver::Driver, switch::ConsensusEngine};
use crate::{
    chain::{Chain, now_ms},
    metrics::{ChainMetrics, PoolMetrics},
    network::{Blacklist, Certificates, Network, NetworkConfig, NetworkEvent, NetworkHandle, NodeId, tcp_multiaddr},
    storage::{BlockReader, RocksStore, StateReader},
    test_utils::{signed_proposal, signed_transfer},
    txpool::TxPool,
    version::MAX_COMPATIBILITY_VERSION,
};

const TIMEOUT_MS: u64 = 2_000;
pub(super) const CHAIN_ID: u64 = 31;

pub(super) struct TestNode {
    _dir: tempfile::TempDir,
    pub(super) id: NodeId,
    pub(super) chain: Arc<Chain>,
    pub(super) pool: Arc<TxPool>,
    pub(super) network: NetworkHandle,
    pub(super) registry: Registry,
}

async fn start_chain(n: usize, mode: ConsensusMode) -> (Vec<TestNode>, watch::Sender<bool>) {
    start_chain_with(n, 0, mode, Address::ZERO).await
}

/// `n` consensus nodes and then `observers` observer nodes, all connected to each other.
async fn start_chain_with(
    n: usize,
    observers: usize,
    mode: ConsensusMode,
    admin: Address,
) -> (Vec<TestNode>, watch::Sender<bool>) {
    let (nodes, shutdown, _) = start_chain_except(n, observers, mode, admin, None).await;
    (nodes, shutdown)
}

/// Like [`start_chain_with`], but node `outsider` (if any) runs no driver: the test gets its key
/// and network events to act as it pleases.
pub(super) async fn start_chain_except(
    n: usize,
    observers: usize,
    mode: ConsensusMode,
    admin: Address,
    outsider: Option<usize>,
) -> (Vec<TestNode>, watch::Sender<bool>, Option<(NodeKey, mpsc::Receiver<NetworkEvent>)>) {
    let spec = ChainSpec { observers, admin, outsider, ..ChainSpec::new(n, mode) };
    let chain = start(spec).await;
    (chain.nodes, chain.shutdown, chain.outside)
}

/// The chain's CA and its one member CA, which certifies every node.
pub(super) struct TestPki {
    pub(super) ca: ChainCa,
    pub(super) member: MemberCa,
}

impl TestPki {
    fn new() -> Self {
        let validity = Validity::starting(std::time::SystemTime::now(), Duration::from_secs(86_400));
        let ca = ChainCa::generate("test chain", validity).expect("chain CA");
        let member = ca.issue_member_ca(&Member { name: "Bank".into(), id: "bank".into() }, validity).expect("member");
        Self { ca, member }
    }

    /// Admission by this CA, presenting `chain` (`[member CA, node]`).
    pub(super) fn admission(&self, chain: Vec<Vec<u8>>) -> Certificates {
        Certificates { ca: self.ca.cert().der().to_vec(), chain, revoked: Default::default() }
    }

    /// A valid chain for `node`.
    pub(super) fn chain(&self, node: &NodeId) -> Vec<Vec<u8>> {
        let validity = Validity::starting(std::time::SystemTime::now(), Duration::from_secs(86_400));
        self.member.issue_node_chain(node, validity).expect("node certificate").verify_order()
    }
}

/// What [`start`] builds.
pub(super) struct ChainSpec {
    pub(super) n: usize,
    pub(super) observers: usize,
    pub(super) mode: ConsensusMode,
    pub(super) admin: Address,
    /// A node that runs no driver (see [`start_chain_except`]).
    pub(super) outsider: Option<usize>,
    /// Nodes every node admits (for sync) though the registry does not list them.
    pub(super) strangers: Vec<NodeId>,
    /// Nodes node 0 refuses (its local blacklist).
    pub(super) blacklisted_by_first: Vec<NodeId>,
    /// A node whose address the test gives no node, and which is given no addresses: nodes
    /// admit it, but no one dials it and it dials no one.
    pub(super) unaddressed: Option<usize>,
}

impl ChainSpec {
    /// `n` consensus nodes and nothing else.
    pub(super) fn new(n: usize, mode: ConsensusMode) -> Self {
        Self {
            n,
            observers: 0,
            mode,
            admin: Address::ZERO,
            outsider: None,
            strangers: Vec::new(),
            blacklisted_by_first: Vec::new(),
            unaddressed: None,
        }
    }
}

/// A started chain.
pub(super) struct StartedChain {
    pub(super) nodes: Vec<TestNode>,
    pub(super) shutdown: watch::Sender<bool>,
    pub(super) outside: Option<(NodeKey, mpsc::Receiver<NetworkEvent>)>,
    pub(super) pki: TestPki,
}

/// Starts a chain whose nodes admit each other by certificate.
pub(super) async fn start(spec: ChainSpec) -> StartedChain {
    let ChainSpec { n, observers, mode, admin, outsider, strangers, blacklisted_by_first, unaddressed } = spec;
    let pki = TestPki::new();
    // Logs (RUST_LOG, default warnings) show in the output of a failed test.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let keys: Vec<NodeKey> = (0..n + observers).map(|_| NodeKey::generate()).collect();
    let genesis = Genesis {
        chain_id: CHAIN_ID,
        timestamp_ms: 0,
        system_config: SystemConfig {
            block_interval_ms: 200,
            consensus_mode: mode,
            consensus_timeout_ms: TIMEOUT_MS,
            ..SystemConfig::default()
        },
        consensus_nodes: keys[..n].iter().map(NodeKey::node_id).collect(),
        observer_nodes: keys[n..].iter().map(NodeKey::node_id).collect(),
        node_addresses: Default::default(),
        ca_cert: Some(pki.ca.cert().pem().to_owned()),
        committee: Committee::single(admin),
        permissions: Default::default(),
        alloc: Default::default(),
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut nodes = Vec::new();
    let mut pending = Vec::new();
    for key in &keys {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(RocksStore::open(dir.path(), false).expect("open"));
        let registry = Registry::new();
        let chain = Arc::new(
            Chain::open(store.clone(), &genesis, MAX_COMPATIBILITY_VERSION, ChainMetrics::register(&registry))
                .expect("chain"),
        );
        let pool = Arc::new(TxPool::new(
            CHAIN_ID,
            TxPoolConfig::default(),
            genesis.system_config.block_gas_limit,
            store.clone(),
            store,
            PoolMetrics::register(&registry),
        ));
        let mut config = NetworkConfig::new(tcp_multiaddr(([127, 0, 0, 1], 0).into()));
        config.certificates = Some(pki.admission(pki.chain(&key.node_id())));
        if nodes.is_empty() {
            config.policy = Arc::new(Blacklist(blacklisted_by_first.iter().copied().collect()));
        }
        let (network, events) = Network::start(config, key, &registry).await.expect("network");
        pending.push((key.clone(), events));
        nodes.push(TestNode { _dir: dir, id: key.node_id(), chain, pool, network, registry });
    }
    let addresses: Vec<_> = nodes.iter().map(|n| n.network.listen_addrs().first().cloned()).collect();
    for (index, node) in nodes.iter().enumerate() {
        let mut peers: Vec<_> = (keys.iter().zip(&addresses).enumerate())
            .map(|(peer, (k, a))| {
                let hidden = unaddressed.is_some_and(|hidden| hidden == index || hidden == peer);
                (k.node_id(), if hidden { None } else { a.clone() })
            })
            .collect();
        peers.extend(strangers.iter().map(|id| (*id, None)));
        node.network.set_peers(peers).await.expect("peers");
    }
    let validators = Validators::new(genesis.consensus_nodes.clone()).expect("validators");
    let mut outside = None;
    for (index, (node, (key, events))) in nodes.iter().zip(pending).enumerate() {
        if Some(index) == outsider {
            outside = Some((key, events));
            continue;
        }
        let engine = ConsensusEngine::new(
            mode,
            EngineConfig {
                key: key.clone(),
                validators: validators.clone(),
                height: 1,
                timeout_ms: TIMEOUT_MS,
                now_ms: now_ms(),
            },
        );
        let driver =
            Driver::new(engine, node.chain.clone(), node.pool.clone(), node.network.clone(), &key, &node.registry)
                .expect("driver");
        let shutdown = shutdown_rx.clone();
        tokio::spawn(async move { driver.run(events, shutdown).await });
    }
    StartedChain { nodes, shutdown, outside, pki }
}

/// Sends transfers to node 0 and waits until every node committed them, on the same blocks.
pub(super) async fn commits_everywhere(nodes: &[TestNode]) {
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
    let (nodes, shutdown) = start_chain(4, ConsensusMode::Pbft).await;
    commits_everywhere(&nodes).await;
    let _ = shutdown.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_raft_nodes_commit_the_same_blocks_over_libp2p() {
    let (nodes, shutdown) = start_chain(3, ConsensusMode::Raft).await;
    commits_everywhere(&nodes).await;
    let _ = shutdown.send(true);
}

impl TestNode {
    fn gauge(&self, name: &str, label: Option<(&str, &str)>) -> i64 {
        let families = self.registry.gather();
        let family = families.iter().find(|f| f.name() == name).unwrap_or_else(|| panic!("no metric {name}"));
        let metric = family
            .get_metric()
            .iter()
            .find(|m| label.is_none_or(|(k, v)| m.get_label().iter().any(|l| l.name() == k && l.value() == v)));
        let metric = metric.unwrap_or_else(|| panic!("no {name} {label:?}"));
        if family.get_field_type() == prometheus::proto::MetricType::COUNTER {
            metric.get_counter().get_value() as i64
        } else {
            metric.get_gauge().get_value() as i64
        }
    }

    /// The running engine's mode and the height it started at.
    fn role(&self) -> &'static str {
        ["pbft", "raft", "observer"]
            .into_iter()
            .find(|name| self.gauge("bcos_consensus_engine", Some(("mode", name))) == 1)
            .expect("one engine runs")
    }

    fn engine(&self) -> (ConsensusMode, i64) {
        let mode = if self.gauge("bcos_consensus_engine", Some(("mode", "raft"))) == 1 {
            ConsensusMode::Raft
        } else {
            ConsensusMode::Pbft
        };
        (mode, self.gauge("bcos_consensus_engine_since_height", None))
    }
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Submits a call of a system contract as a proposal of the committee's only member, which
/// carries it out at once.
fn admin_call(node: &TestNode, admin: &AccountKey, nonce: u64, to: Address, input: Vec<u8>) {
    node.pool.submit(&signed_proposal(admin, CHAIN_ID, nonce, to, input)).expect("admitted");
}

/// Asks every node to switch to `mode` a few blocks ahead, while transfers keep coming, and waits
/// until every node runs it from that height.
async fn switch_under_load(nodes: &[TestNode], admin: &AccountKey, admin_nonce: u64, mode: ConsensusMode) -> u64 {
    let at = nodes[0].chain.store().head_number() + 4;
    let call = ISystemConfig::setValueByKeyAtCall {
        key: "consensus_mode".into(),
        value: mode.as_str().into(),
        enableNumber: U256::from(at),
    };
    admin_call(&nodes[1], admin, admin_nonce, SYSTEM_CONFIG_ADDRESS, call.abi_encode());
    until("every node switched", || nodes.iter().all(|n| n.engine().0 == mode)).await;
    at
}

/// No node ran `mode` below `at`, and a quorum started it exactly there (a node that was behind
/// catches up by sync and starts it at its next height, never below `at`).
fn assert_switched_at(nodes: &[TestNode], mode: ConsensusMode, at: u64) {
    let engines: Vec<(ConsensusMode, i64)> = nodes.iter().map(TestNode::engine).collect();
    assert!(engines.iter().all(|&(m, since)| m == mode && since >= at as i64), "switch at {at}: {engines:?}");
    let exactly = engines.iter().filter(|(_, since)| *since == at as i64).count();
    assert!(exactly >= 3, "a quorum switches at {at} itself: {engines:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbft_raft_pbft_switches_keep_every_transaction_and_happen_at_one_height() {
    let admin = AccountKey::generate();
    let (nodes, shutdown) = start_chain_with(4, 0, ConsensusMode::Pbft, admin.address()).await;
    let senders: Vec<AccountKey> = (0..4).map(|_| AccountKey::generate()).collect();
    let (stop_load, mut load_stopped) = watch::channel(false);
    let load = {
        let pools: Vec<_> = nodes.iter().map(|n| n.pool.clone()).collect();
        let senders = senders.clone();
        tokio::spawn(async move {
            let mut sent = 0;
            while !*load_stopped.borrow_and_update() {
                for (i, sender) in senders.iter().enumerate() {
                    let raw = signed_transfer(sender, CHAIN_ID, sent, Address::repeat_byte(7));
                    pools[i % pools.len()].submit(&raw).expect("admitted");
                }
                sent += 1;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            sent
        })
    };
    let to_raft = switch_under_load(&nodes, &admin, 0, ConsensusMode::Raft).await;
    assert_switched_at(&nodes, ConsensusMode::Raft, to_raft);
    let to_pbft = switch_under_load(&nodes, &admin, 1, ConsensusMode::Pbft).await;
    assert_switched_at(&nodes, ConsensusMode::Pbft, to_pbft);
    for node in &nodes {
        assert_eq!(node.gauge("bcos_consensus_switches_total", None), 2);
    }
    until("PBFT blocks after the switch back", || nodes.iter().all(|n| n.chain.store().head_number() > to_pbft + 2))
        .await;
    let _ = stop_load.send(true);
    let per_sender = load.await.expect("load sent");
    until("every transfer committed on every node", || {
        nodes.iter().all(|n| {
            senders
                .iter()
                .all(|s| n.chain.store().account(&s.address()).expect("read").is_some_and(|a| a.nonce == per_sender))
        })
    })
    .await;

    // Every node holds the same blocks, and each transfer is in exactly one of them.
    let height = nodes.iter().map(|n| n.chain.store().head_number()).min().expect("nodes");
    let mut committed = std::collections::HashSet::new();
    for number in 1..=height {
        let hashes: Vec<_> =
            nodes.iter().map(|n| n.chain.store().header(number).expect("read").map(|h| h.hash())).collect();
        assert!(hashes.windows(2).all(|w| w[0] == w[1]), "fork at {number}: {hashes:?}");
        for tx in nodes[0].chain.store().transactions(number).expect("read").expect("block body") {
            let hash = *tx.envelope.tx_hash();
            assert!(committed.insert(hash), "transaction {hash} committed twice");
        }
    }
    assert_eq!(committed.len() as u64, per_sender * senders.len() as u64 + 2, "transfers and the two switches");
    let _ = shutdown.send(true);
}

/// Voters of every block from `from` on, as node 0 stored them.
fn voters(node: &TestNode, from: u64) -> Vec<(u64, Vec<NodeId>)> {
    let head = node.chain.store().head_number();
    (from..=head)
        .map(|number| {
            let qc = node.chain.store().quorum_certificate(number).expect("read").expect("certificate");
            (number, qc.votes.iter().map(|vote| vote.node_id).collect())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_without_voting_then_joins_and_a_member_leaves() {
    let admin = AccountKey::generate();
    let (nodes, shutdown) = start_chain_with(4, 1, ConsensusMode::Pbft, admin.address()).await;
    let observer = &nodes[4];
    assert_eq!(observer.role(), "observer");
    commits_everywhere(&nodes).await;
    for (number, voted) in voters(&nodes[0], 1) {
        assert!(!voted.contains(&observer.id), "the observer voted on block {number}");
    }

    // The committee (here: the administrator) makes the observer a consensus node: 5 nodes, a
    // quorum of 4.
    let promote = INodeRegistry::addConsensusNodeCall { nodeId: observer.id };
    admin_call(&nodes[0], &admin, 0, NODE_REGISTRY_ADDRESS, promote.abi_encode());
    until("the observer votes", || observer.role() == "pbft").await;
    let joined = observer.chain.store().head_number() + 1;
    commits_everywhere(&nodes).await;
    let after_join = voters(&nodes[0], joined);
    assert!(!after_join.is_empty());
    for (number, voted) in &after_join {
        assert!(voted.len() >= 4, "block {number} has {} votes of 5 nodes", voted.len());
    }

    // A founding member leaves: the chain goes on with the other four.
    let leaving = &nodes[3];
    let remove = INodeRegistry::removeNodeCall { nodeId: leaving.id };
    admin_call(&nodes[0], &admin, 1, NODE_REGISTRY_ADDRESS, remove.abi_encode());
    // The remaining nodes stop admitting it at once, so it may never learn of its own removal.
    let still_member = || nodes[0].chain.consensus_nodes().expect("read").contains(&leaving.id);
    until("the member removed", || !still_member()).await;
    let left = nodes[0].chain.store().head_number() + 1;
    let leaving_id = leaving.id;
    let remaining: Vec<TestNode> = nodes.into_iter().enumerate().filter(|(i, _)| *i != 3).map(|(_, n)| n).collect();
    commits_everywhere(&remaining).await;
    let after_leave = voters(&remaining[0], left);
    assert!(!after_leave.is_empty());
    for (number, voted) in &after_leave {
        assert!(voted.len() >= 3, "block {number}: {} votes", voted.len());
        assert!(!voted.contains(&leaving_id), "block {number} counts the removed member's vote");
    }
    let _ = shutdown.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_known_only_by_its_registry_address_gets_dialed() {
    let admin = AccountKey::generate();
    let observer = 1;
    let spec = ChainSpec {
        observers: 1,
        admin: admin.address(),
        unaddressed: Some(observer),
        ..ChainSpec::new(1, ConsensusMode::Pbft)
    };
    let StartedChain { nodes, shutdown, .. } = start(spec).await;
    let (validator, observer) = (&nodes[0], &nodes[observer]);
    assert!(validator.network.connected_peers().is_empty(), "no node has an address to dial");
    let listen = observer.network.listen_addrs().first().cloned().expect("observer listens");
    let port = listen
        .iter()
        .find_map(|protocol| match protocol {
            libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP listener");
    let set = INodeRegistry::setNodeAddressCall { nodeId: observer.id, p2pAddress: format!("127.0.0.1:{port}") };
    admin_call(validator, &admin, 0, NODE_REGISTRY_ADDRESS, set.abi_encode());
    until("the validator dials the observer at its registry address", || {
        validator.network.connected_peers().contains(&observer.id)
    })
    .await;
    // Connected, the observer syncs the block that published its address.
    let published = validator.chain.store().head_number();
    until("the observer syncs", || observer.chain.store().head_number() >= published).await;
    let _ = shutdown.send(true);
}
