//! Execution against a real RocksDB state initialised from a genesis.

use std::sync::Arc;

use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::{
    config::{ConsensusMode, Genesis, GenesisAccount, SystemConfig},
    crypto::{AccountKey, NodeKey},
    types::{
        RecoveredTx,
        system::{INodeRegistry, ISystemConfig, NODE_REGISTRY_ADDRESS, SYSTEM_CONFIG_ADDRESS},
    },
};
use prometheus::Registry;

use super::*;
use crate::{
    chain::{Chain, now_ms},
    metrics::ChainMetrics,
    storage::RocksStore,
};

const CHAIN_ID: u64 = 99;

struct Fixture {
    _dir: tempfile::TempDir,
    chain: Chain,
    admin: AccountKey,
    rich: AccountKey,
    consensus_node: alloy_primitives::B256,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(RocksStore::open(dir.path(), false).expect("open"));
    let admin = AccountKey::generate();
    let rich = AccountKey::generate();
    let consensus_node = NodeKey::generate().node_id();
    let genesis = Genesis {
        chain_id: CHAIN_ID,
        timestamp_ms: 0,
        system_config: SystemConfig::default(),
        consensus_nodes: vec![consensus_node],
        observer_nodes: Vec::new(),
        ca_cert: None,
        admins: vec![admin.address()],
        alloc: [(rich.address(), GenesisAccount { balance: U256::from(1_000), ..Default::default() })].into(),
    };
    let chain = Chain::open(store, &genesis, ChainMetrics::register(&Registry::new())).expect("genesis");
    Fixture { _dir: dir, chain, admin, rich, consensus_node }
}

fn signed(key: &AccountKey, nonce: u64, to: TxKind, value: u64, input: Vec<u8>) -> RecoveredTx {
    let raw = key.sign_transaction(TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit: 3_000_000,
        to,
        value: U256::from(value),
        input: Bytes::from(input),
        ..Default::default()
    });
    RecoveredTx::decode_and_recover(&raw, CHAIN_ID).expect("valid")
}

fn execute(f: &Fixture, txs: Vec<RecoveredTx>) -> ExecutedBlock {
    let input = f.chain.next_block_input(now_ms()).expect("input");
    f.chain.execute_next(&input, txs).expect("executes")
}

/// Commits an executed block as the next one, with a one-vote certificate.
fn commit(f: &Fixture, executed: ExecutedBlock) {
    let store = f.chain.store().clone();
    let input = f.chain.next_block_input(now_ms()).expect("input");
    let key = NodeKey::generate();
    let header = f.chain.seal_header(&input, &executed, key.node_id());
    let qc = crate::chain::sign_commit(&key, header.hash(), header.number, 0);
    let pool = crate::txpool::TxPool::new(
        CHAIN_ID,
        Default::default(),
        1_000_000_000,
        store.clone(),
        store,
        crate::metrics::PoolMetrics::register(&Registry::new()),
    );
    f.chain.commit(header, executed, qc, &pool).expect("commit");
}

fn set_config(key: &str, value: &str) -> Vec<u8> {
    ISystemConfig::setValueByKeyCall { key: key.into(), value: value.into() }.abi_encode()
}

#[test]
fn deploys_contracts_with_a_deterministic_state_root() {
    let f = fixture();
    let deployer = AccountKey::generate();
    let code = hex::decode(include_str!("../../../contracts/build/ERC20.bin")).expect("hex bytecode");
    let mut create = code.clone();
    create.extend(("Token".to_owned(), "TKN".to_owned(), U256::from(500)).abi_encode_params());
    let txs = vec![signed(&deployer, 0, TxKind::Create, 0, create)];
    let first = execute(&f, txs.clone());
    let second = execute(&f, txs);
    assert_eq!(first.state_root, second.state_root, "same input, same commitment");
    assert_eq!(first.receipts.len(), 1);
    let receipt = &first.receipts[0];
    assert!(receipt.success);
    assert_eq!(receipt.logs.len(), 1, "the mint's Transfer event");
    let contract = receipt.created_contract().expect("created");
    assert_eq!(contract, deployer.address().create(0));
    assert!(first.state_writes.windows(2).all(|w| w[0].key < w[1].key), "write-set sorted");
    assert!(first.logs_bloom.contains_input(alloy_primitives::BloomInput::Raw(contract.as_slice())));
}

#[test]
fn invalid_transactions_are_rejected_without_effect() {
    let f = fixture();
    let sender = AccountKey::generate();
    let executed = execute(&f, vec![signed(&sender, 1, TxKind::Call(Address::ZERO), 0, vec![])]);
    assert!(executed.included.is_empty());
    assert_eq!(executed.rejected.len(), 1);
    assert!(executed.rejected[0].1.contains("nonce"), "{:?}", executed.rejected);
    assert!(executed.state_writes.is_empty());
}

#[test]
fn transactions_need_no_balance_but_value_transfers_do() {
    let f = fixture();
    let poor = AccountKey::generate();
    let to = Address::repeat_byte(0x33);
    let executed = execute(
        &f,
        vec![
            signed(&poor, 0, TxKind::Call(to), 0, vec![]),
            signed(&poor, 1, TxKind::Call(to), 5, vec![]),
            signed(&f.rich, 0, TxKind::Call(to), 400, vec![]),
        ],
    );
    assert_eq!(executed.included.len(), 3, "{:?}", executed.rejected);
    assert!(executed.receipts[0].success, "a zero-value call needs no balance");
    assert!(!executed.receipts[1].success, "a transfer beyond the balance must not mint money");
    assert!(executed.receipts[2].success, "a funded transfer goes through");
}

#[test]
fn legacy_transactions_execute() {
    let f = fixture();
    let key = AccountKey::generate();
    let raw = key.sign_transaction(TxLegacy {
        chain_id: Some(CHAIN_ID),
        gas_limit: 21_000,
        to: TxKind::Call(Address::ZERO),
        ..Default::default()
    });
    let tx = RecoveredTx::decode_and_recover(&raw, CHAIN_ID).expect("valid");
    let executed = execute(&f, vec![tx]);
    assert_eq!(executed.receipts.first().map(|r| (r.success, r.gas_used, r.tx_type)), Some((true, 21_000, 0)));
}

#[test]
fn only_admins_change_system_config_and_it_applies_from_the_next_block() {
    let f = fixture();
    let stranger = AccountKey::generate();
    let to = TxKind::Call(SYSTEM_CONFIG_ADDRESS);
    let executed = execute(
        &f,
        vec![
            signed(&stranger, 0, to, 0, set_config("max_txs_per_block", "7")),
            signed(&f.admin, 0, to, 0, set_config("max_txs_per_block", "0")),
            signed(&f.admin, 1, to, 0, set_config("max_txs_per_block", "7")),
            signed(&f.admin, 2, to, 5, set_config("max_txs_per_block", "8")),
        ],
    );
    let outcome: Vec<bool> = executed.receipts.iter().map(|r| r.success).collect();
    assert_eq!(outcome, vec![false, false, true, false], "stranger, out of range, admin, payable");
    assert_eq!(
        decode_revert(&executed.receipts[0].revert_output).as_deref(),
        Some(format!("system config: {} is not a chain administrator", stranger.address()).as_str())
    );
    assert_eq!(
        decode_revert(&executed.receipts[1].revert_output).as_deref(),
        Some("system config: max_txs_per_block: must be between 1 and 100000")
    );
    assert_eq!(executed.receipts[2].logs.len(), 1, "ConfigChanged");

    // Commit it as block 1: block 1 itself ran with the old value, block 2 runs with the new one.
    commit(&f, executed);
    let store = f.chain.store().clone();
    assert_eq!(read_system_config(store.as_ref(), 1).expect("config").max_txs_per_block, 10_000);
    assert_eq!(read_system_config(store.as_ref(), 2).expect("config").max_txs_per_block, 7);
    assert_eq!(f.chain.system_config().max_txs_per_block, 7);
}

#[test]
fn a_scheduled_change_is_in_force_from_its_height_and_only_there() {
    let f = fixture();
    let to = TxKind::Call(SYSTEM_CONFIG_ADDRESS);
    let schedule = |key: &str, value: &str, at: u64| {
        ISystemConfig::setValueByKeyAtCall { key: key.into(), value: value.into(), enableNumber: U256::from(at) }
            .abi_encode()
    };
    // This block is number 1: a change at 1 (or earlier) would rewrite the past.
    let executed = execute(
        &f,
        vec![
            signed(&f.admin, 0, to, 0, schedule("consensus_mode", "raft", 1)),
            signed(&f.admin, 1, to, 0, schedule("consensus_mode", "raft", 5)),
        ],
    );
    let outcome: Vec<bool> = executed.receipts.iter().map(|r| r.success).collect();
    assert_eq!(outcome, vec![false, true]);
    assert_eq!(
        decode_revert(&executed.receipts[0].revert_output).as_deref(),
        Some("system config: enableNumber 1 is not after the current block 1")
    );
    let log = &executed.receipts[1].logs[0];
    let event = ISystemConfig::ConfigChanged::decode_raw_log(log.topics.iter().copied(), &log.data).expect("event");
    assert_eq!((event.value.as_str(), event.enableNumber), ("raft", U256::from(5)));

    commit(&f, executed);
    let store = f.chain.store().clone();
    for (height, mode) in [(2, ConsensusMode::Pbft), (4, ConsensusMode::Pbft), (5, ConsensusMode::Raft)] {
        assert_eq!(read_system_config(store.as_ref(), height).expect("config").consensus_mode, mode, "at {height}");
    }
}

#[test]
fn genesis_lists_the_consensus_nodes_on_chain() {
    let f = fixture();
    assert_eq!(f.chain.consensus_nodes().expect("readable"), vec![f.consensus_node]);
    assert_eq!(f.chain.system_config(), SystemConfig::default(), "every genesis value is on chain");
}

#[test]
fn administrators_move_nodes_between_roles_from_the_next_block() {
    let f = fixture();
    let registry = TxKind::Call(NODE_REGISTRY_ADDRESS);
    let (newcomer, stranger) = (B256::repeat_byte(0xa1), AccountKey::generate());
    use INodeRegistry::{addConsensusNodeCall, addObserverNodeCall, removeNodeCall};
    let txs = vec![
        signed(&stranger, 0, registry, 0, addObserverNodeCall { nodeId: newcomer }.abi_encode()),
        signed(&f.admin, 0, registry, 0, addObserverNodeCall { nodeId: newcomer }.abi_encode()),
        signed(&f.admin, 1, registry, 0, addObserverNodeCall { nodeId: newcomer }.abi_encode()),
        signed(&f.admin, 2, registry, 0, removeNodeCall { nodeId: f.consensus_node }.abi_encode()),
        signed(&f.admin, 3, registry, 0, addConsensusNodeCall { nodeId: newcomer }.abi_encode()),
        signed(&f.admin, 4, registry, 0, removeNodeCall { nodeId: B256::repeat_byte(0xee) }.abi_encode()),
    ];
    let executed = execute(&f, txs);
    let reasons: Vec<Option<String>> = executed
        .receipts
        .iter()
        .map(|r| (!r.success).then(|| decode_revert(&r.revert_output).unwrap_or_default()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            Some(format!("node registry: {} is not a chain administrator", stranger.address())),
            None,
            Some(format!("node registry: {newcomer} is already an observer node")),
            Some("node registry: the last consensus node cannot leave".to_owned()),
            None,
            Some(format!("node registry: {} is not registered", B256::repeat_byte(0xee))),
        ]
    );
    let log = &executed.receipts[4].logs[0];
    let event = INodeRegistry::NodeChanged::decode_raw_log(log.topics.iter().copied(), &log.data).expect("event");
    assert_eq!((event.nodeId, event.role.as_str()), (newcomer, "consensus"));

    assert_eq!(f.chain.consensus_nodes().expect("read"), vec![f.consensus_node], "not before the block commits");
    commit(&f, executed);
    assert_eq!(f.chain.consensus_nodes().expect("read"), vec![f.consensus_node, newcomer]);
    assert!(f.chain.observer_nodes().expect("read").is_empty(), "promoted, so no longer an observer");

    // Now the genesis node may leave, and it can come back as an observer.
    let executed = execute(
        &f,
        vec![
            signed(&f.admin, 5, registry, 0, removeNodeCall { nodeId: f.consensus_node }.abi_encode()),
            signed(&f.admin, 6, registry, 0, addObserverNodeCall { nodeId: f.consensus_node }.abi_encode()),
        ],
    );
    assert!(executed.receipts.iter().all(|r| r.success));
    commit(&f, executed);
    assert_eq!(f.chain.consensus_nodes().expect("read"), vec![newcomer]);
    assert_eq!(f.chain.observer_nodes().expect("read"), vec![f.consensus_node]);
}
