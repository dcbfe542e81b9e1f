//! Raft: a crash-fault-tolerant engine in which an elected leader proposes every block and a
//! majority of acknowledgements commits it.
//!
//! # Why not raft-rs or openraft
//!
//! Both were considered. The chain's "log" is a sequence of *executed blocks*: every follower
//! re-executes a proposal before acknowledging it, a block is committed with a certificate of
//! majority-signed acknowledgements that any node (a syncing one, an RPC client) verifies exactly
//! like a PBFT certificate, and at most one uncommitted block is in flight. raft-rs and openraft
//! replicate opaque entries with unsigned acknowledgements, bring their own log storage, snapshot
//! and membership machinery, and would need the chain squeezed into their entry model with the
//! signatures bolted on beside it; and PBFT and Raft must share one pure-state-machine
//! [`Engine`] interface. So this module implements Raft itself, small, following the paper's
//! rules for terms, elections, heartbeats and stepping down, plus the pre-vote extension of the
//! Raft thesis (§9.6) so that a node that was cut off cannot depose a healthy leader.
//!
//! # Data flow
//!
//! - **Election.** A follower that hears nothing from a leader for its election timeout (drawn
//!   uniformly from `[t, 2t)` with a deterministic generator seeded by its node id, redrawn at
//!   every reset) first asks for *pre-votes* for `term + 1` without changing its term. A node
//!   grants a pre-vote only if it has not heard from a leader within `t` and the candidate is at
//!   least as up to date as itself (below). With a majority of pre-votes the node becomes a
//!   candidate: `term += 1`, it votes for itself and sends [`RequestVote`]. A node grants one vote
//!   per term, to an up-to-date candidate, and resets its timer when it does. A majority of votes
//!   makes the candidate leader. Any message of a higher term makes a node a follower of that
//!   term; a node answers a leader's message of an older term with its own term
//!   ([`StaleTerm`]), so a node whose term ran ahead while it was cut off can rejoin (raft-rs
//!   does the same with pre-vote). A single-node set elects itself at once.
//! - **Replication.** The leader of term `T` deciding height `h` asks the driver to build a block
//!   ([`Ready::build`], on its first tick at that height, so the driver's tick cadence paces
//!   block production), sends it as [`Append`] and acknowledges it itself. A follower accepts an
//!   `Append` only from the one leader it knows for `T`, hands the block to the driver to
//!   re-execute ([`Ready::check`]), and when the driver reports it valid answers with an [`Ack`]:
//!   a signature over [`QuorumCertificate::signing_message`]`(hash, h, T)`. With acks of a
//!   majority (its own included) the leader commits the block with those signatures as its
//!   certificate (round = term) and broadcasts a [`CommitNotice`]. A node holding that block
//!   commits it once the certificate verifies against its node set; nodes that do not hold it rely
//!   on the driver's block sync and [`Engine::committed`]. The leader sends heartbeats every `t/3`
//!   and, every `t`, re-sends its proposal (with the notice of the previous height) to nodes
//!   whose ack it lacks. Messages for the next height are kept in a small buffer and replayed
//!   after the commit.
//!
//! # Safety
//!
//! *Up to date* means: a larger next height, or the same next height and an acknowledged
//! proposal of at least the same term there (`(height, acked_term)` compared lexicographically,
//! 0 for none). A new leader whose node acknowledged a proposal at its height **re-proposes that
//! block** (same hash) in its own term instead of building a new one.
//!
//! Suppose block `X` is committed at height `h` in term `T`: a majority `M` acknowledged `(X, h,
//! T)`. Take any leader `L` of a term `T' > T` that proposes at `h`; its voters form a majority,
//! which meets `M` in some node `v`. `v` acknowledged in `T` before voting in `T'` (once its term
//! is `T'` it refuses `T`'s proposals), and its acknowledged term at `h` never decreases while it
//! stays at `h`. If `v` had committed `h` already, `L` (at least as far as `v`) would not propose
//! at `h`. Otherwise `L` is at `h` with an acknowledged proposal of a term in `[T, T')`; by
//! induction over terms every leader of those terms proposed `X` at `h` (a leader proposes one
//! block per height and term, and a node acknowledges at most one block per height and term), so
//! `L` re-proposes `X`. Hence every acknowledgement at `h` in a term `≥ T` is for `X`, any
//! certificate at `h` is for `X` (the symmetric argument covers certificates of earlier terms),
//! and two majorities always intersect, so no two different blocks are ever committed at one
//! height.
//!
//! # Durable state
//!
//! The argument above needs three things to survive a crash, as in every Raft: the current
//! **term**, the **vote** cast in it, and the **acknowledged proposal** at the current height with
//! the term of its latest acknowledgement (the whole block, since a new leader must re-propose
//! it; a leader's own proposal counts, as it acknowledges it itself). [`Ready::persist`] carries
//! them whenever one of them changes, and only then: on a vote (granted, or for itself as
//! candidate), on moving to a higher term, and on acknowledging or proposing a block. Committing a
//! height writes nothing: the stored acknowledgement then belongs to a lower height, which
//! [`Engine::restore`] ignores, and the next write replaces it. The driver writes the bytes before
//! sending the messages of the same `Ready`, so no vote or ack leaves the node unrecorded.
//!
//! [`Engine::restore`] gives the new engine the stored term and vote (whatever the height: terms
//! span heights), and the acknowledgement when it is for the configured height: the node then
//! never votes twice in a term, never acknowledges two blocks at one height and term (the
//! acknowledged block counts as the one its leader proposed in that term), compares itself with
//! candidates by that acknowledgement, and re-proposes the block if it becomes leader. It starts
//! as a follower knowing no leader. Raft tolerates crashes, not lies: signatures and membership
//! checks keep outsiders and forgers out, but a malicious member can stall progress.

mod durable;
mod message;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use alloy_primitives::B256;
use bcos_sdk::{
    crypto::NodeKey,
    types::{QuorumCertificate, Vote},
};

pub use message::{
    Ack, Append, CommitNotice, Heartbeat, MAX_MESSAGE_BYTES, RaftMessage, RequestVote, StaleTerm, VoteReply,
};

use crate::{
    BuildRequest, Commit, Engine, EngineConfig, NodeId, Proposal, Ready, RestoreError, StepError, Target, Validators,
};

/// The leader sends this many heartbeats per base election timeout.
pub const HEARTBEATS_PER_TIMEOUT: u64 = 3;

/// Smallest base timeout the engine runs with, in milliseconds (smaller configured values are
/// raised to it so the heartbeat interval is at least 1 ms).
pub const MIN_TIMEOUT_MS: u64 = HEARTBEATS_PER_TIMEOUT;

/// Messages for the next height kept until this node reaches it; the oldest is dropped beyond.
pub const FUTURE_BUFFER: usize = 8;

/// What a node is doing in its current term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Follows the leader of the term, if it knows one.
    Follower,
    /// Asks for pre-votes for the next term without having changed term.
    PreCandidate,
    /// Campaigns for the current term.
    Candidate,
    /// Leads the current term.
    Leader,
}

/// A proposal handed to the driver for re-execution.
#[derive(Debug, Clone)]
struct Checking {
    /// Term of the leader that proposed it (latest, if re-proposed).
    term: u64,
    hash: B256,
    proposal: Proposal,
}

/// A proposal this node acknowledged (or, as leader, proposed) at the current height.
#[derive(Debug, Clone)]
struct Acked {
    /// Term of the latest acknowledgement.
    term: u64,
    hash: B256,
    proposal: Proposal,
}

/// The leader's proposal in flight and the acknowledgements collected for it.
#[derive(Debug, Clone)]
struct Leading {
    hash: B256,
    votes: Vec<Vote>,
    append: Append,
}

/// Everything about the height being decided; reset when it is committed.
#[derive(Debug, Clone, Default)]
struct Slot {
    /// The latest term in which a leader proposed here, and what (to detect equivocation).
    seen: Option<(u64, B256)>,
    /// The proposal being re-executed by the driver.
    checking: Option<Checking>,
    /// The last proposal the driver found valid (acknowledged or not).
    valid: Option<(B256, Proposal)>,
    /// The proposal acknowledged in the highest term.
    acked: Option<Acked>,
    /// A verified certificate for this height.
    known_qc: Option<QuorumCertificate>,
    /// The leader needs a block from the driver and waits for it.
    building: bool,
    /// The [`BuildRequest`] for it went out (it goes out on the first tick after the need arises,
    /// so the driver's tick cadence paces block production).
    build_requested: bool,
    /// The leader's proposal.
    leading: Option<Leading>,
    /// A commit was handed out; waiting for [`Engine::committed`].
    committed: bool,
}

/// SplitMix64: a tiny deterministic generator for election timeouts.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn from_node_id(id: &NodeId) -> Self {
        let seed = id.0.chunks_exact(8).fold(0u64, |seed, chunk| {
            let word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
            seed.rotate_left(17) ^ word
        });
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The Raft engine. See the [module docs](self) for the protocol and why it is safe.
#[derive(Debug)]
pub struct Raft {
    key: NodeKey,
    id: NodeId,
    validators: Validators,
    height: u64,
    term: u64,
    role: Role,
    /// Whom this node voted for in `term`.
    voted_for: Option<NodeId>,
    /// The leader of `term`, once known.
    leader: Option<NodeId>,
    /// Nodes that granted this node's current (pre-)campaign, itself included.
    votes: Vec<NodeId>,
    timeout_ms: u64,
    now_ms: u64,
    election_deadline: u64,
    heartbeat_deadline: u64,
    retransmit_deadline: u64,
    /// When this node last heard from the leader of its term.
    leader_seen_ms: Option<u64>,
    rng: SplitMix64,
    slot: Slot,
    /// The last commit this node learned with its certificate: height, hash, certificate.
    last_commit: Option<(u64, B256, QuorumCertificate)>,
    /// Verified messages for the next height.
    future: VecDeque<(NodeId, RaftMessage)>,
    out: Ready<RaftMessage>,
    /// The durable state last handed out in [`Ready::persist`] (or restored): the next write goes
    /// out only when the state moved past it.
    persisted: durable::Durable,
    /// A call other than [`Engine::restore`] happened.
    started: bool,
}

impl Raft {
    /// An engine at `config.height`, a follower of term 0 (the leader of term 1 at once when it is
    /// the only node).
    pub fn new(config: EngineConfig) -> Self {
        Self::start(config, durable::Restored::default())
    }

    /// An engine at `config.height` with restored term, vote and acknowledgement: a follower
    /// that knows no leader (the leader of the next term at once when it is the only node).
    fn start(config: EngineConfig, restored: durable::Restored) -> Self {
        let EngineConfig { key, validators, height, timeout_ms, now_ms } = config;
        let id = key.node_id();
        let mut slot = Slot::default();
        if let Some(acked) = restored.acked {
            // It was checked before it was acknowledged, and its leader proposed it in its term.
            slot.seen = Some((acked.term, acked.hash));
            slot.valid = Some((acked.hash, acked.proposal.clone()));
            slot.acked = Some(acked);
        }
        let mut raft = Self {
            key,
            id,
            validators,
            height,
            term: restored.term,
            role: Role::Follower,
            voted_for: restored.voted_for,
            leader: None,
            votes: Vec::new(),
            timeout_ms: timeout_ms.max(MIN_TIMEOUT_MS),
            now_ms,
            election_deadline: now_ms,
            heartbeat_deadline: now_ms,
            retransmit_deadline: now_ms,
            leader_seen_ms: None,
            rng: SplitMix64::from_node_id(&id),
            slot,
            last_commit: None,
            future: VecDeque::new(),
            out: Ready::default(),
            persisted: durable::Durable::default(),
            started: false,
        };
        raft.persisted = raft.durable();
        raft.reset_election_timer();
        if raft.is_member() && raft.validators.majority() == 1 {
            raft.start_pre_vote();
        }
        raft
    }

    /// This node's role in the current term.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The leader of the current term, if known.
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    fn is_member(&self) -> bool {
        self.validators.contains(&self.id)
    }

    /// The configuration this engine would be built with now.
    fn config(&self) -> EngineConfig {
        EngineConfig {
            key: self.key.clone(),
            validators: self.validators.clone(),
            height: self.height,
            timeout_ms: self.timeout_ms,
            now_ms: self.now_ms,
        }
    }

    /// The state that must survive a restart, as it is now.
    fn durable(&self) -> durable::Durable {
        durable::Durable {
            term: self.term,
            voted_for: self.voted_for,
            acked: self.slot.acked.as_ref().map(|acked| (self.height, acked.term, acked.hash)),
        }
    }

    fn majority(&self) -> usize {
        self.validators.majority()
    }

    fn heartbeat_interval(&self) -> u64 {
        (self.timeout_ms / HEARTBEATS_PER_TIMEOUT).max(1)
    }

    fn acked_term(&self) -> u64 {
        self.slot.acked.as_ref().map_or(0, |acked| acked.term)
    }

    /// Whether a candidate at `height` with an acknowledgement of `acked_term` is at least as up
    /// to date as this node.
    fn up_to_date(&self, height: u64, acked_term: u64) -> bool {
        (height, acked_term) >= (self.height, self.acked_term())
    }

    /// Whether this node believes a leader is alive (and so refuses pre-votes).
    fn in_lease(&self) -> bool {
        match self.role {
            Role::Leader => true,
            Role::Follower => {
                self.leader.is_some()
                    && self.leader_seen_ms.is_some_and(|seen| self.now_ms < seen.saturating_add(self.timeout_ms))
            }
            Role::PreCandidate | Role::Candidate => false,
        }
    }

    fn send(&mut self, target: Target, message: RaftMessage) {
        self.out.messages.push((target, message));
    }

    fn reset_election_timer(&mut self) {
        let jitter = self.rng.next_u64() % self.timeout_ms;
        self.election_deadline = self.now_ms.saturating_add(self.timeout_ms).saturating_add(jitter);
    }

    fn start_pre_vote(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.votes = vec![self.id];
        self.reset_election_timer();
        tracing::debug!(target: "consensus::raft", term = self.term, height = self.height, "pre-vote");
        if self.votes.len() >= self.majority() {
            self.start_election();
            return;
        }
        let request = RequestVote::new(&self.key, self.term.saturating_add(1), self.height, self.acked_term(), true);
        self.send(Target::All, RaftMessage::RequestVote(request));
    }

    fn start_election(&mut self) {
        self.term = self.term.saturating_add(1);
        self.role = Role::Candidate;
        self.voted_for = Some(self.id);
        self.leader = None;
        self.votes = vec![self.id];
        self.reset_election_timer();
        tracing::debug!(target: "consensus::raft", term = self.term, height = self.height, "campaign");
        if self.votes.len() >= self.majority() {
            self.become_leader();
            return;
        }
        let request = RequestVote::new(&self.key, self.term, self.height, self.acked_term(), false);
        self.send(Target::All, RaftMessage::RequestVote(request));
    }

    fn become_leader(&mut self) {
        tracing::info!(target: "consensus::raft", term = self.term, height = self.height, "elected leader");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        self.broadcast_heartbeat();
        self.lead_height();
    }

    /// Follows `leader` (when known) in `term`, which is at least the current term.
    fn become_follower(&mut self, term: u64, leader: Option<NodeId>) {
        if term > self.term {
            self.term = term;
            self.voted_for = None;
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.leader_seen_ms = leader.map(|_| self.now_ms);
        self.votes.clear();
        self.slot.leading = None;
        self.slot.building = false;
        self.reset_election_timer();
    }

    /// Accepts `from` as the leader of `term` (at least the current term).
    fn accept_leader(&mut self, term: u64, from: NodeId, height: u64) -> Result<(), StepError> {
        if term > self.term {
            self.become_follower(term, Some(from));
            return Ok(());
        }
        match (self.role, self.leader) {
            (Role::Leader, _) => return Err(StepError::NotLeader { from, height, round: term }),
            (Role::PreCandidate | Role::Candidate, _) => self.become_follower(term, Some(from)),
            (Role::Follower, None) => self.leader = Some(from),
            (Role::Follower, Some(leader)) if leader != from => {
                return Err(StepError::NotLeader { from, height, round: term });
            }
            (Role::Follower, Some(_)) => {}
        }
        self.leader_seen_ms = Some(self.now_ms);
        self.reset_election_timer();
        Ok(())
    }

    fn broadcast_heartbeat(&mut self) {
        self.heartbeat_deadline = self.now_ms.saturating_add(self.heartbeat_interval());
        let heartbeat = Heartbeat::new(&self.key, self.term, self.height);
        self.send(Target::All, RaftMessage::Heartbeat(heartbeat));
    }

    /// As leader, starts deciding the current height: re-proposes the block this node
    /// acknowledged here, if any (see the safety argument), or asks the driver for a new one.
    fn lead_height(&mut self) {
        self.retransmit_deadline = self.now_ms.saturating_add(self.timeout_ms);
        self.slot.leading = None;
        self.slot.building = false;
        self.slot.build_requested = false;
        if self.slot.committed {
            return;
        }
        if let Some(proposal) = self.slot.acked.as_ref().map(|acked| acked.proposal.clone()) {
            self.propose(proposal);
        } else {
            self.slot.building = true;
        }
    }

    /// As leader, proposes `proposal` in the current term and acknowledges it itself.
    fn propose(&mut self, proposal: Proposal) {
        let hash = proposal.hash();
        let own = Vote {
            node_id: self.id,
            signature: self.key.sign(&QuorumCertificate::signing_message(hash, self.height, self.term)),
        };
        let append = Append::new(&self.key, self.term, self.height, proposal.clone());
        self.slot.seen = Some((self.term, hash));
        self.slot.valid = Some((hash, proposal.clone()));
        self.slot.acked = Some(Acked { term: self.term, hash, proposal });
        self.slot.leading = Some(Leading { hash, votes: vec![own], append: append.clone() });
        self.heartbeat_deadline = self.now_ms.saturating_add(self.heartbeat_interval());
        self.send(Target::All, RaftMessage::Append(Box::new(append)));
        self.check_leader_quorum();
    }

    /// As leader, commits the proposal once a majority acknowledged it.
    fn check_leader_quorum(&mut self) {
        let Some(leading) = &self.slot.leading else { return };
        if self.slot.committed || leading.votes.len() < self.majority() {
            return;
        }
        let qc = QuorumCertificate {
            block_hash: leading.hash,
            number: self.height,
            round: self.term,
            votes: leading.votes.clone(),
        };
        self.slot.known_qc = Some(qc);
        self.try_commit();
        if self.slot.committed {
            self.send_last_commit(Target::All);
        }
    }

    /// Commits when this node holds a valid block matching a verified certificate.
    fn try_commit(&mut self) {
        if self.slot.committed {
            return;
        }
        let Some(qc) = &self.slot.known_qc else { return };
        let hash = qc.block_hash;
        let proposal = match (&self.slot.acked, &self.slot.valid) {
            (Some(acked), _) if acked.hash == hash => acked.proposal.clone(),
            (_, Some((valid, proposal))) if *valid == hash => proposal.clone(),
            _ => return,
        };
        tracing::debug!(target: "consensus::raft", height = self.height, round = qc.round, %hash, "commit");
        self.last_commit = Some((self.height, hash, qc.clone()));
        self.out.commit = Some(Commit { proposal, qc: qc.clone() });
        self.slot.committed = true;
    }

    fn send_last_commit(&mut self, target: Target) {
        if let Some((height, hash, qc)) = &self.last_commit {
            let notice = CommitNotice::new(&self.key, self.term, *height, *hash, qc.clone());
            self.send(target, RaftMessage::CommitNotice(notice));
        }
    }

    /// As leader, re-sends the proposal (and the previous commit) to nodes that have not
    /// acknowledged it, or asks the driver again for the block it has not delivered.
    fn retransmit(&mut self) {
        self.retransmit_deadline = self.now_ms.saturating_add(self.timeout_ms);
        if self.slot.committed {
            return;
        }
        if self.slot.building {
            self.out.build = Some(BuildRequest { height: self.height, round: self.term });
            return;
        }
        let Some(leading) = &self.slot.leading else { return };
        let missing: Vec<NodeId> = self
            .validators
            .nodes()
            .iter()
            .filter(|node| **node != self.id && !leading.votes.iter().any(|vote| vote.node_id == **node))
            .copied()
            .collect();
        let append = leading.append.clone();
        let previous = self.last_commit.as_ref().is_some_and(|(height, _, _)| height.saturating_add(1) == self.height);
        for node in missing {
            if previous {
                self.send_last_commit(Target::Node(node));
            }
            self.send(Target::Node(node), RaftMessage::Append(Box::new(append.clone())));
        }
    }

    /// Keeps a verified message for the next height.
    fn buffer_future(&mut self, from: NodeId, message: RaftMessage) {
        if self.future.len() >= FUTURE_BUFFER {
            self.future.pop_front();
        }
        self.future.push_back((from, message));
    }

    /// As follower, acknowledges `proposal` to the leader of the current term.
    fn ack(&mut self, hash: B256, proposal: Proposal) {
        let (Role::Follower, Some(leader)) = (self.role, self.leader) else { return };
        self.slot.acked = Some(Acked { term: self.term, hash, proposal });
        let ack = Ack::new(&self.key, self.term, self.height, hash);
        self.send(Target::Node(leader), RaftMessage::Ack(ack));
    }

    fn reply_vote(&mut self, candidate: NodeId, term: u64, pre_vote: bool, granted: bool) {
        let reply = VoteReply::new(&self.key, term, candidate, pre_vote, granted);
        self.send(Target::Node(candidate), RaftMessage::VoteReply(reply));
    }

    fn on_request_vote(&mut self, from: NodeId, m: RequestVote) -> Result<(), StepError> {
        if m.term <= self.term && (m.pre_vote || m.term < self.term) {
            self.reply_vote(from, self.term, m.pre_vote, false);
            return Err(StepError::OutOfWindow { height: m.height, round: m.term });
        }
        if m.pre_vote {
            let granted = !self.in_lease() && self.up_to_date(m.height, m.acked_term);
            let term = if granted { m.term } else { self.term };
            self.reply_vote(from, term, true, granted);
            return Ok(());
        }
        if m.term > self.term {
            self.become_follower(m.term, None);
        }
        let granted = self.voted_for.is_none_or(|voted| voted == from) && self.up_to_date(m.height, m.acked_term);
        if granted {
            self.voted_for = Some(from);
            self.reset_election_timer();
        }
        self.reply_vote(from, self.term, false, granted);
        Ok(())
    }

    fn on_vote_reply(&mut self, from: NodeId, m: VoteReply) -> Result<(), StepError> {
        if m.candidate != self.id {
            return Err(StepError::Invalid { from, reason: format!("vote reply for candidate {}", m.candidate) });
        }
        if !m.granted {
            if m.term > self.term {
                self.become_follower(m.term, None);
            }
            return Ok(());
        }
        let expected =
            if m.pre_vote { (Role::PreCandidate, self.term.saturating_add(1)) } else { (Role::Candidate, self.term) };
        if (self.role, m.term) != expected {
            return Err(StepError::OutOfWindow { height: self.height, round: m.term });
        }
        if !self.votes.contains(&from) {
            self.votes.push(from);
        }
        if self.votes.len() >= self.majority() {
            if m.pre_vote {
                self.start_election();
            } else {
                self.become_leader();
            }
        }
        Ok(())
    }

    /// Refuses a leader's message of an older term, telling the sender this node's term.
    fn refuse_stale_leader(&mut self, from: NodeId, height: u64, term: u64) -> Result<(), StepError> {
        let answer = StaleTerm::new(&self.key, self.term);
        self.send(Target::Node(from), RaftMessage::StaleTerm(answer));
        Err(StepError::OutOfWindow { height, round: term })
    }

    fn on_stale_term(&mut self, m: StaleTerm) -> Result<(), StepError> {
        if m.term <= self.term {
            return Err(StepError::OutOfWindow { height: self.height, round: m.term });
        }
        self.become_follower(m.term, None);
        Ok(())
    }

    fn on_heartbeat(&mut self, from: NodeId, m: Heartbeat) -> Result<(), StepError> {
        if m.term < self.term {
            return self.refuse_stale_leader(from, m.height, m.term);
        }
        self.accept_leader(m.term, from, m.height)
    }

    fn on_append(&mut self, from: NodeId, m: Append) -> Result<(), StepError> {
        if m.term < self.term {
            return self.refuse_stale_leader(from, m.height, m.term);
        }
        self.accept_leader(m.term, from, m.height)?;
        if m.proposal.header.number != m.height {
            let reason = format!("proposal for height {} sent as height {}", m.proposal.header.number, m.height);
            return Err(StepError::Invalid { from, reason });
        }
        if m.height == self.height.saturating_add(1) {
            self.buffer_future(from, RaftMessage::Append(Box::new(m)));
            return Ok(());
        }
        if m.height != self.height || self.slot.committed {
            return Err(StepError::OutOfWindow { height: m.height, round: m.term });
        }
        let hash = m.proposal.hash();
        if let Some((term, seen)) = self.slot.seen
            && term == m.term
            && seen != hash
        {
            return Err(StepError::Equivocation { from, height: m.height, round: m.term });
        }
        self.slot.seen = Some((m.term, hash));
        let known_valid = match (&self.slot.acked, &self.slot.valid) {
            (Some(acked), _) if acked.hash == hash => true,
            (_, Some((valid, _))) => *valid == hash,
            _ => false,
        };
        if known_valid {
            // Checked before: acknowledge in this term without re-executing.
            self.ack(hash, m.proposal);
            self.try_commit();
            return Ok(());
        }
        if let Some(checking) = &mut self.slot.checking
            && checking.hash == hash
        {
            checking.term = m.term;
            return Ok(());
        }
        self.slot.checking = Some(Checking { term: m.term, hash, proposal: m.proposal.clone() });
        self.out.check.push(m.proposal);
        Ok(())
    }

    fn on_ack(&mut self, from: NodeId, m: Ack) -> Result<(), StepError> {
        if self.role != Role::Leader || m.term != self.term || m.height != self.height || self.slot.committed {
            return Err(StepError::OutOfWindow { height: m.height, round: m.term });
        }
        let Some(leading) = &mut self.slot.leading else {
            return Err(StepError::Invalid { from, reason: "ack before any proposal".into() });
        };
        if leading.hash != m.hash {
            return Err(StepError::Invalid { from, reason: format!("ack for {}, which was not proposed", m.hash) });
        }
        if !leading.votes.iter().any(|vote| vote.node_id == from) {
            leading.votes.push(Vote { node_id: from, signature: m.signature });
            self.check_leader_quorum();
        }
        Ok(())
    }

    fn on_commit_notice(&mut self, from: NodeId, m: CommitNotice) -> Result<(), StepError> {
        if m.height == self.height.saturating_add(1) {
            self.buffer_future(from, RaftMessage::CommitNotice(m));
            return Ok(());
        }
        if m.height != self.height || self.slot.committed {
            return Err(StepError::OutOfWindow { height: m.height, round: m.term });
        }
        if m.qc.number != m.height {
            let reason = format!("certificate for height {} sent as height {}", m.qc.number, m.height);
            return Err(StepError::Invalid { from, reason });
        }
        let qc = self
            .validators
            .verify_qc(m.qc, m.hash, self.majority())
            .map_err(|e| StepError::Invalid { from, reason: e.to_string() })?
            .into_inner();
        // Only leaders send notices, so a newer term's notice names its leader.
        if m.term > self.term {
            self.become_follower(m.term, Some(from));
        }
        self.slot.known_qc = Some(qc);
        self.try_commit();
        Ok(())
    }

    fn replay_future(&mut self) {
        let buffered = std::mem::take(&mut self.future);
        for (from, message) in buffered {
            let height = match &message {
                RaftMessage::Append(m) => m.height,
                RaftMessage::CommitNotice(m) => m.height,
                _ => continue,
            };
            if height != self.height {
                continue;
            }
            if let Err(error) = self.step(from, message) {
                tracing::debug!(target: "consensus::raft", %from, %error, "buffered message refused");
            }
        }
    }
}

impl Engine for Raft {
    type Message = RaftMessage;

    fn restore(&mut self, durable: &[u8]) -> Result<(), RestoreError> {
        if self.started {
            return Err(RestoreError::AlreadyStarted);
        }
        let restored = durable::decode(durable, self.id, self.height, &self.validators)?;
        tracing::info!(
            target: "consensus::raft",
            term = restored.term,
            height = self.height,
            acked = restored.acked.as_ref().map(|acked| tracing::field::display(acked.hash)),
            "restored durable state"
        );
        *self = Self::start(self.config(), restored);
        Ok(())
    }

    fn tick(&mut self, now_ms: u64) {
        self.started = true;
        self.now_ms = self.now_ms.max(now_ms);
        if self.role == Role::Leader {
            if self.slot.building && !self.slot.build_requested {
                self.slot.build_requested = true;
                self.out.build = Some(BuildRequest { height: self.height, round: self.term });
            }
            if self.now_ms >= self.heartbeat_deadline {
                self.broadcast_heartbeat();
            }
            if self.now_ms >= self.retransmit_deadline {
                self.retransmit();
            }
        } else if self.now_ms >= self.election_deadline {
            if self.is_member() {
                self.start_pre_vote();
            } else {
                self.reset_election_timer();
            }
        }
    }

    fn step(&mut self, from: NodeId, message: RaftMessage) -> Result<(), StepError> {
        self.started = true;
        if !self.validators.contains(&from) {
            return Err(StepError::NotAMember(from));
        }
        if from == self.id {
            return Err(StepError::Invalid { from, reason: "message from this node itself".into() });
        }
        if !message.verify_signature(&from) {
            return Err(StepError::BadSignature(from));
        }
        match message {
            RaftMessage::RequestVote(m) => self.on_request_vote(from, m),
            RaftMessage::VoteReply(m) => self.on_vote_reply(from, m),
            RaftMessage::Heartbeat(m) => self.on_heartbeat(from, m),
            RaftMessage::Append(m) => self.on_append(from, *m),
            RaftMessage::Ack(m) => self.on_ack(from, m),
            RaftMessage::CommitNotice(m) => self.on_commit_notice(from, m),
            RaftMessage::StaleTerm(m) => self.on_stale_term(m),
        }
    }

    fn proposal_built(&mut self, proposal: Proposal) {
        self.started = true;
        if self.role != Role::Leader || !self.slot.building || proposal.header.number != self.height {
            return;
        }
        self.slot.building = false;
        self.propose(proposal);
    }

    fn proposal_checked(&mut self, hash: B256, valid: bool) {
        self.started = true;
        let Some(checking) = self.slot.checking.take_if(|checking| checking.hash == hash) else { return };
        if !valid {
            tracing::warn!(target: "consensus::raft", height = self.height, %hash, "proposal failed re-execution");
            return;
        }
        self.slot.valid = Some((hash, checking.proposal.clone()));
        if checking.term == self.term {
            self.ack(hash, checking.proposal);
        }
        self.try_commit();
    }

    fn committed(&mut self, height: u64, validators: Validators) {
        self.started = true;
        if height < self.height {
            return;
        }
        self.height = height.saturating_add(1);
        self.slot = Slot::default();
        if self.last_commit.as_ref().is_some_and(|(committed, _, _)| *committed != height) {
            self.last_commit = None;
        }
        if self.validators != validators {
            self.validators = validators;
            if !self.is_member() && self.role != Role::Follower {
                self.become_follower(self.term, None);
            }
        }
        if self.role == Role::Leader {
            self.lead_height();
        }
        self.replay_future();
    }

    /// Takes what is queued; adds the durable state when term, vote or acknowledgement changed
    /// since it was last handed out.
    fn ready(&mut self) -> Ready<RaftMessage> {
        self.started = true;
        let mut ready = std::mem::take(&mut self.out);
        let now = self.durable();
        if now.supersedes(&self.persisted) {
            ready.persist = Some(durable::encode(self));
            self.persisted = now;
        }
        ready
    }

    fn height(&self) -> u64 {
        self.height
    }

    fn round(&self) -> u64 {
        self.term
    }

    fn current_leader(&self) -> Option<NodeId> {
        self.leader()
    }
}
