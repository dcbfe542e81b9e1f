//! A simulated network for testing engines without sockets: seeded, so every run of a test sees
//! the same interleaving, with links that can be cut, nodes that can be stopped, and nodes that
//! can be restarted from their durable state.
//!
//! The simulated driver stands in for the node: it "executes" blocks with a deterministic fake
//! (the header commits to the parent, the height and the transactions), checks proposals by
//! recomputing that header, verifies each commit's certificate, and keeps one chain per node.
//! It stores each [`Ready::persist`](crate::Ready::persist) before queueing the messages of the
//! same `Ready`, as a real driver must, and [`Network::restart`] builds a node's engine afresh
//! from its chain and that state.

use std::collections::{HashSet, VecDeque};

use alloy_primitives::{B256, Bloom, Bytes, keccak256};
use bcos_sdk::{crypto::NodeKey, types::BlockHeader};
use rand::{Rng, SeedableRng, rngs::SmallRng};

use crate::{Commit, Engine, EngineConfig, NodeId, Proposal, RestoreError, Target, Validators};

/// One simulated node: its engine and the chain it committed.
pub struct SimNode<E> {
    /// The engine.
    pub engine: E,
    /// Its node id.
    pub id: NodeId,
    /// Its key.
    pub key: NodeKey,
    /// Committed blocks, from height 1.
    pub chain: Vec<Commit>,
    /// Stopped nodes neither send nor receive nor tick.
    pub stopped: bool,
    /// When set, proposals this node builds carry these transactions instead of the default ones
    /// (to model a leader that proposes something else).
    pub proposal_override: Option<Vec<Bytes>>,
    /// The last durable state the engine handed out, as the node's disk holds it.
    pub durable: Option<Bytes>,
    /// How many times the node was restarted.
    pub restarts: u32,
}

/// The fake execution result: what a correct node computes for `transactions` on top of `parent`.
pub fn fake_header(parent: &BlockHeader, proposer: NodeId, transactions: &[Bytes]) -> BlockHeader {
    let mut preimage = parent.state_root.to_vec();
    for tx in transactions {
        preimage.extend_from_slice(&keccak256(tx).0);
    }
    BlockHeader {
        parent_hash: parent.hash(),
        number: parent.number + 1,
        timestamp_ms: parent.timestamp_ms + 1,
        proposer,
        transactions_root: keccak256(transactions.concat()),
        receipts_root: B256::ZERO,
        state_root: keccak256(preimage),
        logs_bloom: Bloom::ZERO,
        gas_used: transactions.len() as u64,
        gas_limit: 1_000_000,
    }
}

/// The genesis every simulated node starts from.
pub fn genesis() -> BlockHeader {
    BlockHeader {
        parent_hash: B256::ZERO,
        number: 0,
        timestamp_ms: 0,
        proposer: B256::ZERO,
        transactions_root: B256::ZERO,
        receipts_root: B256::ZERO,
        state_root: B256::ZERO,
        logs_bloom: Bloom::ZERO,
        gas_used: 0,
        gas_limit: 1_000_000,
    }
}

/// A message a node sent, as recorded by [`Network::record_messages`].
#[derive(Debug, Clone)]
pub struct Sent<M> {
    /// Index of the sender.
    pub from: usize,
    /// How many times the sender had been restarted when it sent the message.
    pub incarnation: u32,
    /// Where it went.
    pub target: Target,
    /// The message.
    pub message: M,
}

/// Builds a node's engine from its configuration.
type MakeEngine<E> = Box<dyn Fn(EngineConfig) -> E>;

/// A message in flight.
struct Envelope<M> {
    from: usize,
    to: usize,
    message: M,
}

/// A simulated network of engines.
pub struct Network<E: Engine> {
    /// The nodes, by index.
    pub nodes: Vec<SimNode<E>>,
    /// The node set (the same at every height in the simulation).
    pub validators: Validators,
    in_flight: VecDeque<Envelope<E::Message>>,
    cut: HashSet<(usize, usize)>,
    now_ms: u64,
    rng: SmallRng,
    /// Certificates must carry this many votes to be accepted by the simulated driver.
    quorum: usize,
    /// Messages delivered so far.
    pub delivered: u64,
    /// Every message sent, once [`Network::record_messages`] was called.
    pub sent: Option<Vec<Sent<E::Message>>>,
    make: MakeEngine<E>,
    timeout_ms: u64,
}

impl<E: Engine> Network<E>
where
    E::Message: Clone,
{
    /// `n` nodes with fresh keys, each running the engine `make` builds from its config.
    /// `quorum_of` gives the certificate size the engine promises (PBFT: n − f; Raft: majority).
    pub fn new(
        n: usize,
        seed: u64,
        timeout_ms: u64,
        quorum_of: impl Fn(&Validators) -> usize,
        make: impl Fn(EngineConfig) -> E + 'static,
    ) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let keys: Vec<NodeKey> = (0..n).map(|_| NodeKey::from_secret(rng.r#gen())).collect();
        let validators = Validators::new(keys.iter().map(NodeKey::node_id).collect()).expect("n >= 1");
        let nodes = keys
            .into_iter()
            .map(|key| {
                let id = key.node_id();
                let config =
                    EngineConfig { key: key.clone(), validators: validators.clone(), height: 1, timeout_ms, now_ms: 0 };
                SimNode {
                    engine: make(config),
                    id,
                    key,
                    chain: Vec::new(),
                    stopped: false,
                    proposal_override: None,
                    durable: None,
                    restarts: 0,
                }
            })
            .collect();
        let quorum = quorum_of(&validators);
        let mut network = Self {
            nodes,
            validators,
            in_flight: VecDeque::new(),
            cut: HashSet::new(),
            now_ms: 0,
            rng,
            quorum,
            delivered: 0,
            sent: None,
            make: Box::new(make),
            timeout_ms,
        };
        for i in 0..n {
            network.process(i);
        }
        network
    }

    /// Index of the node with this id.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.nodes.iter().position(|n| &n.id == id)
    }

    /// Blocks every message between the two groups, both ways.
    pub fn partition(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.cut.insert((x, y));
                self.cut.insert((y, x));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Stops a node (crash): it loses messages sent to it while stopped.
    pub fn stop(&mut self, i: usize) {
        self.nodes[i].stopped = true;
    }

    /// Lets a stopped node run again with its engine state intact, as after a network outage
    /// (see [`Network::restart`] for a crash).
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].stopped = false;
        self.process(i);
    }

    /// Crashes node `i` and starts it again, as a node process restarting: messages in flight to
    /// it are lost (those it sent are not), and a fresh engine with the same configuration at its
    /// chain's next height is restored from the last durable state it handed out, then runs. If
    /// the engine refuses the state, the node is left as it was.
    pub fn restart(&mut self, i: usize) -> Result<(), RestoreError> {
        let mut engine = self.fresh_engine(i);
        if let Some(durable) = &self.nodes[i].durable {
            engine.restore(durable)?;
        }
        self.replace_engine(i, engine);
        Ok(())
    }

    /// Like [`Network::restart`], but the node's durable state is lost: what the engines'
    /// persistence is there to prevent (for contrast in tests).
    pub fn restart_without_state(&mut self, i: usize) {
        self.nodes[i].durable = None;
        let engine = self.fresh_engine(i);
        self.replace_engine(i, engine);
    }

    fn fresh_engine(&self, i: usize) -> E {
        let node = &self.nodes[i];
        (self.make)(EngineConfig {
            key: node.key.clone(),
            validators: self.validators.clone(),
            height: node.chain.len() as u64 + 1,
            timeout_ms: self.timeout_ms,
            now_ms: self.now_ms,
        })
    }

    fn replace_engine(&mut self, i: usize, engine: E) {
        self.in_flight.retain(|envelope| envelope.to != i);
        let node = &mut self.nodes[i];
        node.engine = engine;
        node.restarts += 1;
        node.stopped = false;
        self.process(i);
    }

    /// Starts recording every message sent from now on in [`Network::sent`].
    pub fn record_messages(&mut self) {
        self.sent.get_or_insert_with(Vec::new);
    }

    /// Feeds a message to node `to` as if `from` had sent it (to model byzantine senders).
    pub fn inject(&mut self, from: usize, to: usize, message: E::Message) {
        self.in_flight.push_back(Envelope { from, to, message });
    }

    /// The simulated clock.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Delivers one in-flight message, picked at random (so messages are reordered); returns
    /// `false` when nothing was in flight.
    pub fn deliver_one(&mut self) -> bool {
        if self.in_flight.is_empty() {
            return false;
        }
        let pick = self.rng.gen_range(0..self.in_flight.len());
        let Some(envelope) = self.in_flight.remove(pick) else { return false };
        if self.cut.contains(&(envelope.from, envelope.to)) || self.nodes[envelope.to].stopped {
            return true;
        }
        self.delivered += 1;
        let from = self.nodes[envelope.from].id;
        // Errors are the engine refusing bad input; the simulation carries on like a driver.
        let _ = self.nodes[envelope.to].engine.step(from, envelope.message);
        self.process(envelope.to);
        true
    }

    /// Advances the clock by `ms` and ticks every running node.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].stopped {
                let now = self.now_ms;
                self.nodes[i].engine.tick(now);
                self.process(i);
            }
        }
    }

    /// Delivers messages and advances time in `step_ms` steps until `done` holds, or fails after
    /// `max_ms` of simulated time.
    pub fn run_until(&mut self, max_ms: u64, step_ms: u64, done: impl Fn(&Self) -> bool) -> Result<(), String> {
        let deadline = self.now_ms + max_ms;
        while !done(self) {
            if self.now_ms > deadline {
                return Err(format!("not reached after {max_ms} ms; heights {:?}", self.heights()));
            }
            // Deliver what is in flight now (and what it triggers, up to a bound), then let time pass.
            let mut budget = 10_000;
            while budget > 0 && self.deliver_one() {
                budget -= 1;
                if done(self) {
                    return Ok(());
                }
            }
            self.advance(step_ms);
        }
        Ok(())
    }

    /// Block sync: node `i` copies the blocks it misses from the longest chain, verifying each
    /// certificate, and tells its engine, as the node's sync module does.
    pub fn sync(&mut self, i: usize) {
        let Some(source) = (0..self.nodes.len()).max_by_key(|&j| self.nodes[j].chain.len()) else { return };
        while self.nodes[i].chain.len() < self.nodes[source].chain.len() {
            let commit = self.nodes[source].chain[self.nodes[i].chain.len()].clone();
            let hash = commit.proposal.hash();
            if let Err(e) = self.validators.verify_qc(commit.qc.clone(), hash, self.quorum) {
                panic!("sync source {source} holds a bad certificate: {e}");
            }
            let height = commit.proposal.header.number;
            self.nodes[i].chain.push(commit);
            let validators = self.validators.clone();
            self.nodes[i].engine.committed(height, validators);
        }
        self.process(i);
    }

    /// Committed heights, by node.
    pub fn heights(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.chain.len() as u64).collect()
    }

    /// Panics if two nodes committed different blocks at any height.
    pub fn assert_no_fork(&self) {
        let longest = self.nodes.iter().map(|n| n.chain.len()).max().unwrap_or(0);
        for height in 0..longest {
            let mut hashes = self.nodes.iter().filter_map(|n| n.chain.get(height)).map(|c| c.proposal.hash());
            if let Some(first) = hashes.next() {
                assert!(hashes.all(|h| h == first), "fork at height {}", height + 1);
            }
        }
    }

    fn parent_of(&self, i: usize) -> BlockHeader {
        self.nodes[i].chain.last().map_or_else(genesis, |c| c.proposal.header.clone())
    }

    /// Carries out everything node `i`'s engine asked for, until it asks for nothing more.
    fn process(&mut self, i: usize) {
        loop {
            let ready = self.nodes[i].engine.ready();
            if ready.is_empty() {
                return;
            }
            // Durable state first: nothing of this Ready leaves before it is stored.
            if let Some(durable) = ready.persist {
                self.nodes[i].durable = Some(durable);
            }
            if let Some(log) = &mut self.sent {
                let incarnation = self.nodes[i].restarts;
                log.extend(ready.messages.iter().map(|(target, message)| Sent {
                    from: i,
                    incarnation,
                    target: *target,
                    message: message.clone(),
                }));
            }
            for (target, message) in ready.messages {
                match target {
                    Target::All => {
                        for to in (0..self.nodes.len()).filter(|&to| to != i) {
                            self.in_flight.push_back(Envelope { from: i, to, message: message.clone() });
                        }
                    }
                    Target::Node(id) => {
                        if let Some(to) = self.index_of(&id) {
                            self.in_flight.push_back(Envelope { from: i, to, message });
                        }
                    }
                }
            }
            let parent = self.parent_of(i);
            if let Some(request) = ready.build
                && request.height == parent.number + 1
            {
                // A restarted node's pool holds other transactions: it builds another block for
                // the same round, as a real node would.
                let restarts = self.nodes[i].restarts;
                let transactions = self.nodes[i].proposal_override.clone().unwrap_or_else(|| {
                    let tx = match restarts {
                        0 => format!("tx h{} r{}", request.height, request.round),
                        n => format!("tx h{} r{} after restart {n}", request.height, request.round),
                    };
                    vec![Bytes::from(tx.into_bytes())]
                });
                let header = fake_header(&parent, self.nodes[i].id, &transactions);
                self.nodes[i].engine.proposal_built(Proposal { header, transactions });
            }
            for proposal in ready.check {
                let valid = proposal.header.number == parent.number + 1
                    && proposal.header == fake_header(&parent, proposal.header.proposer, &proposal.transactions);
                self.nodes[i].engine.proposal_checked(proposal.hash(), valid);
            }
            if let Some(commit) = ready.commit {
                let hash = commit.proposal.hash();
                assert_eq!(commit.proposal.header.number, parent.number + 1, "node {i} committed out of order");
                assert_eq!(commit.proposal.header.parent_hash, parent.hash(), "node {i} committed on a wrong parent");
                if let Err(e) = self.validators.verify_qc(commit.qc.clone(), hash, self.quorum) {
                    panic!("node {i} committed height {} with a bad certificate: {e}", commit.proposal.header.number);
                }
                let height = commit.proposal.header.number;
                self.nodes[i].chain.push(commit);
                let validators = self.validators.clone();
                self.nodes[i].engine.committed(height, validators);
            }
        }
    }
}
