//! Sync between two real chains on RocksDB.

use alloy_primitives::{Address, B256};
use bcos_sdk::{
    crypto::{AccountKey, NodeKey},
    types::QuorumCertificate,
};

use super::*;
use crate::{
    chain::sign_commit,
    consensus::solo::seal_one,
    test_utils::{TestNode, signed_transfer, solo_genesis},
};

/// A source chain of `blocks` blocks sealed by `key`, and a fresh node of the same chain.
fn source_and_fresh(key: &NodeKey, blocks: u64) -> (TestNode, TestNode) {
    let genesis = solo_genesis(11, key.node_id());
    let source = TestNode::new(&genesis);
    let sender = AccountKey::generate();
    for nonce in 0..blocks {
        source.pool.submit(&signed_transfer(&sender, 11, nonce, Address::repeat_byte(1))).expect("admitted");
        seal_one(&source.chain, &source.pool, key, 100).expect("sealed");
    }
    (source, TestNode::new(&genesis))
}

fn fetch(source: &Chain, from: u64) -> Vec<SyncedBlock> {
    let request = SyncRequest::decode(&SyncRequest::Blocks { from, max: 64 }.encode()).expect("request decodes");
    let response = serve(source, &request).expect("served");
    match SyncResponse::decode(&response.encode()).expect("response decodes") {
        SyncResponse::Blocks(blocks) => blocks,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn a_fresh_node_syncs_to_the_same_head_and_state() {
    let key = NodeKey::generate();
    let (source, fresh) = source_and_fresh(&key, 3);
    let status = serve(&source.chain, &SyncRequest::Status).expect("status");
    assert_eq!(
        status,
        SyncResponse::Status {
            height: 3,
            head_hash: source.chain.head().expect("head").hash(),
            genesis_hash: fresh.chain.genesis_hash(),
        }
    );
    let blocks = fetch(&source.chain, 1);
    assert_eq!(blocks.len(), 3);
    assert_eq!(apply(&fresh.chain, &fresh.pool, blocks).expect("applied"), 3);
    assert_eq!(fresh.chain.head().expect("head"), source.chain.head().expect("head"));
    assert_eq!(fetch(&source.chain, 4), vec![], "nothing past the head");
    assert_eq!(
        serve(&source.chain, &SyncRequest::Blocks { from: 0, max: 0 }).expect("empty"),
        SyncResponse::Blocks(vec![])
    );
}

#[test]
fn forged_certificates_and_wrong_blocks_are_refused() {
    let key = NodeKey::generate();
    let (source, fresh) = source_and_fresh(&key, 2);
    let blocks = fetch(&source.chain, 1);

    let mut forged = blocks.clone();
    let hash = forged[0].proposal.hash();
    forged[0].qc = sign_commit(&NodeKey::generate(), hash, 1, 0);
    let error = apply(&fresh.chain, &fresh.pool, forged).expect_err("forged");
    assert!(matches!(error, SyncError::Certificate { number: 1, source: QcError::NotAMember(_) }), "{error}");
    assert!(error.is_bad_peer());

    let mut empty_qc = blocks.clone();
    empty_qc[0].qc = QuorumCertificate { block_hash: hash, number: 1, round: 0, votes: vec![] };
    assert!(matches!(apply(&fresh.chain, &fresh.pool, empty_qc), Err(SyncError::Certificate { .. })));

    // Even a correctly signed certificate cannot make a node accept a block that does not execute
    // to its header.
    let mut wrong_state = blocks.clone();
    wrong_state[0].proposal.header.state_root = B256::repeat_byte(0xee);
    let wrong_hash = wrong_state[0].proposal.hash();
    wrong_state[0].qc = sign_commit(&key, wrong_hash, 1, 0);
    let error = apply(&fresh.chain, &fresh.pool, wrong_state).expect_err("mismatch");
    assert!(matches!(error, SyncError::Block { number: 1, source: ProposalError::Mismatch }), "{error}");

    let error = apply(&fresh.chain, &fresh.pool, blocks[1..].to_vec()).expect_err("gap");
    assert!(matches!(error, SyncError::NotNext { got: 2, head: 0 }));
    assert!(!error.is_bad_peer());
    assert_eq!(fresh.chain.head().expect("head").number, 0, "nothing was applied");
    assert_eq!(apply(&fresh.chain, &fresh.pool, blocks).expect("the real blocks"), 2);
}

#[test]
fn sync_messages_decode_strictly() {
    for request in [SyncRequest::Status, SyncRequest::Blocks { from: 7, max: 3 }] {
        assert_eq!(SyncRequest::decode(&request.encode()), Ok(request));
    }
    assert_eq!(SyncRequest::decode(&[]), Err(DecodeError::Empty));
    assert_eq!(SyncRequest::decode(&[9]), Err(DecodeError::UnknownKind(9)));
    assert_eq!(SyncRequest::decode(&[0, 1]), Err(DecodeError::Trailing(1)));
    let mut trailing = SyncRequest::Blocks { from: 1, max: 1 }.encode();
    trailing.push(0);
    assert_eq!(SyncRequest::decode(&trailing), Err(DecodeError::Trailing(1)));
    assert!(matches!(SyncResponse::decode(&[1, 0xff, 0xff]), Err(DecodeError::Rlp(_))));
    let status = SyncResponse::Status { height: 1, head_hash: B256::ZERO, genesis_hash: B256::ZERO };
    assert_eq!(SyncResponse::decode(&status.encode()), Ok(status));
}
