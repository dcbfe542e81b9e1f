//! Raft wire messages: one RLP list `[kind, body]`, each body signed by its sender.
//!
//! Every message except [`Ack`] is signed over `keccak256(MESSAGE_DOMAIN ‖ kind ‖ fields)`, the
//! fields written at fixed width (the proposal and certificate of [`Append`] and [`CommitNotice`]
//! by the Keccak-256 of their RLP), so a signature made for one kind can never be read as another.
//! An [`Ack`] is signed over [`QuorumCertificate::signing_message`]`(hash, height, term)`: it is
//! the commit vote itself, and a majority of them is the block's certificate.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{BufMut, Decodable, Encodable, Header, RlpDecodable, RlpEncodable};
use bcos_sdk::{
    crypto::{NodeKey, verify_node_signature},
    types::QuorumCertificate,
};

use crate::{NodeId, Proposal};

/// Domain separator of Raft message signatures (acks use the commit-vote domain instead).
const MESSAGE_DOMAIN: &[u8] = b"bcos/raft-message/v1";

/// Largest encoded message [`RaftMessage::decode_exact`] accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;

/// Kind byte of [`RequestVote`].
const KIND_REQUEST_VOTE: u8 = 1;
/// Kind byte of [`VoteReply`].
const KIND_VOTE_REPLY: u8 = 2;
/// Kind byte of [`Append`].
const KIND_APPEND: u8 = 3;
/// Kind byte of [`Ack`].
const KIND_ACK: u8 = 4;
/// Kind byte of [`CommitNotice`].
const KIND_COMMIT_NOTICE: u8 = 5;
/// Kind byte of [`Heartbeat`].
const KIND_HEARTBEAT: u8 = 6;
/// Kind byte of [`StaleTerm`].
const KIND_STALE_TERM: u8 = 7;

/// A candidate asks for a vote (or, with `pre_vote`, asks whether it would get one, without
/// anybody changing term).
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct RequestVote {
    /// The term the candidate campaigns for.
    pub term: u64,
    /// The candidate's next height (its committed height + 1).
    pub height: u64,
    /// Term of the proposal the candidate acknowledged at `height`; 0 when none.
    pub acked_term: u64,
    /// Whether this is a pre-vote.
    pub pre_vote: bool,
    /// The candidate's signature.
    pub signature: Bytes,
}

impl RequestVote {
    /// A signed request.
    pub fn new(key: &NodeKey, term: u64, height: u64, acked_term: u64, pre_vote: bool) -> Self {
        let mut message = Self { term, height, acked_term, pre_vote, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_REQUEST_VOTE);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        preimage.extend_from_slice(&self.height.to_be_bytes());
        preimage.extend_from_slice(&self.acked_term.to_be_bytes());
        preimage.push(u8::from(self.pre_vote));
        keccak256(preimage)
    }
}

/// The answer to a [`RequestVote`].
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct VoteReply {
    /// The term voted in when granted; the voter's own term when refused.
    pub term: u64,
    /// The candidate the reply is for.
    pub candidate: NodeId,
    /// Whether it answers a pre-vote.
    pub pre_vote: bool,
    /// Whether the vote is granted.
    pub granted: bool,
    /// The voter's signature.
    pub signature: Bytes,
}

impl VoteReply {
    /// A signed reply.
    pub fn new(key: &NodeKey, term: u64, candidate: NodeId, pre_vote: bool, granted: bool) -> Self {
        let mut message = Self { term, candidate, pre_vote, granted, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_VOTE_REPLY);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        preimage.extend_from_slice(self.candidate.as_slice());
        preimage.push(u8::from(self.pre_vote));
        preimage.push(u8::from(self.granted));
        keccak256(preimage)
    }
}

/// The leader of `term` proposes a block for `height`.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Append {
    /// The leader's term.
    pub term: u64,
    /// The height proposed for.
    pub height: u64,
    /// The block.
    pub proposal: Proposal,
    /// The leader's signature.
    pub signature: Bytes,
}

impl Append {
    /// A signed proposal.
    pub fn new(key: &NodeKey, term: u64, height: u64, proposal: Proposal) -> Self {
        let mut message = Self { term, height, proposal, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_APPEND);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        preimage.extend_from_slice(&self.height.to_be_bytes());
        preimage.extend_from_slice(keccak256(alloy_rlp::encode(&self.proposal)).as_slice());
        keccak256(preimage)
    }
}

/// A follower re-executed the leader's block and reached the same header: its commit vote.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Ack {
    /// The leader's term (the certificate's round).
    pub term: u64,
    /// The block's height.
    pub height: u64,
    /// The block's hash.
    pub hash: B256,
    /// Signature over [`QuorumCertificate::signing_message`]`(hash, height, term)`.
    pub signature: Bytes,
}

impl Ack {
    /// A signed acknowledgement.
    pub fn new(key: &NodeKey, term: u64, height: u64, hash: B256) -> Self {
        let signature = key.sign(&QuorumCertificate::signing_message(hash, height, term));
        Self { term, height, hash, signature }
    }

    fn signing_hash(&self) -> B256 {
        QuorumCertificate::signing_message(self.hash, self.height, self.term)
    }
}

/// The block `hash` at `height` is committed; `qc` proves it (a majority of acks).
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct CommitNotice {
    /// The sender's current term.
    pub term: u64,
    /// The committed height.
    pub height: u64,
    /// The committed block's hash.
    pub hash: B256,
    /// Its certificate.
    pub qc: QuorumCertificate,
    /// The sender's signature.
    pub signature: Bytes,
}

impl CommitNotice {
    /// A signed notice.
    pub fn new(key: &NodeKey, term: u64, height: u64, hash: B256, qc: QuorumCertificate) -> Self {
        let mut message = Self { term, height, hash, qc, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_COMMIT_NOTICE);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        preimage.extend_from_slice(&self.height.to_be_bytes());
        preimage.extend_from_slice(self.hash.as_slice());
        preimage.extend_from_slice(keccak256(alloy_rlp::encode(&self.qc)).as_slice());
        keccak256(preimage)
    }
}

/// The leader of `term` is alive; it is deciding `height`.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct Heartbeat {
    /// The leader's term.
    pub term: u64,
    /// The height the leader is deciding.
    pub height: u64,
    /// The leader's signature.
    pub signature: Bytes,
}

impl Heartbeat {
    /// A signed heartbeat.
    pub fn new(key: &NodeKey, term: u64, height: u64) -> Self {
        let mut message = Self { term, height, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_HEARTBEAT);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        preimage.extend_from_slice(&self.height.to_be_bytes());
        keccak256(preimage)
    }
}

/// The answer to a leader's message of an older term: "I am in `term`". It makes a leader that
/// missed a newer term step down, so a node whose term moved ahead (it campaigned while cut off)
/// is not locked out by a leader it can no longer follow.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct StaleTerm {
    /// The sender's current term.
    pub term: u64,
    /// The sender's signature.
    pub signature: Bytes,
}

impl StaleTerm {
    /// A signed answer.
    pub fn new(key: &NodeKey, term: u64) -> Self {
        let mut message = Self { term, signature: Bytes::new() };
        message.signature = key.sign(&message.signing_hash());
        message
    }

    fn signing_hash(&self) -> B256 {
        let mut preimage = preimage(KIND_STALE_TERM);
        preimage.extend_from_slice(&self.term.to_be_bytes());
        keccak256(preimage)
    }
}

fn preimage(kind: u8) -> Vec<u8> {
    let mut preimage = Vec::with_capacity(MESSAGE_DOMAIN.len() + 1 + 3 * 32);
    preimage.extend_from_slice(MESSAGE_DOMAIN);
    preimage.push(kind);
    preimage
}

/// A Raft message. On the wire: the RLP list `[kind, body]`, where `kind` is one byte and `body`
/// the RLP list of the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RaftMessage {
    /// A (pre-)vote request.
    RequestVote(RequestVote),
    /// A (pre-)vote answer.
    VoteReply(VoteReply),
    /// A block proposal (boxed: it carries the whole block).
    Append(Box<Append>),
    /// A commit vote for a proposal.
    Ack(Ack),
    /// A commit with its certificate.
    CommitNotice(CommitNotice),
    /// The leader is alive.
    Heartbeat(Heartbeat),
    /// A leader's message came from an older term.
    StaleTerm(StaleTerm),
}

impl RaftMessage {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            Self::RequestVote(_) => KIND_REQUEST_VOTE,
            Self::VoteReply(_) => KIND_VOTE_REPLY,
            Self::Append(_) => KIND_APPEND,
            Self::Ack(_) => KIND_ACK,
            Self::CommitNotice(_) => KIND_COMMIT_NOTICE,
            Self::Heartbeat(_) => KIND_HEARTBEAT,
            Self::StaleTerm(_) => KIND_STALE_TERM,
        }
    }

    /// The term the message was sent in.
    pub fn term(&self) -> u64 {
        match self {
            Self::RequestVote(m) => m.term,
            Self::VoteReply(m) => m.term,
            Self::Append(m) => m.term,
            Self::Ack(m) => m.term,
            Self::CommitNotice(m) => m.term,
            Self::Heartbeat(m) => m.term,
            Self::StaleTerm(m) => m.term,
        }
    }

    /// Whether `signer` signed this message.
    pub fn verify_signature(&self, signer: &NodeId) -> bool {
        let (hash, signature) = match self {
            Self::RequestVote(m) => (m.signing_hash(), &m.signature),
            Self::VoteReply(m) => (m.signing_hash(), &m.signature),
            Self::Append(m) => (m.signing_hash(), &m.signature),
            Self::Ack(m) => (m.signing_hash(), &m.signature),
            Self::CommitNotice(m) => (m.signing_hash(), &m.signature),
            Self::Heartbeat(m) => (m.signing_hash(), &m.signature),
            Self::StaleTerm(m) => (m.signing_hash(), &m.signature),
        };
        verify_node_signature(signer, &hash, signature)
    }

    /// Decodes exactly one message from `bytes`: rejects oversize input, unknown kinds and trailing
    /// bytes.
    pub fn decode_exact(bytes: &[u8]) -> alloy_rlp::Result<Self> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(alloy_rlp::Error::Custom("raft message too large"));
        }
        let mut buf = bytes;
        let message = Self::decode(&mut buf)?;
        if !buf.is_empty() {
            return Err(alloy_rlp::Error::Custom("trailing bytes after raft message"));
        }
        Ok(message)
    }

    fn body_length(&self) -> usize {
        match self {
            Self::RequestVote(m) => m.length(),
            Self::VoteReply(m) => m.length(),
            Self::Append(m) => m.length(),
            Self::Ack(m) => m.length(),
            Self::CommitNotice(m) => m.length(),
            Self::Heartbeat(m) => m.length(),
            Self::StaleTerm(m) => m.length(),
        }
    }

    fn payload_length(&self) -> usize {
        self.kind().length() + self.body_length()
    }
}

impl Encodable for RaftMessage {
    fn encode(&self, out: &mut dyn BufMut) {
        Header { list: true, payload_length: self.payload_length() }.encode(out);
        self.kind().encode(out);
        match self {
            Self::RequestVote(m) => m.encode(out),
            Self::VoteReply(m) => m.encode(out),
            Self::Append(m) => m.encode(out),
            Self::Ack(m) => m.encode(out),
            Self::CommitNotice(m) => m.encode(out),
            Self::Heartbeat(m) => m.encode(out),
            Self::StaleTerm(m) => m.encode(out),
        }
    }

    fn length(&self) -> usize {
        let payload_length = self.payload_length();
        Header { list: true, payload_length }.length() + payload_length
    }
}

impl Decodable for RaftMessage {
    fn decode(buf: &mut &[u8]) -> alloy_rlp::Result<Self> {
        let mut payload = Header::decode_bytes(buf, true)?;
        let kind = u8::decode(&mut payload)?;
        let message = match kind {
            KIND_REQUEST_VOTE => Self::RequestVote(RequestVote::decode(&mut payload)?),
            KIND_VOTE_REPLY => Self::VoteReply(VoteReply::decode(&mut payload)?),
            KIND_APPEND => Self::Append(Box::new(Append::decode(&mut payload)?)),
            KIND_ACK => Self::Ack(Ack::decode(&mut payload)?),
            KIND_COMMIT_NOTICE => Self::CommitNotice(CommitNotice::decode(&mut payload)?),
            KIND_HEARTBEAT => Self::Heartbeat(Heartbeat::decode(&mut payload)?),
            KIND_STALE_TERM => Self::StaleTerm(StaleTerm::decode(&mut payload)?),
            _ => return Err(alloy_rlp::Error::Custom("unknown raft message kind")),
        };
        if !payload.is_empty() {
            return Err(alloy_rlp::Error::Custom("trailing bytes inside raft message"));
        }
        Ok(message)
    }
}
