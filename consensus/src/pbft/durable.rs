//! PBFT's durable state: the view, what the node signed in it, and its prepared certificate with
//! the blocks they name (see the module docs' "Durable state"), framed by [`crate::durable`].

use alloy_primitives::{B256, Bytes};
use alloy_rlp::{RlpDecodable, RlpEncodable};

use super::{MAX_NODES, Pbft, PreparedCertificate};
use crate::{
    EngineKind, NodeId, Proposal, RestoreError, Validators,
    durable::{at_most_one, check_block, node_set_digest},
};

/// Most blocks a record holds: the one signed in the view and the prepared one.
const MAX_BLOCKS: usize = 2;

/// What the node signed in its current view: the block (as the view's leader, its proposal;
/// otherwise the pre-prepare it accepted) and whether it sent its prepare and commit votes for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub(super) struct OwnVotes {
    pub(super) hash: B256,
    pub(super) prepare: bool,
    pub(super) commit: bool,
}

/// What must survive a restart, as compared to decide whether to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Durable {
    pub(super) height: u64,
    pub(super) view: u64,
    pub(super) own: Option<OwnVotes>,
    /// View and hash of the prepared certificate.
    pub(super) prepared: Option<(u64, B256)>,
}

/// The state restored into a new engine at the record's height.
#[derive(Debug)]
pub(super) struct Restored {
    pub(super) view: u64,
    pub(super) own: Option<OwnVotes>,
    pub(super) prepared: Option<PreparedCertificate>,
    /// The blocks `own` and `prepared` name (each was valid when the node signed for it).
    pub(super) blocks: Vec<Proposal>,
}

/// The record on disk.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub(super) struct Record {
    /// The node that wrote it.
    pub(super) node: NodeId,
    /// [`node_set_digest`] of the node set at `height`.
    pub(super) validators: B256,
    /// The height being decided.
    pub(super) height: u64,
    /// The highest view the node entered at `height`; it never votes below it.
    pub(super) view: u64,
    /// What it signed in `view`: zero or one.
    pub(super) own: Vec<OwnVotes>,
    /// Its highest prepared certificate at `height`: zero or one.
    pub(super) prepared: Vec<PreparedCertificate>,
    /// The blocks `own` and `prepared` name, each once: at most [`MAX_BLOCKS`].
    pub(super) blocks: Vec<Proposal>,
}

/// The engine's durable state `durable`, framed.
pub(super) fn encode(pbft: &Pbft, durable: &Durable) -> Bytes {
    let mut hashes: Vec<B256> = durable.own.iter().map(|own| own.hash).collect();
    if let Some((_, hash)) = durable.prepared
        && !hashes.contains(&hash)
    {
        hashes.push(hash);
    }
    let blocks = hashes.iter().filter_map(|hash| pbft.round.candidates.get(hash)).map(|c| c.proposal.clone()).collect();
    let record = Record {
        node: pbft.id,
        validators: node_set_digest(&pbft.validators),
        height: durable.height,
        view: durable.view,
        own: durable.own.into_iter().collect(),
        prepared: pbft.round.prepared.iter().cloned().collect(),
        blocks,
    };
    crate::durable::encode(EngineKind::Pbft, &record)
}

/// Reads and checks a durable state for node `id`, whose engine starts at `height` with
/// `validators`. `None` when the state is for a lower height (obsolete).
pub(super) fn decode(
    bytes: &[u8],
    id: NodeId,
    height: u64,
    validators: &Validators,
) -> Result<Option<Restored>, RestoreError> {
    let record: Record = crate::durable::decode(bytes, EngineKind::Pbft)?;
    let own = at_most_one(record.own, "own votes")?;
    let prepared = at_most_one(record.prepared, "prepared certificates")?;
    let blocks = record.blocks;
    if blocks.len() > MAX_BLOCKS {
        return Err(RestoreError::TooMany { what: "blocks", got: blocks.len(), max: MAX_BLOCKS });
    }
    if let Some(certificate) = &prepared {
        let got = certificate.votes.len();
        if got > MAX_NODES {
            return Err(RestoreError::TooMany { what: "prepared certificate votes", got, max: MAX_NODES });
        }
    }
    check_shape(record.view, own, prepared.as_ref())?;
    let mut hashes: Vec<B256> = Vec::with_capacity(blocks.len());
    for block in &blocks {
        check_block(block, record.height)?;
        let hash = block.hash();
        if hashes.contains(&hash) {
            return Err(RestoreError::Inconsistent("a block stored twice"));
        }
        if own.is_none_or(|own| own.hash != hash) && prepared.as_ref().is_none_or(|c| c.hash != hash) {
            return Err(RestoreError::Inconsistent("a stored block nothing refers to"));
        }
        hashes.push(hash);
    }
    if record.node != id {
        return Err(RestoreError::OtherNode { expected: id, found: record.node });
    }
    if record.height < height {
        return Ok(None);
    }
    if record.height > height {
        return Err(RestoreError::AheadOfChain { state_height: record.height, chain_height: height });
    }
    if record.validators != node_set_digest(validators) {
        return Err(RestoreError::NodeSetMismatch { height });
    }
    if !validators.contains(&id) && (own.is_some() || prepared.is_some()) {
        return Err(RestoreError::Inconsistent("votes of a node outside the node set"));
    }
    if let Some(own) = own
        && !own.prepare
        && validators.at(height.wrapping_add(record.view)) != id
    {
        return Err(RestoreError::Inconsistent("a block neither proposed nor voted for"));
    }
    if let Some(certificate) = &prepared {
        certificate
            .verify(height, validators, validators.bft_quorum())
            .map_err(|_| RestoreError::Inconsistent("the prepared certificate does not verify"))?;
    }
    Ok(Some(Restored { view: record.view, own, prepared, blocks }))
}

/// The rules the engine keeps between its votes and its certificate: a commit vote follows a
/// prepare vote and the certificate of the same view and block; a certificate is from a view
/// the node has been in, and one of the current view came with the commit vote.
fn check_shape(view: u64, own: Option<OwnVotes>, prepared: Option<&PreparedCertificate>) -> Result<(), RestoreError> {
    if let Some(own) = own
        && own.commit
    {
        if !own.prepare {
            return Err(RestoreError::Inconsistent("a commit vote without a prepare vote"));
        }
        if prepared.is_none_or(|c| c.view != view || c.hash != own.hash) {
            return Err(RestoreError::Inconsistent("a commit vote without the certificate it rests on"));
        }
    }
    if let Some(certificate) = prepared {
        if certificate.view > view {
            return Err(RestoreError::Inconsistent("a prepared certificate from a later view"));
        }
        if certificate.view == view && own.is_none_or(|own| !own.commit || own.hash != certificate.hash) {
            return Err(RestoreError::Inconsistent("a certificate of the current view without the commit vote"));
        }
    }
    Ok(())
}
