//! Raft's durable state: term, vote and the acknowledged proposal (see the module docs' safety
//! section), framed by [`crate::durable`].

use alloy_primitives::{B256, Bytes};
use alloy_rlp::{RlpDecodable, RlpEncodable};

use super::{Acked, Raft};
use crate::{
    EngineKind, NodeId, Proposal, RestoreError, Validators,
    durable::{at_most_one, check_block, node_set_digest},
};

/// What must survive a restart, as compared to decide whether to write: the term, the vote in
/// it, and the acknowledged proposal as `(height, term, hash)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Durable {
    pub(super) term: u64,
    pub(super) voted_for: Option<NodeId>,
    pub(super) acked: Option<(u64, u64, B256)>,
}

impl Durable {
    /// Whether `self` (the engine's state now) must be written over `stored`. An acknowledgement
    /// that is gone because the height was committed needs no write: a stored one for a lower
    /// height is ignored on restore.
    pub(super) fn supersedes(&self, stored: &Self) -> bool {
        self.term != stored.term
            || self.voted_for != stored.voted_for
            || (self.acked.is_some() && self.acked != stored.acked)
    }
}

/// The state restored into a new engine.
#[derive(Debug, Default)]
pub(super) struct Restored {
    pub(super) term: u64,
    pub(super) voted_for: Option<NodeId>,
    /// The acknowledgement at the engine's height, if the record was for that height.
    pub(super) acked: Option<Acked>,
}

/// The record on disk.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub(super) struct Record {
    /// The node that wrote it.
    pub(super) node: NodeId,
    /// [`node_set_digest`] of the node set at `height`.
    pub(super) validators: B256,
    /// The height the engine was deciding.
    pub(super) height: u64,
    /// The current term.
    pub(super) term: u64,
    /// Whom the node voted for in `term`: zero or one id.
    pub(super) voted_for: Vec<NodeId>,
    /// The proposal acknowledged at `height`: zero or one.
    pub(super) acked: Vec<AckedRecord>,
}

/// An acknowledged proposal and the term of the latest acknowledgement (the whole block: a new
/// leader must be able to re-propose it).
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub(super) struct AckedRecord {
    pub(super) term: u64,
    pub(super) proposal: Proposal,
}

/// The engine's durable state, framed.
pub(super) fn encode(raft: &Raft) -> Bytes {
    let record = Record {
        node: raft.id,
        validators: node_set_digest(&raft.validators),
        height: raft.height,
        term: raft.term,
        voted_for: raft.voted_for.into_iter().collect(),
        acked: raft
            .slot
            .acked
            .iter()
            .map(|acked| AckedRecord { term: acked.term, proposal: acked.proposal.clone() })
            .collect(),
    };
    crate::durable::encode(EngineKind::Raft, &record)
}

/// Reads and checks a durable state for node `id`, whose engine starts at `height` with
/// `validators`.
pub(super) fn decode(bytes: &[u8], id: NodeId, height: u64, validators: &Validators) -> Result<Restored, RestoreError> {
    let record: Record = crate::durable::decode(bytes, EngineKind::Raft)?;
    let voted_for = at_most_one(record.voted_for, "votes")?;
    let acked = at_most_one(record.acked, "acknowledged proposals")?;
    if record.term == 0 && voted_for.is_some() {
        return Err(RestoreError::Inconsistent("a vote in term 0"));
    }
    if let Some(acked) = &acked {
        if acked.term == 0 || acked.term > record.term {
            return Err(RestoreError::Inconsistent("an acknowledgement outside the terms the node was in"));
        }
        check_block(&acked.proposal, record.height)?;
    }
    if record.node != id {
        return Err(RestoreError::OtherNode { expected: id, found: record.node });
    }
    if record.height > height {
        return Err(RestoreError::AheadOfChain { state_height: record.height, chain_height: height });
    }
    // Term and vote hold whatever the height; the acknowledgement only at its own height.
    let acked = if record.height == height {
        if record.validators != node_set_digest(validators) {
            return Err(RestoreError::NodeSetMismatch { height });
        }
        acked.map(|AckedRecord { term, proposal }| Acked { term, hash: proposal.hash(), proposal })
    } else {
        None
    };
    Ok(Restored { term: record.term, voted_for, acked })
}
