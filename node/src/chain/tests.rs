//! The compatibility gate on a real RocksDB chain: a node applies blocks up to the compatibility
//! version its build executes, and none beyond.

use alloy_sol_types::SolCall;
use bcos_sdk::{
    config::{Committee, Genesis},
    crypto::{AccountKey, NodeKey},
    types::{
        RecoveredTx,
        system::{ISystemConfig, SYSTEM_CONFIG_ADDRESS},
    },
};

use super::*;
use crate::{
    test_utils::{TestNode, signed_proposal, solo_genesis},
    version::MAX_COMPATIBILITY_VERSION,
};

const CHAIN_ID: u64 = 7;

fn genesis(committee: &AccountKey) -> Genesis {
    let genesis = solo_genesis(CHAIN_ID, NodeKey::generate().node_id());
    Genesis { committee: Committee::single(committee.address()), ..genesis }
}

/// The committee's proposal that the compatibility version become `version`: it runs in the
/// block that carries it.
fn raise_compatibility(committee: &AccountKey, nonce: u64, version: u32) -> RecoveredTx {
    let set = ISystemConfig::setValueByKeyCall { key: "compatibility_version".into(), value: version.to_string() };
    let raw = signed_proposal(committee, CHAIN_ID, nonce, SYSTEM_CONFIG_ADDRESS, set.abi_encode());
    RecoveredTx::decode_and_recover(&raw, CHAIN_ID).expect("valid")
}

/// Executes `txs` as the next block of `node` and commits it.
fn commit_next(node: &TestNode, txs: Vec<RecoveredTx>) -> Result<(), ChainError> {
    let input = node.chain.next_block_input(now_ms())?;
    let executed = node.chain.execute_next(&input, txs)?;
    let key = NodeKey::generate();
    let header = node.chain.seal_header(&input, &executed, key.node_id());
    let qc = sign_commit(&key, header.hash(), header.number, 0);
    node.chain.commit(header, executed, qc, &node.pool).map(drop)
}

#[test]
fn a_node_applies_no_block_under_a_compatibility_version_above_its_build() {
    let committee = AccountKey::generate();
    let genesis = genesis(&committee);
    let dir = tempfile::tempdir().expect("tempdir");
    // A build of the release before: it executes version 1 only.
    let old = TestNode::open(dir.path(), &genesis, 1).expect("opens");
    assert_eq!(old.chain.incompatibility(), None);
    // Governance accepts the raise whatever the node executing it supports: every node must
    // execute the proposal alike.
    commit_next(&old, vec![raise_compatibility(&committee, 0, 2)]).expect("block 1 runs under version 1");
    assert_eq!(old.chain.system_config().compatibility_version, 2);

    let expected = Incompatible { height: 2, required: 2, supported: 1 };
    assert_eq!(old.chain.incompatibility(), Some(expected.clone()));
    assert_eq!(
        expected.to_string(),
        "from block 2 the chain runs under compatibility version 2, but this build executes at most version 1: \
         upgrade the node to a release that supports version 2"
    );
    let input = old.chain.next_block_input(now_ms()).expect("input");
    assert!(matches!(old.chain.execute_next(&input, Vec::new()), Err(ChainError::Incompatible(e)) if e == expected));
    assert!(matches!(old.chain.call_input(), Err(ChainError::Incompatible(e)) if e == expected));
    assert_eq!(old.chain.head().expect("head").number, 1, "nothing beyond the raise");
    drop(old);

    // Started again as the same old build, it refuses its own data.
    let refused = TestNode::open(dir.path(), &genesis, 1).err().expect("refuses to start");
    assert!(matches!(&refused, ChainError::Incompatible(e) if *e == expected), "{refused}");

    // Upgraded, it carries on from there.
    let upgraded = TestNode::open(dir.path(), &genesis, MAX_COMPATIBILITY_VERSION).expect("opens");
    assert_eq!(upgraded.chain.incompatibility(), None);
    commit_next(&upgraded, Vec::new()).expect("block 2 runs under version 2");
    assert_eq!(upgraded.chain.head().expect("head").number, 2);
}
