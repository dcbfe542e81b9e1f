//! The engine a node runs: PBFT or Raft, whichever the system config puts in force, replaced at
//! the height the chain scheduled a switch for; or none, while the node is an observer (not in
//! the consensus node set), which follows the chain by block sync alone and never votes.
//!
//! Every node commits the block before the switch height with the old engine, then starts the
//! new one at the switch height with the same node set: the switch height comes from committed
//! state, so all nodes switch at the same block without talking about it. Pending transactions
//! stay in the pool, which the switch does not touch.
//!
//! Around the switch, nodes are briefly at different heights: one that has switched already
//! sends messages of the new engine to one that has not, and the other way round. Such messages
//! are kept (the latest [`MAX_WAITING`]) and replayed to the new engine when this node switches,
//! so the first block after a switch does not wait for a timeout; the engine refuses those that
//! are stale by then.

use std::collections::VecDeque;

use alloy_primitives::{B256, Bytes};
use bcos_consensus::{
    Engine, EngineConfig, Proposal, Ready, RestoreError, StepError, Target, Validators,
    pbft::{Pbft, PbftMessage},
    raft::{Raft, RaftMessage},
};
use bcos_sdk::{config::ConsensusMode, crypto::NodeKey};

use super::driver::WireMessage;
use crate::network::NodeId;

/// Messages of an engine not running here, kept for a switch.
const MAX_WAITING: usize = 1_024;

/// A message of either engine, tagged on the wire with the engine it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsensusMessage {
    /// A PBFT message.
    Pbft(Box<PbftMessage>),
    /// A Raft message.
    Raft(Box<RaftMessage>),
}

impl ConsensusMessage {
    fn mode(&self) -> ConsensusMode {
        match self {
            Self::Pbft(_) => ConsensusMode::Pbft,
            Self::Raft(_) => ConsensusMode::Raft,
        }
    }
}

/// Wire tag of each engine's messages: the consensus mode's on-chain code.
fn tag(mode: ConsensusMode) -> u8 {
    u8::try_from(mode.code()).unwrap_or(u8::MAX)
}

impl WireMessage for ConsensusMessage {
    fn to_wire(&self) -> Bytes {
        let (mode, body) = match self {
            Self::Pbft(message) => (ConsensusMode::Pbft, message.to_wire()),
            Self::Raft(message) => (ConsensusMode::Raft, message.to_wire()),
        };
        let mut bytes = Vec::with_capacity(1 + body.len());
        bytes.push(tag(mode));
        bytes.extend_from_slice(&body);
        Bytes::from(bytes)
    }

    fn from_wire(bytes: &[u8]) -> Result<Self, String> {
        let (&first, body) = bytes.split_first().ok_or("empty consensus message")?;
        if first == tag(ConsensusMode::Pbft) {
            PbftMessage::from_wire(body).map(|m| Self::Pbft(Box::new(m)))
        } else if first == tag(ConsensusMode::Raft) {
            RaftMessage::from_wire(body).map(|m| Self::Raft(Box::new(m)))
        } else {
            Err(format!("unknown consensus engine tag {first}"))
        }
    }
}

/// Boxed: the engines differ in size and one lives per node.
enum Active {
    Pbft(Box<Pbft>),
    Raft(Box<Raft>),
    /// Not a consensus node: decides nothing, waits for `height` to come by sync.
    Observer {
        height: u64,
    },
}

/// The running engine and what it was started with.
pub struct ConsensusEngine {
    active: Active,
    key: NodeKey,
    timeout_ms: u64,
    /// First height the running engine decided.
    since_height: u64,
    waiting: VecDeque<(NodeId, ConsensusMessage)>,
}

impl ConsensusEngine {
    /// Starts `mode` at `config.height`, or observes when this node is not in the node set.
    pub fn new(mode: ConsensusMode, config: EngineConfig) -> Self {
        let (key, timeout_ms, since_height) = (config.key.clone(), config.timeout_ms, config.height);
        let active = if !config.validators.contains(&key.node_id()) {
            Active::Observer { height: config.height }
        } else {
            match mode {
                ConsensusMode::Pbft => Active::Pbft(Box::new(Pbft::new(config))),
                ConsensusMode::Raft => Active::Raft(Box::new(Raft::new(config))),
            }
        };
        Self { active, key, timeout_ms, since_height, waiting: VecDeque::new() }
    }

    /// The running engine's mode; `None` while observing.
    pub fn mode(&self) -> Option<ConsensusMode> {
        match self.active {
            Active::Pbft(_) => Some(ConsensusMode::Pbft),
            Active::Raft(_) => Some(ConsensusMode::Raft),
            Active::Observer { .. } => None,
        }
    }

    /// `pbft`, `raft` or `observer`.
    pub fn name(&self) -> &'static str {
        self.mode().map_or("observer", ConsensusMode::as_str)
    }

    /// First height the running engine decided.
    pub fn since_height(&self) -> u64 {
        self.since_height
    }

    /// Moves past the committed block at `height`. When the configuration in force at
    /// `height + 1` names another mode or timeout, or this node joined or left the node set,
    /// replaces the engine with a fresh one starting there and returns true.
    pub fn advance(
        &mut self,
        height: u64,
        validators: Validators,
        mode: ConsensusMode,
        timeout_ms: u64,
        now_ms: u64,
    ) -> bool {
        let role = validators.contains(&self.key.node_id()).then_some(mode);
        // An observer has no timers, so only its role matters.
        if role == self.mode() && (role.is_none() || timeout_ms == self.timeout_ms) {
            self.committed(height, validators);
            return false;
        }
        let config = EngineConfig { key: self.key.clone(), validators, height: height + 1, timeout_ms, now_ms };
        let waiting = std::mem::take(&mut self.waiting);
        *self = Self::new(mode, config);
        for (from, message) in waiting {
            // Stale or foreign messages are refused by the engine, as they would be from the wire.
            let _ = self.step(from, message);
        }
        true
    }
}

fn wrap<M>(ready: Ready<M>, tag: fn(Box<M>) -> ConsensusMessage) -> Ready<ConsensusMessage> {
    Ready {
        messages: ready
            .messages
            .into_iter()
            .map(|(target, message)| (target, tag(Box::new(message))))
            .collect::<Vec<(Target, _)>>(),
        build: ready.build,
        check: ready.check,
        commit: ready.commit,
        persist: ready.persist,
    }
}

impl Engine for ConsensusEngine {
    type Message = ConsensusMessage;

    fn restore(&mut self, durable: &[u8]) -> Result<(), RestoreError> {
        match &mut self.active {
            Active::Pbft(engine) => engine.restore(durable),
            Active::Raft(engine) => engine.restore(durable),
            // An observer casts no votes, so nothing it saved as a voter binds it now; a fresh
            // engine starts at a later height if it becomes a voter again.
            Active::Observer { .. } => Ok(()),
        }
    }

    fn tick(&mut self, now_ms: u64) {
        match &mut self.active {
            Active::Pbft(engine) => engine.tick(now_ms),
            Active::Raft(engine) => engine.tick(now_ms),
            Active::Observer { .. } => {}
        }
    }

    fn step(&mut self, from: NodeId, message: ConsensusMessage) -> Result<(), StepError> {
        match (&mut self.active, message) {
            (Active::Pbft(engine), ConsensusMessage::Pbft(message)) => engine.step(from, *message),
            (Active::Raft(engine), ConsensusMessage::Raft(message)) => engine.step(from, *message),
            // An observer keeps them too, for the engine it starts if it joins the node set.
            (_, other) => {
                tracing::trace!(target: "consensus", %from, mode = %other.mode(), "kept a message of another engine");
                if self.waiting.len() == MAX_WAITING {
                    self.waiting.pop_front();
                }
                self.waiting.push_back((from, other));
                Err(StepError::OutOfWindow { height: self.height(), round: self.round() })
            }
        }
    }

    fn proposal_built(&mut self, proposal: Proposal) {
        match &mut self.active {
            Active::Pbft(engine) => engine.proposal_built(proposal),
            Active::Raft(engine) => engine.proposal_built(proposal),
            Active::Observer { .. } => {}
        }
    }

    fn proposal_checked(&mut self, hash: B256, valid: bool) {
        match &mut self.active {
            Active::Pbft(engine) => engine.proposal_checked(hash, valid),
            Active::Raft(engine) => engine.proposal_checked(hash, valid),
            Active::Observer { .. } => {}
        }
    }

    fn committed(&mut self, height: u64, validators: Validators) {
        match &mut self.active {
            Active::Pbft(engine) => engine.committed(height, validators),
            Active::Raft(engine) => engine.committed(height, validators),
            Active::Observer { height: next } => *next = height + 1,
        }
    }

    fn ready(&mut self) -> Ready<ConsensusMessage> {
        match &mut self.active {
            Active::Pbft(engine) => wrap(engine.ready(), ConsensusMessage::Pbft),
            Active::Raft(engine) => wrap(engine.ready(), ConsensusMessage::Raft),
            Active::Observer { .. } => Ready::default(),
        }
    }

    fn height(&self) -> u64 {
        match &self.active {
            Active::Pbft(engine) => engine.height(),
            Active::Raft(engine) => engine.height(),
            Active::Observer { height } => *height,
        }
    }

    fn round(&self) -> u64 {
        match &self.active {
            Active::Pbft(engine) => engine.round(),
            Active::Raft(engine) => engine.round(),
            Active::Observer { .. } => 0,
        }
    }

    fn current_leader(&self) -> Option<NodeId> {
        match &self.active {
            Active::Pbft(engine) => engine.current_leader(),
            Active::Raft(engine) => engine.current_leader(),
            Active::Observer { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bcos_consensus::raft::RaftMessage;

    use super::*;

    const TIMEOUT_MS: u64 = 1_000;

    fn config(key: &NodeKey, keys: &[NodeKey]) -> EngineConfig {
        EngineConfig { key: key.clone(), validators: validators(keys), height: 1, timeout_ms: TIMEOUT_MS, now_ms: 0 }
    }

    fn validators(keys: &[NodeKey]) -> Validators {
        Validators::new(keys.iter().map(NodeKey::node_id).collect()).expect("non-empty")
    }

    /// The pre-vote request a Raft node broadcasts once its election timer fires.
    fn raft_vote_request(key: &NodeKey, keys: &[NodeKey]) -> ConsensusMessage {
        let mut raft = ConsensusEngine::new(ConsensusMode::Raft, config(key, keys));
        raft.tick(10 * TIMEOUT_MS);
        let ready = raft.ready();
        let (target, message) = ready.messages.into_iter().next().expect("a vote request");
        assert_eq!(target, Target::All);
        assert!(matches!(&message, ConsensusMessage::Raft(m) if matches!(**m, RaftMessage::RequestVote(_))));
        message
    }

    #[test]
    fn wire_form_names_the_engine_and_refuses_what_it_cannot_place() {
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let message = raft_vote_request(&keys[0], &keys);
        let wire = message.to_wire();
        assert_eq!(wire[0], 1, "raft's on-chain code");
        assert_eq!(ConsensusMessage::from_wire(&wire), Ok(message));

        assert_eq!(ConsensusMessage::from_wire(&[]), Err("empty consensus message".to_owned()));
        let mut unknown = wire.to_vec();
        unknown[0] = 7;
        assert_eq!(ConsensusMessage::from_wire(&unknown), Err("unknown consensus engine tag 7".to_owned()));
        let mut mislabelled = wire.to_vec();
        mislabelled[0] = 0;
        assert!(ConsensusMessage::from_wire(&mislabelled).is_err(), "a raft body is not a pbft message");
    }

    #[test]
    fn messages_of_the_next_engine_are_answered_once_this_node_switches() {
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let request = raft_vote_request(&keys[0], &keys);
        let mut engine = ConsensusEngine::new(ConsensusMode::Pbft, config(&keys[1], &keys));
        let _ = engine.ready();
        assert!(matches!(engine.step(keys[0].node_id(), request), Err(StepError::OutOfWindow { height: 1, .. })));
        assert!(engine.ready().messages.is_empty(), "PBFT does not answer a raft message");

        // Block 1 was the last PBFT block; Raft is in force from block 2.
        assert!(engine.advance(1, validators(&keys), ConsensusMode::Raft, TIMEOUT_MS, 0));
        assert_eq!((engine.mode(), engine.since_height(), engine.height()), (Some(ConsensusMode::Raft), 2, 2));
        let replies = engine.ready().messages;
        assert!(
            replies.iter().any(|(target, message)| *target == Target::Node(keys[0].node_id())
                && matches!(message, ConsensusMessage::Raft(m) if matches!(**m, RaftMessage::VoteReply(_)))),
            "the kept request is answered: {replies:?}"
        );
    }

    #[test]
    fn same_mode_and_timeout_keep_the_running_engine() {
        let keys: Vec<NodeKey> = (0..3).map(|_| NodeKey::generate()).collect();
        let mut engine = ConsensusEngine::new(ConsensusMode::Pbft, config(&keys[1], &keys));
        assert!(!engine.advance(1, validators(&keys), ConsensusMode::Pbft, TIMEOUT_MS, 0));
        assert_eq!((engine.since_height(), engine.height()), (1, 2));
        assert!(engine.advance(2, validators(&keys), ConsensusMode::Pbft, 2 * TIMEOUT_MS, 0), "a new timeout");
        assert_eq!((engine.mode(), engine.since_height(), engine.height()), (Some(ConsensusMode::Pbft), 3, 3));
    }
}
