//! The engine interface shared by PBFT and Raft.

use alloy_primitives::{B256, Bytes};
use alloy_rlp::{RlpDecodable, RlpEncodable};
use bcos_sdk::{
    crypto::NodeKey,
    types::{BlockHeader, QuorumCertificate},
};

use crate::{NodeId, Validators};

/// A block put up for agreement: the header the proposer computed by executing the
/// transactions, and the transactions themselves (EIP-2718 encodings), so replicas can re-execute
/// them and check they reach the same header.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Proposal {
    /// The proposed header.
    pub header: BlockHeader,
    /// The transactions, in order.
    pub transactions: Vec<Bytes>,
}

impl Proposal {
    /// The block hash being agreed on.
    pub fn hash(&self) -> B256 {
        self.header.hash()
    }
}

/// Where a message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Every other consensus node.
    All,
    /// One node.
    Node(NodeId),
}

/// The driver should build (select transactions, execute) a block for this height and round and
/// hand it back with [`Engine::proposal_built`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildRequest {
    /// Height of the block to build.
    pub height: u64,
    /// Round (PBFT view, Raft term) it is for.
    pub round: u64,
}

/// A block the engine decided, with the certificate that proves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The block.
    pub proposal: Proposal,
    /// Signed votes of a quorum of the consensus node set.
    pub qc: QuorumCertificate,
}

/// What the engine wants done. The driver must act on every field and then call back:
/// send `messages`; build the requested block; re-execute every proposal in `check`; persist
/// `commit` (then call [`Engine::committed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready<M> {
    /// Messages to send.
    pub messages: Vec<(Target, M)>,
    /// A block to build, if this node leads the current round.
    pub build: Option<BuildRequest>,
    /// Proposals to re-execute.
    pub check: Vec<Proposal>,
    /// A block to commit.
    pub commit: Option<Commit>,
}

impl<M> Default for Ready<M> {
    fn default() -> Self {
        Self { messages: Vec::new(), build: None, check: Vec::new(), commit: None }
    }
}

impl<M> Ready<M> {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.build.is_none() && self.check.is_empty() && self.commit.is_none()
    }
}

/// Why a message was not accepted. None of these stops the engine; the driver uses
/// [`StepError::is_bad_peer`] to decide whether to penalise the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StepError {
    /// The sender is not a consensus node at this height.
    #[error("{0} is not a consensus node")]
    NotAMember(NodeId),
    /// A signature does not verify.
    #[error("invalid signature from {0}")]
    BadSignature(NodeId),
    /// A proposal from a node that does not lead the round.
    #[error("{from} does not lead height {height} round {round}")]
    NotLeader {
        /// Sender.
        from: NodeId,
        /// Height.
        height: u64,
        /// Round.
        round: u64,
    },
    /// Two different proposals for one height and round from the same leader.
    #[error("{from} proposed two blocks for height {height} round {round}")]
    Equivocation {
        /// Sender.
        from: NodeId,
        /// Height.
        height: u64,
        /// Round.
        round: u64,
    },
    /// A message for a height or round that is over or too far ahead; dropped, not an offence.
    #[error("stale or future message for height {height} round {round}")]
    OutOfWindow {
        /// Height of the message.
        height: u64,
        /// Round of the message.
        round: u64,
    },
    /// The message is well-formed but contradicts the protocol (for example a proof that does not
    /// prove what it claims).
    #[error("invalid message from {from}: {reason}")]
    Invalid {
        /// Sender.
        from: NodeId,
        /// What is wrong.
        reason: String,
    },
}

impl StepError {
    /// Whether the sender misbehaved (as opposed to being slow or ahead).
    pub fn is_bad_peer(&self) -> bool {
        !matches!(self, Self::OutOfWindow { .. })
    }
}

/// What an engine starts from.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// This node's key, which signs its votes.
    pub key: NodeKey,
    /// The consensus node set in force at `height`.
    pub validators: Validators,
    /// The next height to decide (head + 1).
    pub height: u64,
    /// Base timeout in milliseconds (PBFT view timeout; Raft election timeout); grows with each
    /// failed round.
    pub timeout_ms: u64,
    /// The time now, in milliseconds on the driver's clock.
    pub now_ms: u64,
}

/// A consensus engine: a deterministic state machine.
///
/// Ordering contract: after any call the driver takes [`Engine::ready`] and acts on it. An engine
/// never commits two blocks at one height, whatever messages it receives.
pub trait Engine {
    /// The engine's wire message (RLP-encodable, decoded with bounds by the network).
    type Message;

    /// Advances the engine's clock to `now_ms` (monotonic), firing timeouts that are due.
    fn tick(&mut self, now_ms: u64);

    /// Handles a message from `from`, whom the transport has authenticated.
    fn step(&mut self, from: NodeId, message: Self::Message) -> Result<(), StepError>;

    /// The block asked for by [`Ready::build`], executed by the driver.
    fn proposal_built(&mut self, proposal: Proposal);

    /// The outcome of re-executing a proposal from [`Ready::check`]: `valid` when execution gave
    /// exactly the proposed header.
    fn proposal_checked(&mut self, hash: B256, valid: bool);

    /// The driver persisted the block at `height` (one the engine committed, or one obtained by
    /// sync); the engine moves to `height + 1` with the node set in force there.
    fn committed(&mut self, height: u64, validators: Validators);

    /// Takes everything the engine wants done since the last call.
    fn ready(&mut self) -> Ready<Self::Message>;

    /// The height being decided.
    fn height(&self) -> u64;

    /// The current round (PBFT view, Raft term).
    fn round(&self) -> u64;
}
