//! Execution against a real RocksDB state initialised from a genesis, and the fixtures the
//! governance tests share.

use alloy_consensus::{TxEip1559, TxLegacy};
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent, SolValue};
use bcos_sdk::{
    config::{Committee, ConsensusMode, Genesis, GenesisAccount, Permissions, SystemConfig},
    crypto::{AccountKey, NodeKey},
    types::{
        RecoveredTx, StoredReceipt,
        system::{
            GOVERNANCE_ADDRESS, IGovernance, INodeRegistry, ISystemConfig, NODE_REGISTRY_ADDRESS, SYSTEM_CONFIG_ADDRESS,
        },
    },
};

use super::*;
use crate::{
    chain::{Chain, now_ms},
    test_utils::TestNode,
};

pub(super) const CHAIN_ID: u64 = 99;

pub(super) struct Fixture {
    node: TestNode,
    /// The first committee member (the only one unless a test asks for more).
    pub(super) admin: AccountKey,
    /// Every committee member, `admin` first.
    pub(super) members: Vec<AccountKey>,
    pub(super) rich: AccountKey,
    pub(super) consensus_node: B256,
}

impl Fixture {
    pub(super) fn chain(&self) -> &Chain {
        &self.node.chain
    }

    pub(super) fn pool(&self) -> &crate::txpool::TxPool {
        &self.node.pool
    }
}

/// A chain whose committee is one member deciding alone, without permission checks.
pub(super) fn fixture() -> Fixture {
    fixture_with(1, 1, Permissions::default())
}

/// A chain with a committee of `members` and `threshold`, and `permissions` at genesis.
pub(super) fn fixture_with(members: usize, threshold: u32, permissions: Permissions) -> Fixture {
    let keys: Vec<AccountKey> = (0..members).map(|_| AccountKey::generate()).collect();
    let rich = AccountKey::generate();
    let consensus_node = NodeKey::generate().node_id();
    let genesis = Genesis {
        chain_id: CHAIN_ID,
        timestamp_ms: 0,
        system_config: SystemConfig::default(),
        consensus_nodes: vec![consensus_node],
        observer_nodes: Vec::new(),
        node_addresses: Default::default(),
        ca_cert: None,
        committee: Committee { members: keys.iter().map(AccountKey::address).collect(), threshold },
        permissions,
        alloc: [(rich.address(), GenesisAccount { balance: U256::from(1_000), ..Default::default() })].into(),
    };
    let node = TestNode::new(&genesis);
    let admin = AccountKey::from_secret(keys[0].secret()).expect("same key");
    Fixture { node, admin, members: keys, rich, consensus_node }
}

/// A signed transaction's bytes.
pub(super) fn raw(key: &AccountKey, nonce: u64, to: TxKind, gas_limit: u64, input: Vec<u8>) -> Bytes {
    key.sign_transaction(TxEip1559 {
        chain_id: CHAIN_ID,
        nonce,
        gas_limit,
        to,
        input: Bytes::from(input),
        ..Default::default()
    })
}

pub(super) fn signed(key: &AccountKey, nonce: u64, to: TxKind, value: u64, input: Vec<u8>) -> RecoveredTx {
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

/// A proposal by `key` that `target` be called with `call`, open for votes without end.
pub(super) fn propose(key: &AccountKey, nonce: u64, target: Address, call: impl SolCall) -> RecoveredTx {
    propose_until(key, nonce, target, call.abi_encode(), u64::MAX)
}

/// A proposal by `key` open for votes up to block `expires`.
pub(super) fn propose_until(key: &AccountKey, nonce: u64, target: Address, data: Vec<u8>, expires: u64) -> RecoveredTx {
    let call = IGovernance::proposeCall { target, data: data.into(), expiresAtBlock: expires };
    signed(key, nonce, TxKind::Call(GOVERNANCE_ADDRESS), 0, call.abi_encode())
}

/// `key`'s vote on proposal `id`.
pub(super) fn vote(key: &AccountKey, nonce: u64, id: u64, approve: bool) -> RecoveredTx {
    let call = IGovernance::voteCall { id: U256::from(id), approve };
    signed(key, nonce, TxKind::Call(GOVERNANCE_ADDRESS), 0, call.abi_encode())
}

pub(super) fn execute(f: &Fixture, txs: Vec<RecoveredTx>) -> ExecutedBlock {
    let input = f.chain().next_block_input(now_ms()).expect("input");
    f.chain().execute_next(&input, txs).expect("executes")
}

/// Commits an executed block as the next one, with a one-vote certificate.
pub(super) fn commit(f: &Fixture, executed: ExecutedBlock) {
    let input = f.chain().next_block_input(now_ms()).expect("input");
    let key = NodeKey::generate();
    let header = f.chain().seal_header(&input, &executed, key.node_id());
    let qc = crate::chain::sign_commit(&key, header.hash(), header.number, 0);
    f.chain().commit(header, executed, qc, &f.node.pool).expect("commit");
}

/// Executes `txs` as the next block and commits it.
pub(super) fn execute_and_commit(f: &Fixture, txs: Vec<RecoveredTx>) -> ExecutedBlock {
    let executed = execute(f, txs);
    commit(f, executed.clone());
    executed
}

/// Each receipt's revert reason, `None` for a success.
pub(super) fn reasons(executed: &ExecutedBlock) -> Vec<Option<String>> {
    executed
        .receipts
        .iter()
        .map(|r| (!r.success).then(|| decode_revert(&r.revert_output).unwrap_or_default()))
        .collect()
}

/// The events of type `E` a receipt carries.
pub(super) fn events<E: SolEvent>(receipt: &StoredReceipt) -> Vec<E> {
    receipt.logs.iter().filter_map(|log| E::decode_raw_log(log.topics.iter().copied(), &log.data).ok()).collect()
}

/// A read-only call of `to` with `data` from `from` over committed state.
pub(super) fn call_raw(f: &Fixture, from: Address, to: Address, data: Vec<u8>) -> CallOutcome {
    let store = f.chain().store().clone();
    let input = f.chain().call_input().expect("input");
    let request = CallRequest { from: Some(from), to: Some(to), data: data.into(), ..Default::default() };
    f.chain().executor().call(store.as_ref(), store.as_ref(), &input, &request).expect("call runs")
}

/// A read-only call of `call` on `to` from `from` over committed state: its result, or the
/// revert reason.
pub(super) fn view<C: SolCall>(f: &Fixture, from: Address, to: Address, call: C) -> Result<C::Return, String> {
    let outcome = call_raw(f, from, to, call.abi_encode());
    if outcome.success {
        C::abi_decode_returns(&outcome.output).map_err(|e| e.to_string())
    } else {
        Err(decode_revert(&outcome.output).unwrap_or_else(|| "no reason".into()))
    }
}

/// The creation code of an ERC-20 token with a supply of 500.
pub(super) fn erc20_create() -> Vec<u8> {
    let mut create = hex::decode(include_str!("../../../contracts/build/ERC20.bin")).expect("hex bytecode");
    create.extend(("Token".to_owned(), "TKN".to_owned(), U256::from(500)).abi_encode_params());
    create
}

pub(super) fn set_config(key: &str, value: &str) -> ISystemConfig::setValueByKeyCall {
    ISystemConfig::setValueByKeyCall { key: key.into(), value: value.into() }
}

#[test]
fn deploys_contracts_with_a_deterministic_state_root() {
    let f = fixture();
    let deployer = AccountKey::generate();
    let txs = vec![signed(&deployer, 0, TxKind::Create, 0, erc20_create())];
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
fn only_governance_changes_system_config_and_it_applies_from_the_next_block() {
    let f = fixture();
    let stranger = AccountKey::generate();
    let config = TxKind::Call(SYSTEM_CONFIG_ADDRESS);
    let executed = execute(
        &f,
        vec![
            signed(&stranger, 0, config, 0, set_config("max_txs_per_block", "7").abi_encode()),
            // A committee member is no authority by itself: only a proposal is.
            signed(&f.admin, 0, config, 0, set_config("max_txs_per_block", "7").abi_encode()),
            propose(&f.admin, 1, SYSTEM_CONFIG_ADDRESS, set_config("max_txs_per_block", "0")),
            propose(&f.admin, 2, SYSTEM_CONFIG_ADDRESS, set_config("max_txs_per_block", "7")),
            signed(&f.rich, 0, config, 5, set_config("max_txs_per_block", "8").abi_encode()),
        ],
    );
    let not_governance = |who: &AccountKey| {
        Some(format!(
            "system config: {} is not the governance contract; this change needs a committee proposal",
            who.address()
        ))
    };
    assert_eq!(
        reasons(&executed),
        vec![
            not_governance(&stranger),
            not_governance(&f.admin),
            None,
            None,
            Some("system config: not payable".into())
        ]
    );
    // The proposal whose call reverted is recorded as failed, with the reason; the other ran.
    let failed = events::<IGovernance::ProposalFailed>(&executed.receipts[2]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].reason, "system config: max_txs_per_block: must be between 1 and 100000");
    assert!(events::<ISystemConfig::ConfigChanged>(&executed.receipts[2]).is_empty());
    assert_eq!(events::<IGovernance::ProposalExecuted>(&executed.receipts[3]).len(), 1);
    assert_eq!(events::<ISystemConfig::ConfigChanged>(&executed.receipts[3]).len(), 1);

    // Commit it as block 1: block 1 itself ran with the old value, block 2 runs with the new one.
    commit(&f, executed);
    let store = f.chain().store().clone();
    assert_eq!(read_system_config(store.as_ref(), 1).expect("config").max_txs_per_block, 10_000);
    assert_eq!(read_system_config(store.as_ref(), 2).expect("config").max_txs_per_block, 7);
    assert_eq!(f.chain().system_config().max_txs_per_block, 7);
}

#[test]
fn a_scheduled_change_is_in_force_from_its_height_and_only_there() {
    let f = fixture();
    let schedule = |key: &str, value: &str, at: u64| ISystemConfig::setValueByKeyAtCall {
        key: key.into(),
        value: value.into(),
        enableNumber: U256::from(at),
    };
    // This block is number 1: a change at 1 (or earlier) would rewrite the past.
    let executed = execute(
        &f,
        vec![
            propose(&f.admin, 0, SYSTEM_CONFIG_ADDRESS, schedule("consensus_mode", "raft", 1)),
            propose(&f.admin, 1, SYSTEM_CONFIG_ADDRESS, schedule("consensus_mode", "raft", 5)),
        ],
    );
    let failed = events::<IGovernance::ProposalFailed>(&executed.receipts[0]);
    assert_eq!(failed[0].reason, "system config: enableNumber 1 is not after the current block 1");
    let changed = events::<ISystemConfig::ConfigChanged>(&executed.receipts[1]);
    assert_eq!((changed[0].value.as_str(), changed[0].enableNumber), ("raft", U256::from(5)));

    commit(&f, executed);
    let store = f.chain().store().clone();
    for (height, mode) in [(2, ConsensusMode::Pbft), (4, ConsensusMode::Pbft), (5, ConsensusMode::Raft)] {
        assert_eq!(read_system_config(store.as_ref(), height).expect("config").consensus_mode, mode, "at {height}");
    }
}

#[test]
fn genesis_lists_the_consensus_nodes_on_chain() {
    let f = fixture();
    assert_eq!(f.chain().consensus_nodes().expect("readable"), vec![f.consensus_node]);
    assert_eq!(f.chain().system_config(), SystemConfig::default(), "every genesis value is on chain");
}

#[test]
fn the_committee_moves_nodes_between_roles_from_the_next_block() {
    let f = fixture();
    let (newcomer, stranger) = (B256::repeat_byte(0xa1), AccountKey::generate());
    use INodeRegistry::{addConsensusNodeCall, addObserverNodeCall, removeNodeCall};
    let txs = vec![
        signed(
            &stranger,
            0,
            TxKind::Call(NODE_REGISTRY_ADDRESS),
            0,
            addObserverNodeCall { nodeId: newcomer }.abi_encode(),
        ),
        propose(&f.admin, 0, NODE_REGISTRY_ADDRESS, addObserverNodeCall { nodeId: newcomer }),
        propose(&f.admin, 1, NODE_REGISTRY_ADDRESS, addObserverNodeCall { nodeId: newcomer }),
        propose(&f.admin, 2, NODE_REGISTRY_ADDRESS, removeNodeCall { nodeId: f.consensus_node }),
        propose(&f.admin, 3, NODE_REGISTRY_ADDRESS, addConsensusNodeCall { nodeId: newcomer }),
        propose(&f.admin, 4, NODE_REGISTRY_ADDRESS, removeNodeCall { nodeId: B256::repeat_byte(0xee) }),
    ];
    let executed = execute(&f, txs);
    assert_eq!(
        reasons(&executed)[0],
        Some(format!("node registry: {} is neither the governance contract nor a chain operator", stranger.address()))
    );
    let failures: Vec<Option<String>> = executed.receipts[1..]
        .iter()
        .map(|r| events::<IGovernance::ProposalFailed>(r).pop().map(|failed| failed.reason))
        .collect();
    assert_eq!(
        failures,
        vec![
            None,
            Some(format!("node registry: {newcomer} is already an observer node")),
            Some("node registry: the last consensus node cannot leave".to_owned()),
            None,
            Some(format!("node registry: {} is not registered", B256::repeat_byte(0xee))),
        ]
    );
    let changed = events::<INodeRegistry::NodeChanged>(&executed.receipts[4]);
    assert_eq!((changed[0].nodeId, changed[0].role.as_str()), (newcomer, "consensus"));

    assert_eq!(f.chain().consensus_nodes().expect("read"), vec![f.consensus_node], "not before the block commits");
    commit(&f, executed);
    assert_eq!(f.chain().consensus_nodes().expect("read"), vec![f.consensus_node, newcomer]);
    assert!(f.chain().observer_nodes().expect("read").is_empty(), "promoted, so no longer an observer");

    // Now the genesis node may leave, and it can come back as an observer.
    let executed = execute(
        &f,
        vec![
            propose(&f.admin, 5, NODE_REGISTRY_ADDRESS, removeNodeCall { nodeId: f.consensus_node }),
            propose(&f.admin, 6, NODE_REGISTRY_ADDRESS, addObserverNodeCall { nodeId: f.consensus_node }),
        ],
    );
    assert!(executed.receipts.iter().all(|r| events::<IGovernance::ProposalExecuted>(r).len() == 1));
    commit(&f, executed);
    assert_eq!(f.chain().consensus_nodes().expect("read"), vec![newcomer]);
    assert_eq!(f.chain().observer_nodes().expect("read"), vec![f.consensus_node]);
}
