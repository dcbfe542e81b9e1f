//! PBFT unit tests: one engine driven by hand, message by message, and the wire codec.

use alloy_primitives::{B256, Bytes};
use alloy_rlp::{Encodable, Header};
use bcos_sdk::{
    crypto::NodeKey,
    types::{BlockHeader, Vote},
};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use super::*;
use crate::sim::genesis;

const TIMEOUT_MS: u64 = 1000;

/// Four (or n) nodes with fixed keys; `keys[i]` is the i-th node in canonical order, so the
/// leader of `(height, view)` is node `(height + view) mod n`.
struct Fixture {
    keys: Vec<NodeKey>,
    validators: Validators,
}

impl Fixture {
    fn new(n: u8) -> Self {
        let mut keys: Vec<NodeKey> = (1..=n).map(|i| NodeKey::from_secret([i; 32])).collect();
        keys.sort_by_key(NodeKey::node_id);
        let validators = Validators::new(keys.iter().map(NodeKey::node_id).collect()).expect("non-empty");
        Self { keys, validators }
    }

    fn id(&self, i: usize) -> NodeId {
        self.keys[i].node_id()
    }

    fn engine(&self, i: usize) -> Pbft {
        self.engine_with_key(self.keys[i].clone())
    }

    fn engine_with_key(&self, key: NodeKey) -> Pbft {
        Pbft::new(EngineConfig {
            key,
            validators: self.validators.clone(),
            height: 1,
            timeout_ms: TIMEOUT_MS,
            now_ms: 0,
        })
    }

    fn pre_prepare(&self, signer: usize, height: u64, view: u64, proposal: &Proposal) -> PbftMessage {
        PbftMessage::PrePrepare(PrePrepare::new(&self.keys[signer], height, view, proposal.clone()))
    }

    fn prepare(&self, signer: usize, height: u64, view: u64, hash: B256) -> PbftMessage {
        PbftMessage::Prepare(Prepare::new(&self.keys[signer], height, view, hash))
    }

    fn commit(&self, signer: usize, height: u64, view: u64, hash: B256) -> PbftMessage {
        PbftMessage::Commit(CommitVote::new(&self.keys[signer], height, view, hash))
    }

    /// A prepared certificate signed by `signers`.
    fn certificate(&self, height: u64, view: u64, hash: B256, signers: &[usize]) -> PreparedCertificate {
        let votes = signers
            .iter()
            .map(|&i| Vote {
                node_id: self.id(i),
                signature: self.keys[i].sign(&Prepare::signing_message(height, view, hash)),
            })
            .collect();
        PreparedCertificate { view, hash, votes }
    }

    fn view_change(&self, signer: usize, new_view: u64, prepared: Option<PreparedCertificate>) -> ViewChange {
        ViewChange::new(&self.keys[signer], 1, new_view, prepared)
    }
}

/// A block at `height`, told apart by `tag`.
fn block(height: u64, tag: u8) -> Proposal {
    let header = BlockHeader { number: height, state_root: B256::repeat_byte(tag), ..genesis() };
    Proposal { header, transactions: vec![Bytes::from(vec![tag; 3])] }
}

fn broadcasts(ready: &Ready<PbftMessage>) -> Vec<PbftMessage> {
    ready.messages.iter().filter(|(target, _)| *target == Target::All).map(|(_, m)| m.clone()).collect()
}

/// Drives `engine` (node 0, replica at height 1) to prepared on `proposal` in view 0.
fn prepared_engine(f: &Fixture, proposal: &Proposal) -> Pbft {
    prepared_with_ready(f, proposal).0
}

/// Like [`prepared_engine`], also returning what the engine asked for when it voted commit.
fn prepared_with_ready(f: &Fixture, proposal: &Proposal) -> (Pbft, Ready<PbftMessage>) {
    let mut engine = f.engine(0);
    let hash = proposal.hash();
    engine.step(f.id(1), f.pre_prepare(1, 1, 0, proposal)).expect("pre-prepare");
    engine.proposal_checked(hash, true);
    engine.step(f.id(1), f.prepare(1, 1, 0, hash)).expect("prepare");
    engine.step(f.id(2), f.prepare(2, 1, 0, hash)).expect("prepare");
    let ready = engine.ready();
    assert!(broadcasts(&ready).contains(&f.commit(0, 1, 0, hash)), "prepared and voted commit");
    (engine, ready)
}

#[test]
fn replica_checks_votes_and_decides_with_a_valid_certificate() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    assert!(engine.ready().is_empty(), "node 0 does not lead height 1");
    let proposal = block(1, 7);
    let hash = proposal.hash();

    engine.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)).expect("pre-prepare");
    let ready = engine.ready();
    assert_eq!(ready.check, vec![proposal.clone()]);
    assert!(ready.messages.is_empty(), "no vote before the block checks out");

    engine.proposal_checked(hash, true);
    assert_eq!(broadcasts(&engine.ready()), vec![f.prepare(0, 1, 0, hash)]);

    engine.step(f.id(1), f.prepare(1, 1, 0, hash)).expect("prepare");
    assert!(engine.ready().is_empty(), "two prepares of three");
    engine.step(f.id(2), f.prepare(2, 1, 0, hash)).expect("prepare");
    assert_eq!(broadcasts(&engine.ready()), vec![f.commit(0, 1, 0, hash)]);

    engine.step(f.id(3), f.commit(3, 1, 0, hash)).expect("commit");
    assert!(engine.ready().commit.is_none(), "two commits of three");
    engine.step(f.id(1), f.commit(1, 1, 0, hash)).expect("commit");
    let commit = engine.ready().commit.expect("decided");
    assert_eq!(commit.proposal, proposal);
    assert_eq!((commit.qc.number, commit.qc.round, commit.qc.votes.len()), (1, 0, 3));
    f.validators.verify_qc(commit.qc, hash, f.validators.bft_quorum()).expect("a valid certificate");

    // Decided once: later votes are out of the window, and nothing more is handed out.
    assert_eq!(engine.step(f.id(2), f.commit(2, 1, 0, hash)), Err(StepError::OutOfWindow { height: 1, round: 0 }));
    engine.tick(10 * TIMEOUT_MS);
    assert!(engine.ready().is_empty(), "no view change while the driver persists the block");

    engine.committed(1, f.validators.clone());
    assert_eq!((engine.height(), engine.round()), (2, 0));
    assert_eq!(engine.ready().build, None, "node 2 leads height 2");
}

#[test]
fn leader_proposes_what_it_built_and_votes_for_it_unchecked() {
    let f = Fixture::new(4);
    let mut engine = f.engine(1);
    assert_eq!(engine.ready().build, Some(BuildRequest { height: 1, round: 0 }));
    let proposal = block(1, 9);
    engine.proposal_built(proposal.clone());
    let ready = engine.ready();
    assert!(ready.check.is_empty(), "the leader executed its own block");
    assert_eq!(broadcasts(&ready), vec![f.pre_prepare(1, 1, 0, &proposal), f.prepare(1, 1, 0, proposal.hash())]);
    // A second block for the same view is not proposed.
    engine.proposal_built(block(1, 10));
    assert!(engine.ready().is_empty());
}

#[test]
fn stale_builds_are_dropped() {
    let f = Fixture::new(4);
    let mut replica = f.engine(0);
    replica.proposal_built(block(1, 1));
    assert!(replica.ready().is_empty(), "nobody asked node 0 for a block");
    let mut leader = f.engine(1);
    let _ = leader.ready();
    leader.proposal_built(block(2, 1));
    assert!(leader.ready().is_empty(), "a block for another height");
}

#[test]
fn second_pre_prepare_is_equivocation_and_gets_no_vote() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let (first, second) = (block(1, 1), block(1, 2));
    engine.step(f.id(1), f.pre_prepare(1, 1, 0, &first)).expect("first");
    assert_eq!(engine.step(f.id(1), f.pre_prepare(1, 1, 0, &first)), Ok(()), "a repeat is harmless");
    assert_eq!(
        engine.step(f.id(1), f.pre_prepare(1, 1, 0, &second)),
        Err(StepError::Equivocation { from: f.id(1), height: 1, round: 0 })
    );
    assert_eq!(engine.ready().check, vec![first.clone()], "only the first block is checked");
    engine.proposal_checked(second.hash(), true);
    assert!(engine.ready().is_empty(), "no vote for the second block");
    engine.proposal_checked(first.hash(), true);
    assert_eq!(broadcasts(&engine.ready()), vec![f.prepare(0, 1, 0, first.hash())]);
}

#[test]
fn pre_prepares_are_checked_before_they_count() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let proposal = block(1, 1);
    let outsider = NodeKey::from_secret([0xee; 32]);
    let from_outsider = PbftMessage::PrePrepare(PrePrepare::new(&outsider, 1, 0, proposal.clone()));
    assert_eq!(engine.step(outsider.node_id(), from_outsider), Err(StepError::NotAMember(outsider.node_id())));
    assert_eq!(
        engine.step(f.id(2), f.pre_prepare(2, 1, 0, &proposal)),
        Err(StepError::NotLeader { from: f.id(2), height: 1, round: 0 })
    );
    assert_eq!(engine.step(f.id(1), f.pre_prepare(2, 1, 0, &proposal)), Err(StepError::BadSignature(f.id(1))));
    assert!(matches!(engine.step(f.id(1), f.pre_prepare(1, 1, 0, &block(2, 1))), Err(StepError::Invalid { .. })));
    assert!(
        matches!(engine.step(f.id(2), f.pre_prepare(2, 1, 1, &proposal)), Err(StepError::Invalid { .. })),
        "views after 0 begin with a new-view"
    );
    assert_eq!(
        engine.step(f.id(1), f.pre_prepare(1, 4, 0, &block(4, 1))),
        Err(StepError::OutOfWindow { height: 4, round: 0 })
    );
    assert!(engine.ready().is_empty(), "nothing was accepted");

    engine.committed(1, f.validators.clone());
    assert_eq!(
        engine.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)),
        Err(StepError::OutOfWindow { height: 1, round: 0 })
    );
    assert!(!StepError::OutOfWindow { height: 1, round: 0 }.is_bad_peer());
}

#[test]
fn forged_and_foreign_votes_never_count() {
    let f = Fixture::new(4);
    let proposal = block(1, 1);
    let hash = proposal.hash();
    let mut engine = prepared_engine(&f, &proposal);
    let outsider = NodeKey::from_secret([0xee; 32]);

    // Signed with another member's key, or by a non-member, or for another block.
    assert_eq!(engine.step(f.id(1), f.commit(2, 1, 0, hash)), Err(StepError::BadSignature(f.id(1))));
    assert_eq!(engine.step(f.id(3), f.prepare(1, 1, 0, hash)), Err(StepError::BadSignature(f.id(3))));
    let foreign = PbftMessage::Commit(CommitVote::new(&outsider, 1, 0, hash));
    assert_eq!(engine.step(outsider.node_id(), foreign), Err(StepError::NotAMember(outsider.node_id())));
    let wrong_round = CommitVote { view: 1, ..CommitVote::new(&f.keys[2], 1, 0, hash) };
    assert_eq!(engine.step(f.id(2), PbftMessage::Commit(wrong_round)), Err(StepError::BadSignature(f.id(2))));
    engine.step(f.id(3), f.commit(3, 1, 0, B256::repeat_byte(1))).expect("a vote for another block");
    assert!(
        matches!(engine.step(f.id(3), f.commit(3, 1, 0, hash)), Err(StepError::Invalid { .. })),
        "one commit vote per node per view"
    );
    assert!(engine.ready().commit.is_none(), "only this node's own commit counts so far");

    engine.step(f.id(1), f.commit(1, 1, 0, hash)).expect("commit");
    assert!(engine.ready().commit.is_none(), "two real votes");
    engine.step(f.id(2), f.commit(2, 1, 0, hash)).expect("commit");
    let commit = engine.ready().commit.expect("decided");
    let voters: Vec<NodeId> = commit.qc.votes.iter().map(|v| v.node_id).collect();
    assert!(!voters.contains(&f.id(3)) && !voters.contains(&outsider.node_id()));
    f.validators.verify_qc(commit.qc, hash, 3).expect("valid");
}

#[test]
fn a_block_that_fails_re_execution_gets_no_vote() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let proposal = block(1, 1);
    engine.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)).expect("pre-prepare");
    let _ = engine.ready();
    engine.proposal_checked(proposal.hash(), false);
    assert!(engine.ready().is_empty());
    engine.tick(TIMEOUT_MS);
    let view_change = ViewChange::new(&f.keys[0], 1, 1, None);
    assert_eq!(broadcasts(&engine.ready()), vec![PbftMessage::ViewChange { view_change, proposal: None }]);
}

#[test]
fn view_timeouts_follow_the_backoff_table() {
    // (base, view, timeout)
    const TABLE: &[(u64, u64, u64)] = &[
        (1000, 0, 1000),
        (1000, 1, 2000),
        (1000, 2, 4000),
        (1000, 5, 32_000),
        (1000, 6, 64_000),
        (1000, 7, 64_000),
        (1000, u64::MAX, 64_000),
        (250, 3, 2000),
        (0, 0, 1),
        (0, 10, 64),
        (u64::MAX, 0, u64::MAX),
        (u64::MAX / 2, 2, u64::MAX),
    ];
    for &(base, view, expected) in TABLE {
        assert_eq!(view_timeout_ms(base, view), expected, "base {base} view {view}");
    }

    // The engine moves on at exactly those deadlines, each view timed from its start.
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let mut now = 0;
    for view in 0..9 {
        assert_eq!(engine.round(), view);
        let deadline = now + view_timeout_ms(TIMEOUT_MS, view);
        assert_eq!(engine.view_deadline_ms(), deadline);
        engine.tick(deadline - 1);
        assert_eq!(engine.round(), view, "not before the deadline");
        // Meanwhile a long view repeats its view change every base timeout.
        let _ = engine.ready();
        engine.tick(deadline);
        assert_eq!(engine.round(), view + 1);
        let expected = PbftMessage::ViewChange { view_change: f.view_change(0, view + 1, None), proposal: None };
        assert_eq!(broadcasts(&engine.ready()), vec![expected]);
        now = deadline;
    }
}

#[test]
fn a_waiting_view_change_is_repeated_every_base_timeout_and_no_more() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    engine.tick(TIMEOUT_MS);
    let view_change = PbftMessage::ViewChange { view_change: f.view_change(0, 1, None), proposal: None };
    assert_eq!(broadcasts(&engine.ready()), vec![view_change.clone()]);
    engine.tick(2 * TIMEOUT_MS - 1);
    assert!(broadcasts(&engine.ready()).is_empty(), "not within a base timeout");
    engine.tick(2 * TIMEOUT_MS);
    assert_eq!(broadcasts(&engine.ready()), vec![view_change.clone()], "the same statement again");
    engine.tick(2 * TIMEOUT_MS + 10);
    assert!(broadcasts(&engine.ready()).is_empty());
}

#[test]
fn view_change_carries_the_prepared_certificate_and_block() {
    let f = Fixture::new(4);
    let proposal = block(1, 1);
    let hash = proposal.hash();
    let mut engine = prepared_engine(&f, &proposal);
    engine.tick(TIMEOUT_MS);
    assert_eq!(engine.round(), 1);
    let messages = broadcasts(&engine.ready());
    let [PbftMessage::ViewChange { view_change, proposal: Some(carried) }] = &messages[..] else {
        panic!("expected one view change with a block: {messages:?}")
    };
    assert_eq!(carried, &proposal);
    let certificate = view_change.prepared.as_ref().expect("prepared");
    assert_eq!((certificate.view, certificate.hash, certificate.votes.len()), (0, hash, 3));
    assert_eq!(view_change.verify(&f.validators, 3), Ok(()));

    // Having left view 0 the node neither votes in it nor counts its prepares.
    assert_eq!(engine.step(f.id(3), f.prepare(3, 1, 0, hash)), Err(StepError::OutOfWindow { height: 1, round: 0 }));
    assert_eq!(
        engine.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)),
        Err(StepError::OutOfWindow { height: 1, round: 0 })
    );
    assert!(engine.ready().is_empty());
}

#[test]
fn commits_of_an_earlier_view_still_decide() {
    let f = Fixture::new(4);
    let proposal = block(1, 1);
    let hash = proposal.hash();
    let mut engine = prepared_engine(&f, &proposal);
    engine.tick(TIMEOUT_MS);
    let _ = engine.ready();
    engine.step(f.id(1), f.commit(1, 1, 0, hash)).expect("commit of view 0");
    engine.step(f.id(3), f.commit(3, 1, 0, hash)).expect("commit of view 0");
    let commit = engine.ready().commit.expect("decided in view 0");
    assert_eq!(commit.qc.round, 0);
    f.validators.verify_qc(commit.qc, hash, 3).expect("valid");
}

/// View changes to view 1 from nodes 1, 2 and 3; node 1 prepared `proposal` in view 0.
fn view_changes_to_view_1(f: &Fixture, proposal: &Proposal) -> Vec<ViewChange> {
    let certificate = f.certificate(1, 0, proposal.hash(), &[0, 1, 3]);
    vec![f.view_change(1, 1, Some(certificate)), f.view_change(2, 1, None), f.view_change(3, 1, None)]
}

fn new_view(f: &Fixture, leader: usize, view: u64, view_changes: Vec<ViewChange>, proposal: &Proposal) -> PbftMessage {
    let pre_prepare = PrePrepare::new(&f.keys[leader], 1, view, proposal.clone());
    PbftMessage::NewView(NewView { height: 1, view, view_changes, pre_prepare })
}

#[test]
fn new_view_must_repropose_the_highest_prepared_block() {
    let f = Fixture::new(4);
    let (prepared, other) = (block(1, 1), block(1, 2));
    let proofs = view_changes_to_view_1(&f, &prepared);
    let invalid =
        |result: Result<(), StepError>| matches!(result, Err(StepError::Invalid { from, .. }) if from == f.id(2));

    let mut engine = f.engine(0);
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, proofs.clone(), &other))), "not the prepared block");
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, proofs[..2].to_vec(), &prepared))), "too few proofs");
    let doubled = vec![proofs[0].clone(), proofs[1].clone(), proofs[1].clone()];
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, doubled, &prepared))), "a node counted twice");
    let mut forged = proofs.clone();
    forged[2].signature = forged[1].signature.clone();
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, forged, &prepared))), "a forged view change");
    let mut thin = proofs.clone();
    thin[0] = f.view_change(1, 1, Some(f.certificate(1, 0, prepared.hash(), &[0, 1])));
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, thin, &other))), "a certificate without a quorum");
    let mut elsewhere = proofs.clone();
    elsewhere[2] = f.view_change(3, 2, None);
    assert!(invalid(engine.step(f.id(2), new_view(&f, 2, 1, elsewhere, &prepared))), "a view change to view 2");
    assert_eq!(
        engine.step(f.id(3), new_view(&f, 3, 1, proofs.clone(), &prepared)),
        Err(StepError::NotLeader { from: f.id(3), height: 1, round: 1 })
    );
    assert_eq!(engine.round(), 0, "no invalid new-view moved the node");
    assert!(engine.ready().is_empty());

    engine.step(f.id(2), new_view(&f, 2, 1, proofs.clone(), &prepared)).expect("the prepared block");
    assert_eq!(engine.round(), 1);
    assert_eq!(engine.ready().check, vec![prepared.clone()]);
    assert_eq!(
        engine.step(f.id(2), new_view(&f, 2, 1, view_changes_to_view_1(&f, &other), &other)),
        Err(StepError::Equivocation { from: f.id(2), height: 1, round: 1 })
    );
}

#[test]
fn the_highest_view_certificate_wins_and_conflicts_are_refused() {
    let f = Fixture::new(4);
    let (older, newer) = (block(1, 1), block(1, 2));
    // View 2 (leader: node 3): node 1 prepared `older` in view 0, node 2 `newer` in view 1.
    let proofs = vec![
        f.view_change(1, 2, Some(f.certificate(1, 0, older.hash(), &[0, 1, 2]))),
        f.view_change(2, 2, Some(f.certificate(1, 1, newer.hash(), &[1, 2, 3]))),
        f.view_change(3, 2, None),
    ];
    let mut engine = f.engine(0);
    assert!(matches!(engine.step(f.id(3), new_view(&f, 3, 2, proofs.clone(), &older)), Err(StepError::Invalid { .. })));
    engine.step(f.id(3), new_view(&f, 3, 2, proofs, &newer)).expect("the newer block");
    assert_eq!(engine.round(), 2);

    // Two certificates of one view for different blocks need double votes (here from nodes 1
    // and 2, played by the test): the proof is refused.
    let conflicting = vec![
        f.view_change(1, 2, Some(f.certificate(1, 1, older.hash(), &[0, 1, 2]))),
        f.view_change(2, 2, Some(f.certificate(1, 1, newer.hash(), &[1, 2, 3]))),
        f.view_change(3, 2, None),
    ];
    let mut engine = f.engine(0);
    assert!(matches!(engine.step(f.id(3), new_view(&f, 3, 2, conflicting, &newer)), Err(StepError::Invalid { .. })));
    assert_eq!(engine.round(), 0);
}

#[test]
fn view_changes_are_checked() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let relayed = PbftMessage::ViewChange { view_change: f.view_change(2, 1, None), proposal: None };
    assert!(matches!(engine.step(f.id(1), relayed), Err(StepError::Invalid { .. })), "signed for another node");
    let mut forged = f.view_change(1, 1, None);
    forged.new_view = 2;
    let forged = PbftMessage::ViewChange { view_change: forged, proposal: None };
    assert_eq!(engine.step(f.id(1), forged), Err(StepError::BadSignature(f.id(1))));
    let certificate = f.certificate(1, 0, block(1, 1).hash(), &[0, 1, 2]);
    let wrong_block =
        PbftMessage::ViewChange { view_change: f.view_change(1, 1, Some(certificate)), proposal: Some(block(1, 2)) };
    assert!(matches!(engine.step(f.id(1), wrong_block), Err(StepError::Invalid { .. })), "block not the prepared one");
    let late_certificate = f.certificate(1, 1, block(1, 1).hash(), &[0, 1, 2]);
    let late = PbftMessage::ViewChange { view_change: f.view_change(1, 1, Some(late_certificate)), proposal: None };
    assert!(
        matches!(engine.step(f.id(1), late), Err(StepError::Invalid { .. })),
        "certificate not from an earlier view"
    );
    let far = PbftMessage::ViewChange { view_change: f.view_change(1, MAX_VIEW_AHEAD + 1, None), proposal: None };
    assert!(matches!(engine.step(f.id(1), far), Err(StepError::OutOfWindow { .. })));
    assert_eq!(engine.round(), 0);
}

#[test]
fn new_leader_reproposes_the_prepared_block() {
    let f = Fixture::new(4);
    let prepared = block(1, 1);
    let proofs = view_changes_to_view_1(&f, &prepared);
    // Node 2 leads view 1. Two view changes to view 1 (f + 1) pull it into the view change; its
    // own makes a quorum.
    let mut leader = f.engine(2);
    let carrying = PbftMessage::ViewChange { view_change: proofs[0].clone(), proposal: Some(prepared.clone()) };
    leader.step(f.id(1), carrying).expect("view change");
    assert_eq!(leader.round(), 0);
    leader.step(f.id(3), PbftMessage::ViewChange { view_change: proofs[2].clone(), proposal: None }).expect("vc");
    assert_eq!(leader.round(), 1);
    let ready = leader.ready();
    assert_eq!(ready.build, None, "nothing to build: the prepared block is re-proposed");
    let messages = broadcasts(&ready);
    let [PbftMessage::ViewChange { view_change: own, .. }, PbftMessage::NewView(sent)] = &messages[..] else {
        panic!("expected a view change and a new-view: {messages:?}")
    };
    assert_eq!((own.node_id, own.new_view), (f.id(2), 1));
    assert_eq!((sent.view, sent.view_changes.len()), (1, 3));
    assert_eq!(sent.pre_prepare.proposal, prepared);
    assert_eq!(ready.check, vec![prepared.clone()], "the leader re-executes a block it did not build");
    leader.proposal_checked(prepared.hash(), true);
    assert_eq!(broadcasts(&leader.ready()), vec![f.prepare(2, 1, 1, prepared.hash())]);

    // A replica accepts that new-view, and gets it again if it announces view 1 late.
    let mut replica = f.engine(0);
    replica.step(f.id(2), PbftMessage::NewView(sent.clone())).expect("valid new-view");
    assert_eq!(replica.round(), 1);
    let late = PbftMessage::ViewChange { view_change: f.view_change(0, 1, None), proposal: None };
    leader.step(f.id(0), late).expect("late view change");
    assert_eq!(leader.ready().messages, vec![(Target::Node(f.id(0)), PbftMessage::NewView(sent.clone()))]);
}

#[test]
fn new_leader_builds_a_block_when_nothing_was_prepared() {
    let f = Fixture::new(4);
    let mut leader = f.engine(2);
    for i in [1, 3] {
        let message = PbftMessage::ViewChange { view_change: f.view_change(i, 1, None), proposal: None };
        leader.step(f.id(i), message).expect("view change");
    }
    let ready = leader.ready();
    assert_eq!(ready.build, Some(BuildRequest { height: 1, round: 1 }));
    assert!(!broadcasts(&ready).iter().any(|m| matches!(m, PbftMessage::NewView(_))));
    let fresh = block(1, 5);
    leader.proposal_built(fresh.clone());
    let messages = broadcasts(&leader.ready());
    let [PbftMessage::NewView(sent), PbftMessage::Prepare(_)] = &messages[..] else {
        panic!("expected a new-view and the leader's prepare: {messages:?}")
    };
    assert_eq!(sent.pre_prepare.proposal, fresh);

    let mut replica = f.engine(0);
    replica.step(f.id(2), PbftMessage::NewView(sent.clone())).expect("valid new-view");
    assert_eq!((replica.round(), replica.ready().check), (1, vec![fresh]));
}

#[test]
fn view_changes_from_f_plus_one_nodes_pull_a_node_forward() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    engine
        .step(f.id(1), PbftMessage::ViewChange { view_change: f.view_change(1, 3, None), proposal: None })
        .expect("vc");
    assert_eq!(engine.round(), 0, "one node may be faulty");
    engine
        .step(f.id(2), PbftMessage::ViewChange { view_change: f.view_change(2, 5, None), proposal: None })
        .expect("vc");
    assert_eq!(engine.round(), 3, "f + 1 nodes reached view 3");
    let expected = PbftMessage::ViewChange { view_change: f.view_change(0, 3, None), proposal: None };
    assert_eq!(broadcasts(&engine.ready()), vec![expected.clone()]);

    // A node still in an earlier view is told where the others are.
    let behind = PbftMessage::ViewChange { view_change: f.view_change(3, 1, None), proposal: None };
    assert_eq!(engine.step(f.id(3), behind.clone()), Err(StepError::OutOfWindow { height: 1, round: 1 }));
    assert_eq!(engine.ready().messages, vec![(Target::Node(f.id(3)), expected)]);
    assert_eq!(engine.step(f.id(3), behind), Err(StepError::OutOfWindow { height: 1, round: 1 }));
    assert!(engine.ready().is_empty(), "answered once per view");
}

#[test]
fn messages_for_the_next_heights_wait_for_them() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let next = block(2, 1);
    engine.step(f.id(2), f.pre_prepare(2, 2, 0, &next)).expect("buffered");
    engine.step(f.id(3), f.prepare(3, 2, 0, next.hash())).expect("buffered");
    engine.step(f.id(3), f.prepare(3, 3, 0, next.hash())).expect("buffered");
    assert!(engine.ready().is_empty());
    assert_eq!(
        engine.step(f.id(3), f.prepare(3, 4, 0, next.hash())),
        Err(StepError::OutOfWindow { height: 4, round: 0 })
    );
    // Sync brings height 1: the pre-prepare for height 2 is replayed.
    engine.committed(1, f.validators.clone());
    assert_eq!(engine.ready().check, vec![next.clone()]);
    engine.proposal_checked(next.hash(), true);
    engine.step(f.id(2), f.prepare(2, 2, 0, next.hash())).expect("prepare");
    // Own, node 3's (buffered) and node 2's: prepared.
    assert!(broadcasts(&engine.ready()).contains(&f.commit(0, 2, 0, next.hash())));
}

#[test]
fn buffered_messages_are_bounded_per_sender() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    for i in 0..MAX_BUFFERED_PER_PEER {
        engine.step(f.id(3), f.prepare(3, 2, 0, B256::with_last_byte(i as u8))).expect("buffered");
    }
    assert_eq!(
        engine.step(f.id(3), f.prepare(3, 2, 0, B256::ZERO)),
        Err(StepError::OutOfWindow { height: 2, round: 0 })
    );
    engine.step(f.id(2), f.prepare(2, 2, 0, B256::ZERO)).expect("another sender has room");
}

#[test]
fn commit_quorum_without_the_block_waits_for_sync() {
    let f = Fixture::new(4);
    let mut engine = f.engine(0);
    let unseen = block(1, 1).hash();
    for i in 1..4 {
        engine.step(f.id(i), f.commit(i, 1, 0, unseen)).expect("commit");
    }
    assert!(engine.ready().commit.is_none(), "it cannot commit a block it does not hold");
    engine.committed(1, f.validators.clone());
    assert_eq!((engine.height(), engine.round()), (2, 0));
    engine.committed(0, f.validators.clone());
    assert_eq!(engine.height(), 2, "the past is ignored");
    engine.committed(6, f.validators.clone());
    assert_eq!((engine.height(), engine.round()), (7, 0), "sync may jump ahead");
}

#[test]
fn a_node_outside_the_set_follows_without_voting() {
    let f = Fixture::new(4);
    let mut observer = f.engine_with_key(NodeKey::from_secret([0xee; 32]));
    let proposal = block(1, 1);
    let hash = proposal.hash();
    observer.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)).expect("pre-prepare");
    let _ = observer.ready();
    observer.proposal_checked(hash, true);
    for i in 1..4 {
        observer.step(f.id(i), f.prepare(i, 1, 0, hash)).expect("prepare");
    }
    assert!(observer.ready().messages.is_empty(), "no votes");
    for i in 1..4 {
        observer.step(f.id(i), f.commit(i, 1, 0, hash)).expect("commit");
    }
    assert!(observer.ready().commit.is_some());
    observer.committed(1, f.validators.clone());
    observer.tick(10 * TIMEOUT_MS);
    assert_eq!(observer.round(), 0, "it has no say in view changes");
    assert!(observer.ready().messages.is_empty());
}

// ---- wire codec ----

fn every_kind() -> Vec<PbftMessage> {
    let f = Fixture::new(4);
    let proposal = block(1, 1);
    let certificate = f.certificate(1, 0, proposal.hash(), &[0, 1, 2]);
    let view_changes = view_changes_to_view_1(&f, &proposal);
    vec![
        f.pre_prepare(1, 1, 0, &proposal),
        f.prepare(0, 1, 0, proposal.hash()),
        f.commit(0, 1, 0, proposal.hash()),
        PbftMessage::ViewChange { view_change: f.view_change(0, 1, None), proposal: None },
        PbftMessage::ViewChange {
            view_change: f.view_change(0, 1, Some(certificate)),
            proposal: Some(proposal.clone()),
        },
        new_view(&f, 2, 1, view_changes, &proposal),
    ]
}

#[test]
fn every_message_kind_round_trips() {
    let messages = every_kind();
    let kinds: Vec<u8> = messages.iter().map(PbftMessage::kind).collect();
    assert_eq!(kinds, vec![1, 2, 3, 4, 4, 5]);
    for message in messages {
        let bytes = message.encode_to_vec();
        assert_eq!(bytes.len(), message.length());
        assert_eq!(PbftMessage::decode_bounded(&bytes), Ok(message.clone()));
        assert_eq!(alloy_rlp::decode_exact::<PbftMessage>(&bytes), Ok(message));
    }
}

#[test]
fn truncated_extended_and_garbage_bytes_fail_cleanly() {
    for message in every_kind() {
        let bytes = message.encode_to_vec();
        for end in 0..bytes.len() {
            assert!(PbftMessage::decode_bounded(&bytes[..end]).is_err(), "prefix of {end} bytes decoded");
        }
        let mut extended = bytes.clone();
        extended.push(0);
        assert_eq!(PbftMessage::decode_bounded(&extended), Err(DecodeError::TrailingBytes(1)));
        // Flipped bytes decode to something or fail; they never panic.
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x55;
            let _ = PbftMessage::decode_bounded(&flipped);
        }
    }
    let mut rng = SmallRng::seed_from_u64(7);
    for _ in 0..2000 {
        let len = rng.gen_range(0..200);
        let garbage: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        let _ = PbftMessage::decode_bounded(&garbage);
    }
    assert!(matches!(PbftMessage::decode_bounded(&[]), Err(DecodeError::Rlp(_))));
    assert!(matches!(PbftMessage::decode_bounded(&[0x80]), Err(DecodeError::Rlp(_))));
}

/// Wraps `kind` and an encoded body as a message.
fn frame(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    Header { list: true, payload_length: kind.length() + body.len() }.encode(&mut out);
    kind.encode(&mut out);
    out.extend_from_slice(body);
    out
}

#[test]
fn unknown_kinds_extra_items_and_oversize_input_are_refused() {
    let f = Fixture::new(4);
    let prepare = Prepare::new(&f.keys[0], 1, 0, B256::ZERO);
    let body = alloy_rlp::encode(&prepare);
    assert_eq!(PbftMessage::decode_bounded(&frame(2, &body)), Ok(PbftMessage::Prepare(prepare)));
    for kind in [0, 6, 9, 0x7f] {
        assert_eq!(PbftMessage::decode_bounded(&frame(kind, &body)), Err(DecodeError::UnknownKind(kind)));
    }
    // An extra item after the body, inside the message's list.
    let mut padded = body.clone();
    padded.push(0x01);
    assert!(matches!(PbftMessage::decode_bounded(&frame(2, &padded)), Err(DecodeError::Rlp(_))));
    // A body of the wrong kind.
    assert!(matches!(PbftMessage::decode_bounded(&frame(1, &body)), Err(DecodeError::Rlp(_))));

    let huge = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        PbftMessage::decode_bounded(&huge),
        Err(DecodeError::TooLarge { len: MAX_MESSAGE_BYTES + 1, max: MAX_MESSAGE_BYTES })
    );
}

#[test]
fn optional_fields_hold_at_most_one_item_and_lists_are_capped() {
    let f = Fixture::new(4);
    let view_change = f.view_change(0, 1, None);
    // The view-change body is [statement, [block?]]: give the option two blocks.
    let proposal = block(1, 1);
    let mut option = Vec::new();
    let two = proposal.length() * 2;
    Header { list: true, payload_length: two }.encode(&mut option);
    proposal.encode(&mut option);
    proposal.encode(&mut option);
    let mut inner = Vec::new();
    view_change.encode(&mut inner);
    inner.extend_from_slice(&option);
    let mut body = Vec::new();
    Header { list: true, payload_length: inner.len() }.encode(&mut body);
    body.extend_from_slice(&inner);
    assert!(matches!(PbftMessage::decode_bounded(&frame(4, &body)), Err(DecodeError::Rlp(_))));

    // A certificate longer than any node set.
    let vote = Vote { node_id: f.id(0), signature: Bytes::from(vec![0; 64]) };
    let certificate = PreparedCertificate { view: 0, hash: B256::ZERO, votes: vec![vote; MAX_NODES + 1] };
    let oversized = PbftMessage::ViewChange { view_change: f.view_change(0, 1, Some(certificate)), proposal: None };
    assert_eq!(
        PbftMessage::decode_bounded(&oversized.encode_to_vec()),
        Err(DecodeError::TooMany { what: "prepared certificate votes", got: MAX_NODES + 1, max: MAX_NODES })
    );
}

// ---------------------------------------------------------------------------------------------
// Durable state.

impl Fixture {
    fn engine_at(&self, i: usize, height: u64) -> Pbft {
        Pbft::new(EngineConfig {
            key: self.keys[i].clone(),
            validators: self.validators.clone(),
            height,
            timeout_ms: TIMEOUT_MS,
            now_ms: 0,
        })
    }

    /// Node `i` after a restart at height 1 from `stored`.
    fn restarted(&self, i: usize, stored: &[u8]) -> Pbft {
        let mut engine = self.engine(i);
        engine.restore(stored).expect("restores");
        engine
    }
}

/// Node 0 prepared `proposal` in view 0 and voted commit; returns the engine and what it stored.
fn committed_vote(f: &Fixture, proposal: &Proposal) -> (Pbft, Bytes) {
    let (engine, ready) = prepared_with_ready(f, proposal);
    (engine, ready.persist.expect("stored"))
}

#[test]
fn persist_comes_exactly_when_view_votes_or_certificate_change() {
    let f = Fixture::new(4);
    let proposal = block(1, 1);
    let hash = proposal.hash();
    let mut engine = f.engine(0);
    assert_eq!(engine.ready().persist, None, "nothing signed yet");
    engine.step(f.id(1), f.pre_prepare(1, 1, 0, &proposal)).expect("pre-prepare");
    let ready = engine.ready();
    assert_eq!((ready.check.len(), ready.persist), (1, None), "accepting a block signs nothing");
    engine.tick(TIMEOUT_MS / 2);
    assert!(engine.ready().is_empty(), "a tick that fires nothing writes nothing");

    engine.proposal_checked(hash, true);
    let ready = engine.ready();
    assert_eq!(broadcasts(&ready), vec![f.prepare(0, 1, 0, hash)]);
    let prepared_vote = ready.persist.expect("the prepare vote is stored with it");
    engine.step(f.id(1), f.prepare(1, 1, 0, hash)).expect("prepare");
    assert!(engine.ready().is_empty(), "others' votes are not this node's state");
    engine.step(f.id(2), f.prepare(2, 1, 0, hash)).expect("prepare");
    let ready = engine.ready();
    assert_eq!(broadcasts(&ready), vec![f.commit(0, 1, 0, hash)]);
    let commit_vote = ready.persist.expect("the commit vote and certificate are stored");
    assert_ne!(commit_vote, prepared_vote);
    engine.step(f.id(1), f.commit(1, 1, 0, hash)).expect("commit");
    engine.step(f.id(1), f.prepare(1, 1, 0, hash)).expect("a repeat");
    engine.tick(TIMEOUT_MS - 1);
    assert!(engine.ready().is_empty());

    engine.tick(TIMEOUT_MS);
    let ready = engine.ready();
    assert!(matches!(broadcasts(&ready)[..], [PbftMessage::ViewChange { .. }]));
    assert!(ready.persist.is_some(), "a new view is stored");
    // Deciding, committing and starting the next height write nothing.
    engine.step(f.id(3), f.commit(3, 1, 0, hash)).expect("commit");
    let ready = engine.ready();
    assert!(ready.commit.is_some());
    assert_eq!(ready.persist, None);
    engine.committed(1, f.validators.clone());
    assert!(engine.ready().is_empty());
}

#[test]
fn a_restored_replica_never_votes_for_a_second_block_in_its_view() {
    let f = Fixture::new(4);
    let (x, y) = (block(1, 1), block(1, 2));
    let mut engine = f.engine(0);
    engine.step(f.id(1), f.pre_prepare(1, 1, 0, &x)).expect("pre-prepare");
    engine.proposal_checked(x.hash(), true);
    let stored = engine.ready().persist.expect("prepare stored");

    let mut node = f.restarted(0, &stored);
    let ready = node.ready();
    assert_eq!(broadcasts(&ready), vec![f.prepare(0, 1, 0, x.hash())], "the same vote, sent again");
    assert_eq!((ready.persist, ready.check.len()), (None, 0));
    // The Byzantine leader offers another block for view 0: refused, and never voted for.
    assert_eq!(
        node.step(f.id(1), f.pre_prepare(1, 1, 0, &y)),
        Err(StepError::Equivocation { from: f.id(1), height: 1, round: 0 })
    );
    node.proposal_checked(y.hash(), true);
    node.step(f.id(1), f.prepare(1, 1, 0, y.hash())).expect("prepare");
    node.step(f.id(2), f.prepare(2, 1, 0, y.hash())).expect("prepare");
    assert!(node.ready().is_empty(), "no vote of any kind for the second block");

    // Without its state the restarted node would have voted for both blocks in view 0.
    let mut amnesiac = f.engine(0);
    amnesiac.step(f.id(1), f.pre_prepare(1, 1, 0, &y)).expect("pre-prepare");
    amnesiac.proposal_checked(y.hash(), true);
    assert_eq!(broadcasts(&amnesiac.ready()), vec![f.prepare(0, 1, 0, y.hash())]);
}

#[test]
fn a_restored_node_keeps_its_certificate_for_view_changes_and_still_decides() {
    let f = Fixture::new(4);
    let x = block(1, 1);
    let hash = x.hash();
    let (mut before, stored) = committed_vote(&f, &x);
    let mut node = f.restarted(0, &stored);
    assert_eq!(durable::encode(&node, &node.durable().expect("state")), stored, "restored exactly");
    let ready = node.ready();
    assert_eq!(broadcasts(&ready), vec![f.prepare(0, 1, 0, hash), f.commit(0, 1, 0, hash)]);
    assert_eq!(ready.persist, None);

    // Its next view change carries the certificate and the block, like the one it would have
    // sent without the restart.
    before.tick(TIMEOUT_MS);
    node.tick(TIMEOUT_MS);
    let expected = broadcasts(&before.ready());
    let ready = node.ready();
    assert_eq!(broadcasts(&ready), expected);
    let [PbftMessage::ViewChange { view_change, proposal: Some(carried) }] = &expected[..] else {
        panic!("expected a view change with a block: {expected:?}")
    };
    assert_eq!((view_change.prepared.as_ref().map(|c| (c.view, c.hash)), carried), (Some((0, hash)), &x));
    assert!(ready.persist.is_some());
    // The commit votes of view 0 still decide the block, which it still holds.
    node.step(f.id(1), f.commit(1, 1, 0, hash)).expect("commit");
    node.step(f.id(3), f.commit(3, 1, 0, hash)).expect("commit");
    let commit = node.ready().commit.expect("decided");
    assert_eq!(commit.proposal, x);
    f.validators.verify_qc(commit.qc, hash, 3).expect("with its own vote in the certificate");
}

#[test]
fn a_restored_leader_does_not_build_a_second_block_for_its_view() {
    let f = Fixture::new(4);
    let (x, y) = (block(1, 1), block(1, 2));
    // Node 1 leads height 1, view 0.
    let mut leader = f.engine(1);
    assert_eq!(leader.ready().build, Some(BuildRequest { height: 1, round: 0 }));
    leader.proposal_built(x.clone());
    let ready = leader.ready();
    assert_eq!(broadcasts(&ready), vec![f.pre_prepare(1, 1, 0, &x), f.prepare(1, 1, 0, x.hash())]);
    let stored = ready.persist.expect("proposal and vote stored");

    let mut node = f.restarted(1, &stored);
    let ready = node.ready();
    assert_eq!(ready.build, None);
    assert_eq!(broadcasts(&ready), vec![f.pre_prepare(1, 1, 0, &x), f.prepare(1, 1, 0, x.hash())]);
    node.proposal_built(y);
    assert!(node.ready().is_empty(), "a late block is not proposed");
    // Without its state it would ask for, and propose, another block in view 0.
    assert!(f.engine(1).ready().build.is_some());
}

/// Frames a hand-made PBFT record.
fn pbft_record(record: &durable::Record) -> Bytes {
    crate::durable::encode(crate::EngineKind::Pbft, record)
}

#[test]
fn restore_ignores_obsolete_state_and_refuses_damaged_foreign_or_inconsistent_state() {
    let f = Fixture::new(4);
    let (x, y) = (block(1, 1), block(1, 2));
    let (_, stored) = committed_vote(&f, &x);

    // For a height the chain committed: ignored, the engine starts that height afresh.
    let mut later = f.engine_at(0, 2);
    later.restore(&stored).expect("obsolete state is no error");
    assert_eq!((later.height(), later.round(), later.persisted.is_none()), (2, 0, true));
    assert!(later.ready().is_empty());

    let refuse = |engine: &mut Pbft, bytes: &[u8]| {
        let error = engine.restore(bytes).expect_err("refused");
        assert_eq!((engine.round(), engine.view_state.accepted, engine.persisted.is_none()), (0, None, true));
        error
    };
    for cut in 0..stored.len() {
        assert!(refuse(&mut f.engine(0), &stored[..cut]).is_corrupt(), "truncated to {cut}");
    }
    let mut trailing = stored.to_vec();
    trailing.extend_from_slice(&[0xc0, 0xc0]);
    assert_eq!(refuse(&mut f.engine(0), &trailing), RestoreError::TrailingBytes(2));
    let raft_tagged = [&[b'R', 1][..], &stored[2..]].concat();
    assert_eq!(
        refuse(&mut f.engine(0), &raft_tagged),
        RestoreError::WrongEngine { expected: crate::EngineKind::Pbft, found: crate::EngineKind::Raft }
    );
    assert_eq!(refuse(&mut f.engine(1), &stored), RestoreError::OtherNode { expected: f.id(1), found: f.id(0) });
    let bigger = Fixture::new(5);
    let mut other_set = bigger.engine_with_key(f.keys[0].clone());
    assert_eq!(refuse(&mut other_set, &stored), RestoreError::NodeSetMismatch { height: 1 });

    let good = durable::Record {
        node: f.id(0),
        validators: crate::durable::node_set_digest(&f.validators),
        height: 1,
        view: 0,
        own: vec![durable::OwnVotes { hash: x.hash(), prepare: true, commit: true }],
        prepared: vec![f.certificate(1, 0, x.hash(), &[0, 1, 2])],
        blocks: vec![x.clone()],
    };
    assert_eq!(pbft_record(&good), stored, "the hand-made record is what the engine writes");
    let bad = |change: &dyn Fn(&mut durable::Record)| {
        let mut record = good.clone();
        change(&mut record);
        refuse(&mut f.engine(0), &pbft_record(&record))
    };
    let inconsistent = |change: &dyn Fn(&mut durable::Record)| match bad(change) {
        RestoreError::Inconsistent(reason) => reason,
        other => panic!("expected an inconsistency, got {other}"),
    };
    assert_eq!(bad(&|r| r.height = 3), RestoreError::Inconsistent("a stored block is for another height"));
    assert_eq!(
        bad(&|r| {
            r.height = 3;
            r.blocks.clear();
            r.prepared[0] = f.certificate(3, 0, x.hash(), &[0, 1, 2]);
        }),
        RestoreError::AheadOfChain { state_height: 3, chain_height: 1 }
    );
    inconsistent(&|r| r.own[0].prepare = false);
    inconsistent(&|r| r.prepared.clear());
    inconsistent(&|r| r.own.clear());
    inconsistent(&|r| r.prepared[0].view = 1);
    inconsistent(&|r| r.blocks.push(y.clone()));
    inconsistent(&|r| r.blocks.push(x.clone()));
    // A certificate that does not prove anything: too few votes, a forged one.
    inconsistent(&|r| r.prepared[0].votes.truncate(2));
    inconsistent(&|r| r.prepared[0].votes[1].signature = r.prepared[0].votes[0].signature.clone());
    // Node 0 does not lead view 0, so it cannot have signed a block it did not vote for.
    inconsistent(&|r| {
        r.own[0] = durable::OwnVotes { hash: x.hash(), prepare: false, commit: false };
        r.prepared.clear();
    });
    assert_eq!(
        bad(&|r| r.blocks.extend([x.clone(), y.clone()])),
        RestoreError::TooMany { what: "blocks", got: 3, max: 2 }
    );
    // A view change made after the commit vote is a valid later state; a missing block is
    // tolerated (the node then relies on sync for it).
    let after_view_change = |r: &mut durable::Record| {
        r.view = 1;
        r.own.clear();
    };
    for change in [after_view_change, |r: &mut durable::Record| r.blocks.clear()] {
        let mut record = good.clone();
        change(&mut record);
        let mut engine = f.engine(0);
        engine.restore(&pbft_record(&record)).expect("valid");
        assert_eq!(engine.round(), record.view);
    }

    let mut started = f.engine(0);
    let _ = started.ready();
    assert_eq!(started.restore(&stored), Err(RestoreError::AlreadyStarted));
}
