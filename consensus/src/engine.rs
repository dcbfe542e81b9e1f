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

/// What the engine wants done. The driver must act on every field, in this order:
///
/// 1. `persist`, when present: store it durably (fsync), replacing the previously stored bytes,
///    **before** any message of this `Ready` leaves the node. A vote sent and then forgotten in a
///    crash is how a restarted node comes to vote twice.
/// 2. Send `messages`.
/// 3. Build the requested block; re-execute every proposal in `check`; write the block in
///    `commit` to the chain (then call [`Engine::committed`]). These may happen in any order.
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
    /// The engine's durable state; when present the driver must store it durably (replacing the
    /// previous one) BEFORE sending any message of this `Ready`, and hand the last stored bytes to
    /// [`Engine::restore`] after a restart. Present only when the durable state changed (each
    /// write costs an fsync); at most [`MAX_DURABLE_BYTES`](crate::MAX_DURABLE_BYTES) long.
    pub persist: Option<Bytes>,
}

impl<M> Default for Ready<M> {
    fn default() -> Self {
        Self { messages: Vec::new(), build: None, check: Vec::new(), commit: None, persist: None }
    }
}

impl<M> Ready<M> {
    /// Whether there is nothing to do (a `Ready` holding only `persist` is not empty: the driver
    /// must still write it).
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.build.is_none()
            && self.check.is_empty()
            && self.commit.is_none()
            && self.persist.is_none()
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

/// Which engine a durable state belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineKind {
    /// [`Pbft`](crate::pbft::Pbft).
    Pbft,
    /// [`Raft`](crate::raft::Raft).
    Raft,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pbft => "PBFT",
            Self::Raft => "Raft",
        })
    }
}

/// Why [`Engine::restore`] refused a durable state. None of these goes away by retrying, and
/// starting the engine without its state can make the node vote twice, so the driver should not
/// start consensus (it may still sync blocks) until an operator looks. [`RestoreError::is_corrupt`]
/// tells damaged bytes from bytes that are intact but not this engine's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    // The bytes are damaged.
    /// Over [`MAX_DURABLE_BYTES`](crate::MAX_DURABLE_BYTES): no engine writes that much.
    #[error("durable state of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Shorter than the two leading bytes (engine tag and format version).
    #[error("durable state of {0} bytes is truncated")]
    Truncated(usize),
    /// The leading byte names no engine.
    #[error("durable state starts with {0:#04x}, which names no engine")]
    UnknownEngine(u8),
    /// The record is not well-formed RLP of the engine's state.
    #[error("malformed durable state: {0}")]
    Malformed(alloy_rlp::Error),
    /// Bytes follow the record.
    #[error("{0} trailing bytes after the durable state")]
    TrailingBytes(usize),
    /// A list is longer than the engine ever writes.
    #[error("durable state {what}: {got} entries, at most {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The limit.
        max: usize,
    },
    /// Well-formed, but contradicts itself (or a certificate in it does not verify).
    #[error("inconsistent durable state: {0}")]
    Inconsistent(&'static str),

    // Intact bytes that are not this engine's.
    /// The state of the other engine.
    #[error("durable state of the {found} engine given to the {expected} engine")]
    WrongEngine {
        /// The engine restoring.
        expected: EngineKind,
        /// The engine that wrote the bytes.
        found: EngineKind,
    },
    /// A format version this build cannot read (written by a newer one).
    #[error("{engine} durable state has format version {version}, which this build does not read")]
    UnsupportedVersion {
        /// The engine.
        engine: EngineKind,
        /// The version found.
        version: u8,
    },
    /// Written by another node (another key).
    #[error("durable state of node {found}, not of this node {expected}")]
    OtherNode {
        /// This node.
        expected: NodeId,
        /// The node that wrote it.
        found: NodeId,
    },
    /// State for the engine's height, written under another consensus node set.
    #[error("durable state for height {height} was written under another node set")]
    NodeSetMismatch {
        /// The height.
        height: u64,
    },
    /// State for a height the chain has not reached: blocks the engine saw committed are missing
    /// from the chain.
    #[error("durable state is for height {state_height}, but the engine starts at height {chain_height}")]
    AheadOfChain {
        /// Height of the state.
        state_height: u64,
        /// The engine's configured height.
        chain_height: u64,
    },

    // Caller error.
    /// [`Engine::restore`] was called after another call to the engine.
    #[error("restore must come right after construction, before any other call")]
    AlreadyStarted,
}

impl RestoreError {
    /// Whether the bytes are damaged (as opposed to intact but not this engine's, or a misuse).
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Self::TooLarge { .. }
                | Self::Truncated(_)
                | Self::UnknownEngine(_)
                | Self::Malformed(_)
                | Self::TrailingBytes(_)
                | Self::TooMany { .. }
                | Self::Inconsistent(_)
        )
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
/// Ordering contract: the driver constructs the engine, calls [`Engine::restore`] with the last
/// [`Ready::persist`] it stored (if any), and from then on, after any call, takes
/// [`Engine::ready`] and acts on it in the order [`Ready`] documents (durable state first). An
/// engine never commits two blocks at one height, whatever messages it receives; across restarts
/// this holds as long as the driver stores `persist` before sending and restores it.
pub trait Engine {
    /// The engine's wire message (RLP-encodable, decoded with bounds by the network).
    type Message;

    /// Restores the durable state a previous run of this node handed out in [`Ready::persist`].
    /// Call it once, right after construction and before any other call, with the bytes last
    /// stored (not at all when nothing was ever stored). State for a height below the configured
    /// one is obsolete (the chain committed that height) and ignored, except what is not tied to
    /// a height (Raft's term and vote). On error the engine is left as constructed.
    fn restore(&mut self, durable: &[u8]) -> Result<(), RestoreError>;

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

    /// The node leading the current round, when this node knows it (a Raft follower between
    /// elections does not).
    fn current_leader(&self) -> Option<NodeId>;
}
