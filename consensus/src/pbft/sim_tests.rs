//! PBFT on the simulated network: progress, crashes, silent and Byzantine nodes, partitions.
//!
//! Every node runs inside [`TestNode`], which records the errors its engine reports and can make
//! the node misbehave. The simulated driver verifies every commit's certificate and parent, and
//! `assert_no_fork` compares the chains.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{B256, Bytes};
use bcos_sdk::{crypto::NodeKey, types::BlockHeader};

use crate::{
    Engine, EngineConfig, NodeId, Proposal, Ready, RestoreError, StepError, Target, Validators,
    pbft::{CommitVote, NewView, Pbft, PbftMessage, PrePrepare, Prepare, ViewChange},
    sim::{Network, fake_header, genesis},
};

const TIMEOUT_MS: u64 = 1000;
const STEP_MS: u64 = 50;

/// How a test node behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Never proposes (drops its pre-prepares and new-views) but votes.
    Silent,
    /// As leader, sends one block to some replicas and a conflicting one to others (and both to
    /// the first), and votes for each block towards the replicas that got it.
    Equivocate,
    /// Besides its real votes, sends votes signed with a key that is not its own.
    ForgeVotes,
}

/// A PBFT engine with a behaviour, recording the errors it reports.
struct TestNode {
    inner: Pbft,
    key: NodeKey,
    behaviour: Behaviour,
    validators: Validators,
    /// The last block this node committed itself: the parent conflicting blocks are built on.
    parent: BlockHeader,
    /// For the equivocator: each block it proposed, and the conflicting twin.
    twins: BTreeMap<B256, B256>,
    errors: Vec<StepError>,
}

impl TestNode {
    fn new(config: EngineConfig, behaviour: Behaviour) -> Self {
        let key = config.key.clone();
        let validators = config.validators.clone();
        Self {
            inner: Pbft::new(config),
            key,
            behaviour,
            validators,
            parent: genesis(),
            twins: BTreeMap::new(),
            errors: Vec::new(),
        }
    }

    fn others(&self) -> Vec<NodeId> {
        let me = self.key.node_id();
        self.validators.nodes().iter().copied().filter(|id| *id != me).collect()
    }

    /// A block conflicting with `proposal`, valid on top of this node's last block.
    fn twin(&mut self, proposal: &Proposal, view: u64) -> Proposal {
        let transactions = vec![Bytes::from(format!("twin h{} v{view}", proposal.header.number).into_bytes())];
        let header = fake_header(&self.parent, self.key.node_id(), &transactions);
        let twin = Proposal { header, transactions };
        self.twins.insert(proposal.hash(), twin.hash());
        twin
    }

    fn misbehave(&mut self, messages: Vec<(Target, PbftMessage)>) -> Vec<(Target, PbftMessage)> {
        let mut out = Vec::new();
        for (target, message) in messages {
            match (self.behaviour, message) {
                (Behaviour::Silent, PbftMessage::PrePrepare(_) | PbftMessage::NewView(_)) => {}
                (Behaviour::Equivocate, PbftMessage::PrePrepare(pre_prepare)) => {
                    let twin = self.twin(&pre_prepare.proposal, pre_prepare.view);
                    let twin = PrePrepare::new(&self.key, pre_prepare.height, pre_prepare.view, twin);
                    self.split(&mut out, PbftMessage::PrePrepare(pre_prepare), PbftMessage::PrePrepare(twin));
                }
                (Behaviour::Equivocate, PbftMessage::NewView(new_view)) => {
                    let pre_prepare = &new_view.pre_prepare;
                    let twin = self.twin(&pre_prepare.proposal, pre_prepare.view);
                    let twin = PrePrepare::new(&self.key, pre_prepare.height, pre_prepare.view, twin);
                    let twin = NewView { pre_prepare: twin, ..new_view.clone() };
                    self.split(&mut out, PbftMessage::NewView(new_view), PbftMessage::NewView(twin));
                }
                (Behaviour::Equivocate, PbftMessage::Prepare(prepare)) if self.twins.contains_key(&prepare.hash) => {
                    let twin = Prepare::new(&self.key, prepare.height, prepare.view, self.twins[&prepare.hash]);
                    self.split_votes(&mut out, PbftMessage::Prepare(prepare), PbftMessage::Prepare(twin));
                }
                (Behaviour::Equivocate, PbftMessage::Commit(commit)) if self.twins.contains_key(&commit.hash) => {
                    let twin = CommitVote::new(&self.key, commit.height, commit.view, self.twins[&commit.hash]);
                    self.split_votes(&mut out, PbftMessage::Commit(commit), PbftMessage::Commit(twin));
                }
                (Behaviour::ForgeVotes, PbftMessage::Prepare(prepare)) => {
                    let outsider = NodeKey::from_secret([0xee; 32]);
                    let forged = Prepare::new(&outsider, prepare.height, prepare.view, B256::repeat_byte(0xee));
                    out.push((Target::All, PbftMessage::Prepare(forged)));
                    out.push((target, PbftMessage::Prepare(prepare)));
                }
                (Behaviour::ForgeVotes, PbftMessage::Commit(commit)) => {
                    let outsider = NodeKey::from_secret([0xee; 32]);
                    let forged = CommitVote { signature: outsider.sign(&B256::repeat_byte(1)), ..commit.clone() };
                    out.push((Target::All, PbftMessage::Commit(forged)));
                    let stolen = CommitVote::new(&outsider, commit.height, commit.view, B256::repeat_byte(0xee));
                    out.push((Target::All, PbftMessage::Commit(stolen)));
                    out.push((target, PbftMessage::Commit(commit)));
                }
                (_, message) => out.push((target, message)),
            }
        }
        out
    }

    /// Sends `original` to even-placed replicas and `twin` to odd-placed ones; the first replica
    /// gets both.
    fn split(&self, out: &mut Vec<(Target, PbftMessage)>, original: PbftMessage, twin: PbftMessage) {
        for (place, node) in self.others().into_iter().enumerate() {
            if place % 2 == 0 {
                out.push((Target::Node(node), original.clone()));
            } else {
                out.push((Target::Node(node), twin.clone()));
            }
            if place == 0 {
                out.push((Target::Node(node), twin.clone()));
            }
        }
    }

    /// Votes for each block towards the replicas that were sent it.
    fn split_votes(&self, out: &mut Vec<(Target, PbftMessage)>, original: PbftMessage, twin: PbftMessage) {
        for (place, node) in self.others().into_iter().enumerate() {
            let vote = if place % 2 == 0 { original.clone() } else { twin.clone() };
            out.push((Target::Node(node), vote));
        }
    }
}

impl Engine for TestNode {
    type Message = PbftMessage;

    fn restore(&mut self, durable: &[u8]) -> Result<(), RestoreError> {
        self.inner.restore(durable)
    }

    fn tick(&mut self, now_ms: u64) {
        self.inner.tick(now_ms);
    }

    fn step(&mut self, from: NodeId, message: PbftMessage) -> Result<(), StepError> {
        let result = self.inner.step(from, message);
        if let Err(error) = &result {
            self.errors.push(error.clone());
        }
        result
    }

    fn proposal_built(&mut self, proposal: Proposal) {
        self.inner.proposal_built(proposal);
    }

    fn proposal_checked(&mut self, hash: B256, valid: bool) {
        self.inner.proposal_checked(hash, valid);
    }

    fn committed(&mut self, height: u64, validators: Validators) {
        self.validators = validators.clone();
        self.inner.committed(height, validators);
    }

    fn ready(&mut self) -> Ready<PbftMessage> {
        let mut ready = self.inner.ready();
        if let Some(commit) = &ready.commit {
            self.parent = commit.proposal.header.clone();
        }
        ready.messages = self.misbehave(std::mem::take(&mut ready.messages));
        ready
    }

    fn height(&self) -> u64 {
        self.inner.height()
    }

    fn round(&self) -> u64 {
        self.inner.round()
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.inner.current_leader()
    }
}

/// `n` nodes; the leader of height 1, view 0 behaves as `behaviour`, the others honestly.
fn network_with(n: usize, seed: u64, behaviour: Behaviour) -> Network<TestNode> {
    Network::new(n, seed, TIMEOUT_MS, Validators::bft_quorum, move |config: EngineConfig| {
        let odd_one = config.validators.at(1);
        let behaviour = if config.key.node_id() == odd_one { behaviour } else { Behaviour::Honest };
        TestNode::new(config, behaviour)
    })
}

fn network(n: usize, seed: u64) -> Network<TestNode> {
    network_with(n, seed, Behaviour::Honest)
}

/// Index of the leader of `(height, view)`.
fn leader_index(net: &Network<TestNode>, height: u64, view: u64) -> usize {
    net.index_of(&net.validators.at(height + view)).expect("a member")
}

fn all_at_least(height: u64) -> impl Fn(&Network<TestNode>) -> bool {
    move |net| net.heights().iter().all(|&h| h >= height)
}

fn these_at_least(nodes: Vec<usize>, height: u64) -> impl Fn(&Network<TestNode>) -> bool {
    move |net| nodes.iter().all(|&i| net.heights()[i] >= height)
}

/// Runs like a node whose sync module fetches blocks it is missing: every simulated second,
/// running nodes behind the longest chain catch up.
fn run_with_sync(
    net: &mut Network<TestNode>,
    max_ms: u64,
    done: impl Fn(&Network<TestNode>) -> bool,
) -> Result<(), String> {
    let deadline = net.now_ms() + max_ms;
    loop {
        if net.run_until(1000, STEP_MS, &done).is_ok() {
            return Ok(());
        }
        if net.now_ms() > deadline {
            return Err(format!("not reached after {max_ms} ms; heights {:?}", net.heights()));
        }
        let longest = net.heights().into_iter().max().unwrap_or(0);
        for i in 0..net.nodes.len() {
            if !net.nodes[i].stopped && net.heights()[i] < longest {
                net.sync(i);
            }
        }
    }
}

/// Runs until every node is five blocks past the highest height now (with sync), within `max_ms`,
/// and checks that no two nodes hold different blocks at one height.
fn converge_without_fork(net: &mut Network<TestNode>, seed: u64, max_ms: u64) {
    let target = net.heights().into_iter().max().unwrap_or(0) + 5;
    run_with_sync(net, max_ms, all_at_least(target)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
    net.assert_no_fork();
}

/// Lets messages in flight settle, so a stall can be measured from a fixed point.
fn settle(net: &mut Network<TestNode>) {
    let until = net.now_ms() + 200;
    let _ = net.run_until(200, STEP_MS, |net| net.now_ms() >= until);
}

fn errors_of(net: &Network<TestNode>, i: usize) -> &[StepError] {
    &net.nodes[i].engine.errors
}

#[test]
fn four_and_seven_nodes_commit_twenty_identical_heights() {
    for (n, seeds) in [(4, 0..10), (7, 0..3)] {
        for seed in seeds {
            let mut net = network(n, seed);
            net.run_until(60_000, STEP_MS, all_at_least(20)).unwrap_or_else(|e| panic!("n {n} seed {seed}: {e}"));
            net.assert_no_fork();
            // With every node up nothing times out: each height decides in view 0, proposed by
            // its leader; late votes are dropped without blaming anyone.
            for node in &net.nodes {
                for commit in &node.chain {
                    assert_eq!(commit.qc.round, 0, "n {n} seed {seed}: a view change happened");
                    assert_eq!(commit.proposal.header.proposer, net.validators.at(commit.proposal.header.number));
                }
                let errors = &node.engine.errors;
                assert!(errors.iter().all(|e| !e.is_bad_peer()), "n {n} seed {seed}: {errors:?}");
            }
        }
    }
}

#[test]
fn one_crashed_replica_does_not_stop_the_others_and_catches_up() {
    for seed in 0..4 {
        let mut net = network(4, seed);
        // It does not lead height 1, but leads heights 2, 6 and 10 (each then needs a view change).
        let down = (leader_index(&net, 1, 0) + 1) % 4;
        net.stop(down);
        let up: Vec<usize> = (0..4).filter(|&i| i != down).collect();
        net.run_until(60_000, STEP_MS, these_at_least(up, 12)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert_eq!(net.heights()[down], 0);
        net.resume(down);
        net.sync(down);
        converge_without_fork(&mut net, seed, 60_000);
    }
}

#[test]
fn crashed_leader_is_replaced_by_a_view_change_within_a_few_timeouts() {
    for seed in 0..4 {
        let mut net = network(4, seed);
        let down = leader_index(&net, 1, 0);
        // Crash before its pre-prepare arrives anywhere: stop it and drop what it sent.
        net.stop(down);
        let up: Vec<usize> = (0..4).filter(|&i| i != down).collect();
        net.partition(&[down], &up);
        net.run_until(10_000, STEP_MS, these_at_least(up.clone(), 1)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        // View 0 times out after 1 s, view 1 decides at once.
        assert!(net.now_ms() <= 3 * TIMEOUT_MS, "seed {seed}: height 1 took {} ms", net.now_ms());
        for &i in &up {
            assert_eq!(net.nodes[i].chain[0].qc.round, 1, "seed {seed}: decided in view 1");
        }
        net.run_until(60_000, STEP_MS, these_at_least(up, 12)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.heal();
        net.resume(down);
        net.sync(down);
        converge_without_fork(&mut net, seed, 60_000);
    }
}

#[test]
fn silent_leader_costs_one_view_change_per_height_it_leads() {
    for seed in 0..4 {
        let mut net = network_with(4, seed, Behaviour::Silent);
        let silent = leader_index(&net, 1, 0);
        net.run_until(10_000, STEP_MS, all_at_least(1)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(net.now_ms() <= 3 * TIMEOUT_MS, "seed {seed}: height 1 took {} ms", net.now_ms());
        // It leads heights 1, 5, 9: each takes one view change, and the silent node, which still
        // votes, keeps up.
        net.run_until(60_000, STEP_MS, all_at_least(12)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
        for commit in &net.nodes[silent].chain {
            let view_change = commit.qc.round > 0;
            assert_eq!(view_change, commit.proposal.header.number % 4 == 1, "seed {seed}: {:?}", commit.qc);
        }
    }
}

/// The safety rule at work: the first node to decide height 1 crashes, and every vote in flight
/// is lost, so the others decide it again through view changes. Its commit quorum prepared the
/// block, so every new view must re-propose it.
#[test]
fn a_block_decided_before_a_view_change_is_the_one_decided_after() {
    let mut view_changes = 0;
    for seed in 0..10 {
        let mut net = network(4, seed);
        net.run_until(10_000, STEP_MS, |net| net.heights().contains(&1)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let first = net.heights().iter().position(|&h| h == 1).expect("a node decided");
        let everyone = [0, 1, 2, 3];
        net.partition(&everyone, &everyone);
        while net.deliver_one() {}
        net.heal();
        net.stop(first);
        let others: Vec<usize> = everyone.into_iter().filter(|&i| i != first).collect();
        net.run_until(60_000, STEP_MS, these_at_least(others.clone(), 3))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
        view_changes += others.iter().filter(|&&i| net.nodes[i].chain[0].qc.round > 0).count();
    }
    assert!(view_changes >= 10, "the scenario must make nodes decide in a later view: {view_changes}");
}

#[test]
fn two_of_four_down_stalls_without_forking_and_resumes_when_they_return() {
    for seed in 0..3 {
        let mut net = network(4, seed);
        net.run_until(60_000, STEP_MS, all_at_least(3)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.stop(1);
        net.stop(2);
        settle(&mut net);
        let stalled = net.heights();
        // Long enough for many view changes with backoff.
        let until = net.now_ms() + 120_000;
        let _ = net.run_until(120_000, STEP_MS, |net| net.now_ms() >= until);
        assert_eq!(net.heights(), stalled, "seed {seed}: progress without a quorum");
        assert!(net.nodes[0].engine.round() >= 5, "seed {seed}: views kept changing");
        net.assert_no_fork();
        net.resume(1);
        net.resume(2);
        let target = stalled.iter().copied().max().unwrap_or(0) + 5;
        run_with_sync(&mut net, 300_000, all_at_least(target)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
    }
}

#[test]
fn partition_into_halves_stalls_and_heals_without_a_fork() {
    for seed in 0..3 {
        let mut net = network(4, seed);
        net.run_until(60_000, STEP_MS, all_at_least(3)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.partition(&[0, 1], &[2, 3]);
        settle(&mut net);
        let stalled = net.heights();
        let until = net.now_ms() + 60_000;
        let _ = net.run_until(60_000, STEP_MS, |net| net.now_ms() >= until);
        assert_eq!(net.heights(), stalled, "seed {seed}: progress without a quorum");
        net.heal();
        let target = stalled.iter().copied().max().unwrap_or(0) + 5;
        run_with_sync(&mut net, 300_000, all_at_least(target)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
    }
}

#[test]
fn majority_side_of_a_partition_carries_on() {
    for seed in 0..3 {
        let mut net = network(4, seed);
        net.run_until(60_000, STEP_MS, all_at_least(2)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.partition(&[0], &[1, 2, 3]);
        settle(&mut net);
        let cut_off_at = net.heights()[0];
        net.run_until(120_000, STEP_MS, these_at_least(vec![1, 2, 3], cut_off_at + 10))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        assert!(net.heights()[0] <= cut_off_at + 1, "seed {seed}: the lone node cannot decide alone");
        net.heal();
        converge_without_fork(&mut net, seed, 120_000);
    }
}

#[test]
fn equivocating_leader_cannot_make_honest_nodes_fork() {
    let mut reported = 0;
    for seed in 0..10 {
        let mut net = network_with(4, seed, Behaviour::Equivocate);
        let liar = leader_index(&net, 1, 0);
        let honest: Vec<usize> = (0..4).filter(|&i| i != liar).collect();
        // The liar leads heights 1, 5 and 9.
        run_with_sync(&mut net, 120_000, these_at_least(honest.clone(), 12))
            .unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
        for &i in &honest {
            reported += errors_of(&net, i).iter().filter(|e| matches!(e, StepError::Equivocation { .. })).count();
        }
    }
    // The first replica is sent both blocks: whichever comes second is reported.
    assert!(reported >= 10, "equivocations reported: {reported}");
}

#[test]
fn forged_votes_are_refused_and_change_nothing() {
    for seed in 0..4 {
        let mut net = network_with(4, seed, Behaviour::ForgeVotes);
        let forger = leader_index(&net, 1, 0);
        net.run_until(60_000, STEP_MS, all_at_least(10)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
        let forger_id = net.nodes[forger].id;
        for i in (0..4).filter(|&i| i != forger) {
            let errors = errors_of(&net, i);
            assert!(errors.contains(&StepError::BadSignature(forger_id)), "seed {seed}: {errors:?}");
            let expected = |e: &StepError| *e == StepError::BadSignature(forger_id) || !e.is_bad_peer();
            assert!(errors.iter().all(expected), "seed {seed}: {errors:?}");
        }
        // Certificates hold only real signatures: the simulated driver verified each one.
        assert!(net.nodes.iter().all(|n| n.chain.iter().all(|c| c.qc.votes.len() == 3)));
    }
}

/// What a message commits its sender to, keyed by `(kind, height, view)`: the block a
/// pre-prepare (or a new-view's pre-prepare), prepare or commit vote is for, and the signed
/// statement of a view change.
fn statement(message: &PbftMessage) -> (&'static str, u64, u64, B256) {
    match message {
        PbftMessage::PrePrepare(m) => ("proposal", m.height, m.view, m.proposal.hash()),
        PbftMessage::NewView(m) => ("proposal", m.height, m.view, m.pre_prepare.proposal.hash()),
        PbftMessage::Prepare(m) => ("prepare", m.height, m.view, m.hash),
        PbftMessage::Commit(m) => ("commit", m.height, m.view, m.hash),
        PbftMessage::ViewChange { view_change: vc, .. } => (
            "view change",
            vc.height,
            vc.new_view,
            ViewChange::signing_message(vc.height, vc.new_view, vc.prepared.as_ref()),
        ),
    }
}

/// Panics if a node ever signed two different statements of one kind for one height and view
/// (before and after a restart, or otherwise); returns how many statements a node made in more
/// than one incarnation (sent again after a restart).
fn assert_no_conflicting_statements(net: &Network<TestNode>) -> usize {
    let mut made: BTreeMap<(usize, &'static str, u64, u64), (B256, u32)> = BTreeMap::new();
    let mut repeated = BTreeSet::new();
    for sent in net.sent.as_deref().unwrap_or_default() {
        let (kind, height, view, hash) = statement(&sent.message);
        let key = (sent.from, kind, height, view);
        match made.get(&key) {
            Some(&(held, incarnation)) => {
                assert_eq!(held, hash, "node {} signed two {kind}s for height {height} view {view}", sent.from);
                if incarnation != sent.incarnation {
                    repeated.insert(key);
                }
            }
            None => {
                made.insert(key, (hash, sent.incarnation));
            }
        }
    }
    repeated.len()
}

/// Delivers one message, or when none is in flight lets time pass and syncs lagging nodes (the
/// node's sync module runs whenever peers are ahead).
fn step_or_wait(net: &mut Network<TestNode>) {
    if net.deliver_one() {
        return;
    }
    net.advance(STEP_MS);
    let longest = net.heights().into_iter().max().unwrap_or(0);
    for i in 0..net.nodes.len() {
        if !net.nodes[i].stopped && net.heights()[i] < longest {
            net.sync(i);
        }
    }
}

/// Runs until some running node satisfies `pick`; returns it.
fn run_until_node(net: &mut Network<TestNode>, pick: impl Fn(&Network<TestNode>, usize) -> bool) -> usize {
    for _ in 0..100_000 {
        if let Some(i) = (0..net.nodes.len()).find(|&i| !net.nodes[i].stopped && pick(net, i)) {
            return i;
        }
        step_or_wait(net);
    }
    panic!("no node to restart; heights {:?}", net.heights())
}

#[test]
fn restarting_nodes_again_and_again_never_forks_nor_contradicts_a_vote() {
    use rand::{Rng, SeedableRng, rngs::SmallRng};
    const RESTARTS: u32 = 18;
    let mut resent = 0;
    for seed in 0..4 {
        let mut net = network(4, seed);
        net.record_messages();
        let mut rng = SmallRng::seed_from_u64(seed);
        for round in 0..RESTARTS {
            let restart = match round % 3 {
                // The leader of a view, right after it proposed.
                0 => run_until_node(&mut net, |net, i| {
                    let pbft = &net.nodes[i].engine.inner;
                    pbft.leader(pbft.view) == pbft.id && pbft.view_state.accepted.is_some() && !pbft.round.decided
                }),
                // A node that has just sent its commit vote and not decided yet.
                1 => run_until_node(&mut net, |net, i| {
                    let pbft = &net.nodes[i].engine.inner;
                    pbft.view_state.commit_sent && !pbft.round.decided
                }),
                // Any node at any moment, down for a while (the others go on without it).
                _ => {
                    let i = rng.gen_range(0..4);
                    net.stop(i);
                    for _ in 0..rng.gen_range(0..150) {
                        step_or_wait(&mut net);
                    }
                    i
                }
            };
            net.restart(restart).unwrap_or_else(|e| panic!("seed {seed}: node {restart} does not restore: {e}"));
            for _ in 0..rng.gen_range(0..80) {
                step_or_wait(&mut net);
            }
            net.assert_no_fork();
        }
        assert_eq!(net.nodes.iter().map(|n| n.restarts).sum::<u32>(), RESTARTS);
        let target = net.heights().into_iter().max().unwrap_or(0) + 3;
        run_with_sync(&mut net, 120_000, all_at_least(target)).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        net.assert_no_fork();
        assert!(target >= 12, "seed {seed}: the chain kept committing through the restarts: {target}");
        resent += assert_no_conflicting_statements(&net);
    }
    // Restarted nodes sent their votes again; always the same ones.
    assert!(resent >= 20, "statements repeated after a restart: {resent}");
}
