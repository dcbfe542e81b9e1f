//! PBFT wire messages, what each one signs, and their bounded decoding.
//!
//! Every message travels as the RLP list `[kind, body]`, where `kind` is one byte naming the
//! variant and `body` is the variant's own RLP list. [`PbftMessage::decode_bounded`] is the entry
//! point for bytes from the network: it caps the size, rejects unknown kinds, trailing bytes and
//! over-long lists, and never panics.
//!
//! Each signature covers a Keccak-256 hash of a domain string and the fields it vouches for, so a
//! signature made for one kind of message can never be replayed as another. Commit votes sign
//! [`QuorumCertificate::signing_message`], so a quorum of them is a block's certificate as is.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{Decodable, Encodable, Header, RlpDecodable, RlpEncodable};
use bcos_sdk::{
    crypto::{NodeKey, verify_node_signature},
    types::{QuorumCertificate, Vote},
};

use crate::{NodeId, Proposal, Validators};

/// Largest encoded message [`PbftMessage::decode_bounded`] accepts: a pre-prepare or new-view
/// carries a whole block.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Most signatures a prepared certificate, or view changes a new-view, may carry: the largest
/// consensus node set the engine supports.
pub const MAX_NODES: usize = 1024;

/// Most transactions a proposal may carry (the chain's upper bound on `max_txs_per_block`).
pub const MAX_TRANSACTIONS: usize = 100_000;

const PRE_PREPARE_DOMAIN: &[u8] = b"bcos/pbft/pre-prepare/v1";
const PREPARE_DOMAIN: &[u8] = b"bcos/pbft/prepare/v1";
const VIEW_CHANGE_DOMAIN: &[u8] = b"bcos/pbft/view-change/v1";

/// Keccak-256 of `domain ‖ height ‖ view ‖ hash`, heights and views as 8 big-endian bytes.
fn round_message(domain: &[u8], height: u64, view: u64, hash: B256) -> B256 {
    let mut preimage = Vec::with_capacity(domain.len() + 48);
    preimage.extend_from_slice(domain);
    preimage.extend_from_slice(&height.to_be_bytes());
    preimage.extend_from_slice(&view.to_be_bytes());
    preimage.extend_from_slice(hash.as_slice());
    keccak256(preimage)
}

/// The leader's proposal for a height and view.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PrePrepare {
    /// Height proposed for.
    pub height: u64,
    /// View proposed in.
    pub view: u64,
    /// The block.
    pub proposal: Proposal,
    /// The leader's signature over [`PrePrepare::signing_message`].
    pub signature: Bytes,
}

impl PrePrepare {
    /// What the leader signs: domain, height, view and the proposal's hash.
    pub fn signing_message(height: u64, view: u64, hash: B256) -> B256 {
        round_message(PRE_PREPARE_DOMAIN, height, view, hash)
    }

    /// A pre-prepare signed by `key`.
    pub fn new(key: &NodeKey, height: u64, view: u64, proposal: Proposal) -> Self {
        let signature = key.sign(&Self::signing_message(height, view, proposal.hash()));
        Self { height, view, proposal, signature }
    }

    /// Whether `leader` signed it.
    pub fn verify(&self, leader: &NodeId) -> bool {
        let message = Self::signing_message(self.height, self.view, self.proposal.hash());
        verify_node_signature(leader, &message, &self.signature)
    }
}

/// A replica's vote that it re-executed the view's proposal and found it valid.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Prepare {
    /// Height.
    pub height: u64,
    /// View.
    pub view: u64,
    /// Hash of the proposal voted for.
    pub hash: B256,
    /// The voter's signature over [`Prepare::signing_message`].
    pub signature: Bytes,
}

impl Prepare {
    /// What a prepare vote signs: domain, height, view and block hash.
    pub fn signing_message(height: u64, view: u64, hash: B256) -> B256 {
        round_message(PREPARE_DOMAIN, height, view, hash)
    }

    /// A prepare vote signed by `key`.
    pub fn new(key: &NodeKey, height: u64, view: u64, hash: B256) -> Self {
        Self { height, view, hash, signature: key.sign(&Self::signing_message(height, view, hash)) }
    }

    /// Whether `voter` signed it.
    pub fn verify(&self, voter: &NodeId) -> bool {
        verify_node_signature(voter, &Self::signing_message(self.height, self.view, self.hash), &self.signature)
    }
}

/// A node's vote that it is prepared: a quorum prepared the block in this view. A quorum of
/// these is the block's [`QuorumCertificate`].
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct CommitVote {
    /// Height.
    pub height: u64,
    /// View.
    pub view: u64,
    /// Hash of the block.
    pub hash: B256,
    /// The voter's signature over [`QuorumCertificate::signing_message`]`(hash, height, view)`.
    pub signature: Bytes,
}

impl CommitVote {
    /// A commit vote signed by `key`.
    pub fn new(key: &NodeKey, height: u64, view: u64, hash: B256) -> Self {
        Self { height, view, hash, signature: key.sign(&QuorumCertificate::signing_message(hash, height, view)) }
    }

    /// Whether `voter` signed it.
    pub fn verify(&self, voter: &NodeId) -> bool {
        let message = QuorumCertificate::signing_message(self.hash, self.height, self.view);
        verify_node_signature(voter, &message, &self.signature)
    }
}

/// Proof that a quorum prepared a block in a view: their signed prepare votes.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct PreparedCertificate {
    /// The view the block was prepared in.
    pub view: u64,
    /// The block's hash.
    pub hash: B256,
    /// Prepare signatures ([`Prepare::signing_message`]), one per distinct node.
    pub votes: Vec<Vote>,
}

/// Why a prepared certificate or a view change does not prove what it claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// A signer is not a consensus node.
    NotAMember(NodeId),
    /// A signature does not verify.
    BadSignature(NodeId),
    /// Something else is wrong; the reason.
    Invalid(&'static str),
}

impl PreparedCertificate {
    /// Checks that a quorum of distinct members of `validators` signed the prepare for this
    /// height, view and hash.
    pub(crate) fn verify(&self, height: u64, validators: &Validators, quorum: usize) -> Result<(), ProofError> {
        if self.votes.len() > validators.len() {
            return Err(ProofError::Invalid("prepared certificate has more votes than nodes"));
        }
        let message = Prepare::signing_message(height, self.view, self.hash);
        let mut seen: Vec<NodeId> = Vec::with_capacity(self.votes.len());
        for vote in &self.votes {
            if !validators.contains(&vote.node_id) {
                return Err(ProofError::NotAMember(vote.node_id));
            }
            if seen.contains(&vote.node_id) {
                return Err(ProofError::Invalid("prepared certificate counts a node twice"));
            }
            if !verify_node_signature(&vote.node_id, &message, &vote.signature) {
                return Err(ProofError::BadSignature(vote.node_id));
            }
            seen.push(vote.node_id);
        }
        if seen.len() < quorum {
            return Err(ProofError::Invalid("prepared certificate has too few votes"));
        }
        Ok(())
    }
}

/// A node's statement that it gave up on the views before `new_view` at `height`, with the
/// highest-view block it prepared there, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewChange {
    /// The node leaving (new-views relay view changes, so the signer is named).
    pub node_id: NodeId,
    /// Height.
    pub height: u64,
    /// The view the node moves to.
    pub new_view: u64,
    /// The node's highest prepared certificate at this height, from a view below `new_view`.
    pub prepared: Option<PreparedCertificate>,
    /// Signature over [`ViewChange::signing_message`].
    pub signature: Bytes,
}

impl ViewChange {
    /// What a view change signs: domain, height, new view, and the view and hash of the prepared
    /// certificate (or a zero marker). The certificate's votes are not signed: they prove
    /// themselves, and any quorum of them proves the same thing.
    pub fn signing_message(height: u64, new_view: u64, prepared: Option<&PreparedCertificate>) -> B256 {
        let mut preimage = Vec::with_capacity(VIEW_CHANGE_DOMAIN.len() + 57);
        preimage.extend_from_slice(VIEW_CHANGE_DOMAIN);
        preimage.extend_from_slice(&height.to_be_bytes());
        preimage.extend_from_slice(&new_view.to_be_bytes());
        match prepared {
            None => preimage.push(0),
            Some(certificate) => {
                preimage.push(1);
                preimage.extend_from_slice(&certificate.view.to_be_bytes());
                preimage.extend_from_slice(certificate.hash.as_slice());
            }
        }
        keccak256(preimage)
    }

    /// A view change signed by `key`.
    pub fn new(key: &NodeKey, height: u64, new_view: u64, prepared: Option<PreparedCertificate>) -> Self {
        let signature = key.sign(&Self::signing_message(height, new_view, prepared.as_ref()));
        Self { node_id: key.node_id(), height, new_view, prepared, signature }
    }

    /// Checks the signature and the prepared certificate against the node set in force at the
    /// view change's height. Membership of the signer is checked too.
    pub(crate) fn verify(&self, validators: &Validators, quorum: usize) -> Result<(), ProofError> {
        if !validators.contains(&self.node_id) {
            return Err(ProofError::NotAMember(self.node_id));
        }
        let message = Self::signing_message(self.height, self.new_view, self.prepared.as_ref());
        if !verify_node_signature(&self.node_id, &message, &self.signature) {
            return Err(ProofError::BadSignature(self.node_id));
        }
        if let Some(certificate) = &self.prepared {
            if certificate.view >= self.new_view {
                return Err(ProofError::Invalid("prepared certificate is not from an earlier view"));
            }
            certificate.verify(self.height, validators, quorum)?;
        }
        Ok(())
    }

    fn payload_length(&self) -> usize {
        self.node_id.length()
            + self.height.length()
            + self.new_view.length()
            + option_length(self.prepared.as_ref())
            + self.signature.length()
    }
}

impl Encodable for ViewChange {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.node_id.encode(out);
        self.height.encode(out);
        self.new_view.encode(out);
        encode_option(self.prepared.as_ref(), out);
        self.signature.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        Header { list: true, payload_length }.length() + payload_length
    }
}

impl Decodable for ViewChange {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut payload = list_payload(buf)?;
        let view_change = Self {
            node_id: B256::decode(&mut payload)?,
            height: u64::decode(&mut payload)?,
            new_view: u64::decode(&mut payload)?,
            prepared: decode_option(&mut payload)?,
            signature: Bytes::decode(&mut payload)?,
        };
        expect_consumed(payload)?;
        Ok(view_change)
    }
}

/// The new leader's announcement of a view: a quorum of view changes proving the view began, and
/// the view's pre-prepare, which must re-propose the highest prepared block among them if there is
/// one. It needs no signature of its own: every part is signed (the view changes by their
/// senders, the pre-prepare by the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewView {
    /// Height.
    pub height: u64,
    /// The view that begins.
    pub view: u64,
    /// View changes to `view` from a quorum of distinct nodes.
    pub view_changes: Vec<ViewChange>,
    /// The view's proposal.
    pub pre_prepare: PrePrepare,
}

impl Encodable for NewView {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.height.encode(out);
        self.view.encode(out);
        self.view_changes.encode(out);
        self.pre_prepare.encode(out);
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        Header { list: true, payload_length }.length() + payload_length
    }
}

impl NewView {
    fn payload_length(&self) -> usize {
        self.height.length() + self.view.length() + self.view_changes.length() + self.pre_prepare.length()
    }
}

impl Decodable for NewView {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut payload = list_payload(buf)?;
        let new_view = Self {
            height: u64::decode(&mut payload)?,
            view: u64::decode(&mut payload)?,
            view_changes: Vec::decode(&mut payload)?,
            pre_prepare: PrePrepare::decode(&mut payload)?,
        };
        expect_consumed(payload)?;
        Ok(new_view)
    }
}

/// A PBFT message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PbftMessage {
    /// The leader's proposal for view 0 of a height (later views propose inside a
    /// [`PbftMessage::NewView`]).
    PrePrepare(PrePrepare),
    /// A vote for the view's proposal.
    Prepare(Prepare),
    /// A vote that the sender is prepared; a quorum commits the block.
    Commit(CommitVote),
    /// The sender leaves its view.
    ViewChange {
        /// The signed statement.
        view_change: ViewChange,
        /// The block its prepared certificate names, so the next leader can re-propose it without
        /// having seen it (unsigned: it is checked against the certificate's hash).
        proposal: Option<Proposal>,
    },
    /// The leader starts a view.
    NewView(NewView),
}

/// Why bytes are not a PBFT message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input is over [`MAX_MESSAGE_BYTES`].
    #[error("message of {len} bytes is over the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input is not well-formed RLP of a PBFT message.
    #[error("malformed PBFT message: {0}")]
    Rlp(alloy_rlp::Error),
    /// The kind byte names no message.
    #[error("unknown PBFT message kind {0}")]
    UnknownKind(u8),
    /// Bytes follow the message.
    #[error("{0} trailing bytes after the PBFT message")]
    TrailingBytes(usize),
    /// A list is longer than the protocol allows.
    #[error("{what}: {got} entries, at most {max}")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The limit.
        max: usize,
    },
}

impl From<alloy_rlp::Error> for DecodeError {
    fn from(error: alloy_rlp::Error) -> Self {
        Self::Rlp(error)
    }
}

const KIND_PRE_PREPARE: u8 = 1;
const KIND_PREPARE: u8 = 2;
const KIND_COMMIT: u8 = 3;
const KIND_VIEW_CHANGE: u8 = 4;
const KIND_NEW_VIEW: u8 = 5;

/// Payload length of a view-change message's body list: the statement and the optional block.
fn view_change_body_payload(view_change: &ViewChange, proposal: Option<&Proposal>) -> usize {
    view_change.length() + option_length(proposal)
}

impl PbftMessage {
    /// The kind byte that tags this message on the wire.
    pub fn kind(&self) -> u8 {
        match self {
            Self::PrePrepare(_) => KIND_PRE_PREPARE,
            Self::Prepare(_) => KIND_PREPARE,
            Self::Commit(_) => KIND_COMMIT,
            Self::ViewChange { .. } => KIND_VIEW_CHANGE,
            Self::NewView(_) => KIND_NEW_VIEW,
        }
    }

    /// The height the message is about.
    pub fn height(&self) -> u64 {
        match self {
            Self::PrePrepare(m) => m.height,
            Self::Prepare(m) => m.height,
            Self::Commit(m) => m.height,
            Self::ViewChange { view_change, .. } => view_change.height,
            Self::NewView(m) => m.height,
        }
    }

    /// The view the message is about (for a view change, the view it moves to).
    pub fn view(&self) -> u64 {
        match self {
            Self::PrePrepare(m) => m.view,
            Self::Prepare(m) => m.view,
            Self::Commit(m) => m.view,
            Self::ViewChange { view_change, .. } => view_change.new_view,
            Self::NewView(m) => m.view,
        }
    }

    /// The message's wire encoding.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        alloy_rlp::encode(self)
    }

    /// Decodes one message from bytes received from a peer: at most [`MAX_MESSAGE_BYTES`], a
    /// known kind, lists within their limits, and nothing after the message.
    pub fn decode_bounded(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(DecodeError::TooLarge { len: bytes.len(), max: MAX_MESSAGE_BYTES });
        }
        let mut buf = bytes;
        let message = Self::decode_checked(&mut buf)?;
        if !buf.is_empty() {
            return Err(DecodeError::TrailingBytes(buf.len()));
        }
        Ok(message)
    }

    fn decode_checked(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut payload = list_payload(buf)?;
        let kind = u8::decode(&mut payload)?;
        let message = match kind {
            KIND_PRE_PREPARE => Self::PrePrepare(PrePrepare::decode(&mut payload)?),
            KIND_PREPARE => Self::Prepare(Prepare::decode(&mut payload)?),
            KIND_COMMIT => Self::Commit(CommitVote::decode(&mut payload)?),
            KIND_VIEW_CHANGE => {
                let mut body = list_payload(&mut payload)?;
                let view_change = ViewChange::decode(&mut body)?;
                let proposal = decode_option(&mut body)?;
                expect_consumed(body)?;
                Self::ViewChange { view_change, proposal }
            }
            KIND_NEW_VIEW => Self::NewView(NewView::decode(&mut payload)?),
            other => return Err(DecodeError::UnknownKind(other)),
        };
        expect_consumed(payload)?;
        message.check_limits()?;
        Ok(message)
    }

    /// Checks list lengths against the protocol's limits.
    fn check_limits(&self) -> Result<(), DecodeError> {
        let at_most = |what: &'static str, got: usize, max: usize| {
            if got > max { Err(DecodeError::TooMany { what, got, max }) } else { Ok(()) }
        };
        let view_change = |view_change: &ViewChange| {
            view_change
                .prepared
                .as_ref()
                .map_or(Ok(()), |c| at_most("prepared certificate votes", c.votes.len(), MAX_NODES))
        };
        let proposal =
            |proposal: &Proposal| at_most("proposal transactions", proposal.transactions.len(), MAX_TRANSACTIONS);
        match self {
            Self::PrePrepare(m) => proposal(&m.proposal),
            Self::Prepare(_) | Self::Commit(_) => Ok(()),
            Self::ViewChange { view_change: vc, proposal: p } => {
                view_change(vc)?;
                p.as_ref().map_or(Ok(()), proposal)
            }
            Self::NewView(m) => {
                at_most("new-view view changes", m.view_changes.len(), MAX_NODES)?;
                m.view_changes.iter().try_for_each(view_change)?;
                proposal(&m.pre_prepare.proposal)
            }
        }
    }

    fn body_length(&self) -> usize {
        match self {
            Self::PrePrepare(m) => m.length(),
            Self::Prepare(m) => m.length(),
            Self::Commit(m) => m.length(),
            Self::ViewChange { view_change, proposal } => {
                let payload_length = view_change_body_payload(view_change, proposal.as_ref());
                Header { list: true, payload_length }.length() + payload_length
            }
            Self::NewView(m) => m.length(),
        }
    }
}

impl Encodable for PbftMessage {
    fn encode(&self, out: &mut dyn alloy_rlp::BufMut) {
        Header { list: true, payload_length: self.kind().length() + self.body_length() }.encode(out);
        self.kind().encode(out);
        match self {
            Self::PrePrepare(m) => m.encode(out),
            Self::Prepare(m) => m.encode(out),
            Self::Commit(m) => m.encode(out),
            Self::ViewChange { view_change, proposal } => {
                let payload_length = view_change_body_payload(view_change, proposal.as_ref());
                Header { list: true, payload_length }.encode(out);
                view_change.encode(out);
                encode_option(proposal.as_ref(), out);
            }
            Self::NewView(m) => m.encode(out),
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.kind().length() + self.body_length();
        Header { list: true, payload_length }.length() + payload_length
    }
}

impl Decodable for PbftMessage {
    /// Decodes one message with the limits of [`PbftMessage::decode_bounded`] except the overall
    /// size (the caller bounds its buffer); leaves any following bytes in `buf`.
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        Self::decode_checked(buf).map_err(|error| match error {
            DecodeError::Rlp(error) => error,
            DecodeError::UnknownKind(_) => alloy_rlp::Error::Custom("unknown PBFT message kind"),
            DecodeError::TooMany { .. } => alloy_rlp::Error::Custom("PBFT message list over its limit"),
            DecodeError::TooLarge { .. } | DecodeError::TrailingBytes(_) => {
                alloy_rlp::Error::Custom("PBFT message has the wrong length")
            }
        })
    }
}

/// Takes one RLP list off `buf` and returns its payload.
fn list_payload<'a>(buf: &mut &'a [u8]) -> alloy_rlp::Result<&'a [u8]> {
    let header = Header::decode(buf)?;
    if !header.list {
        return Err(alloy_rlp::Error::UnexpectedString);
    }
    let Some((payload, rest)) = buf.split_at_checked(header.payload_length) else {
        return Err(alloy_rlp::Error::InputTooShort);
    };
    *buf = rest;
    Ok(payload)
}

/// Fails unless a list's payload was read to its end.
fn expect_consumed(payload: &[u8]) -> alloy_rlp::Result<()> {
    if payload.is_empty() { Ok(()) } else { Err(alloy_rlp::Error::Custom("unexpected items at the end of a list")) }
}

fn option_length<T: Encodable>(value: Option<&T>) -> usize {
    let payload_length = value.map_or(0, Encodable::length);
    Header { list: true, payload_length }.length() + payload_length
}

fn encode_option<T: Encodable>(value: Option<&T>, out: &mut dyn alloy_rlp::BufMut) {
    Header { list: true, payload_length: value.map_or(0, Encodable::length) }.encode(out);
    if let Some(value) = value {
        value.encode(out);
    }
}

/// Decodes a list of zero or one item.
fn decode_option<T: Decodable>(buf: &mut &[u8]) -> alloy_rlp::Result<Option<T>> {
    let mut payload = list_payload(buf)?;
    if payload.is_empty() {
        return Ok(None);
    }
    let value = T::decode(&mut payload)?;
    expect_consumed(payload)?;
    Ok(Some(value))
}
