//! The consensus node set and quorum certificate verification.

use alloy_primitives::B256;
use bcos_sdk::{crypto::verify_node_signature, types::QuorumCertificate};

/// A node's id: its Ed25519 public key.
pub type NodeId = B256;

/// Why a quorum certificate does not commit a block.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QcError {
    /// The certificate is for another block.
    #[error("certificate is for block {got}, expected {expected}")]
    WrongBlock {
        /// Hash the certificate signs.
        got: B256,
        /// Hash of the block it came with.
        expected: B256,
    },
    /// A vote comes from a node outside the consensus node set.
    #[error("vote from {0}, which is not a consensus node")]
    NotAMember(NodeId),
    /// A node voted twice.
    #[error("node {0} voted twice")]
    DuplicateVote(NodeId),
    /// A signature does not verify.
    #[error("invalid signature from {0}")]
    BadSignature(NodeId),
    /// Too few valid votes.
    #[error("{got} votes, {needed} needed")]
    TooFewVotes {
        /// Valid votes.
        got: usize,
        /// Quorum.
        needed: usize,
    },
}

/// A quorum certificate that has been checked against a node set. Only
/// [`Validators::verify_qc`] constructs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedQc(QuorumCertificate);

impl VerifiedQc {
    /// The certificate.
    pub fn qc(&self) -> &QuorumCertificate {
        &self.0
    }

    /// Gives the certificate back.
    pub fn into_inner(self) -> QuorumCertificate {
        self.0
    }
}

/// The consensus node set in force at some height, in canonical (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    nodes: Vec<NodeId>,
}

impl Validators {
    /// A node set; `None` when empty. Order and duplicates in `nodes` do not matter.
    pub fn new(mut nodes: Vec<NodeId>) -> Option<Self> {
        nodes.sort();
        nodes.dedup();
        (!nodes.is_empty()).then_some(Self { nodes })
    }

    /// Number of nodes, n.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a node set has at least one node.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The nodes in canonical order.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Whether `node` belongs to the set.
    pub fn contains(&self, node: &NodeId) -> bool {
        self.nodes.binary_search(node).is_ok()
    }

    /// Byzantine faults tolerated: f = ⌊(n − 1) / 3⌋.
    pub fn max_faulty(&self) -> usize {
        (self.len() - 1) / 3
    }

    /// Votes PBFT needs: n − f (2f + 1 when n = 3f + 1). Any two such quorums share an honest
    /// node.
    pub fn bft_quorum(&self) -> usize {
        self.len() - self.max_faulty()
    }

    /// Votes Raft needs: a strict majority, ⌊n / 2⌋ + 1.
    pub fn majority(&self) -> usize {
        self.len() / 2 + 1
    }

    /// The node at a rotating position: `(offset) mod n`. Leaders are chosen with it.
    pub fn at(&self, offset: u64) -> NodeId {
        self.nodes[(offset % self.len() as u64) as usize]
    }

    /// Checks that `qc` commits `block_hash` with at least `quorum` valid votes of this set.
    pub fn verify_qc(&self, qc: QuorumCertificate, block_hash: B256, quorum: usize) -> Result<VerifiedQc, QcError> {
        if qc.block_hash != block_hash {
            return Err(QcError::WrongBlock { got: qc.block_hash, expected: block_hash });
        }
        let message = QuorumCertificate::signing_message(qc.block_hash, qc.number, qc.round);
        let mut seen = Vec::with_capacity(qc.votes.len());
        for vote in &qc.votes {
            if !self.contains(&vote.node_id) {
                return Err(QcError::NotAMember(vote.node_id));
            }
            if seen.contains(&vote.node_id) {
                return Err(QcError::DuplicateVote(vote.node_id));
            }
            if !verify_node_signature(&vote.node_id, &message, &vote.signature) {
                return Err(QcError::BadSignature(vote.node_id));
            }
            seen.push(vote.node_id);
        }
        if seen.len() < quorum {
            return Err(QcError::TooFewVotes { got: seen.len(), needed: quorum });
        }
        Ok(VerifiedQc(qc))
    }
}

#[cfg(test)]
mod tests {
    use bcos_sdk::{crypto::NodeKey, types::Vote};

    use super::*;

    fn set(n: usize) -> Validators {
        Validators::new((0..n).map(|i| B256::with_last_byte(i as u8 + 1)).collect()).expect("non-empty")
    }

    /// `testdata/quorum.txt`: `n f bft_quorum majority`, one node-set size per line.
    #[test]
    fn quorum_arithmetic_matches_the_table() {
        let table = include_str!("../testdata/quorum.txt");
        let mut rows = 0;
        for line in table.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
            let numbers: Vec<usize> = line.split_whitespace().map(|x| x.parse().expect("number")).collect();
            let [n, f, bft, majority] = numbers[..] else { panic!("bad row {line:?}") };
            let validators = set(n);
            assert_eq!(
                (validators.max_faulty(), validators.bft_quorum(), validators.majority()),
                (f, bft, majority),
                "n = {n}"
            );
            // Two BFT quorums always overlap in more than f nodes, so in an honest one.
            assert!(2 * bft > n + f, "n = {n}");
            rows += 1;
        }
        assert!(rows >= 10);
    }

    #[test]
    fn certificates_need_a_quorum_of_distinct_members() {
        let keys: Vec<NodeKey> = (0..4).map(|_| NodeKey::generate()).collect();
        let validators = Validators::new(keys.iter().map(NodeKey::node_id).collect()).expect("set");
        let hash = B256::repeat_byte(7);
        let vote = |key: &NodeKey| Vote {
            node_id: key.node_id(),
            signature: key.sign(&QuorumCertificate::signing_message(hash, 5, 1)),
        };
        let qc = |votes: Vec<Vote>| QuorumCertificate { block_hash: hash, number: 5, round: 1, votes };
        let three: Vec<Vote> = keys[..3].iter().map(vote).collect();
        assert!(validators.verify_qc(qc(three.clone()), hash, 3).is_ok());
        assert_eq!(
            validators.verify_qc(qc(three[..2].to_vec()), hash, 3),
            Err(QcError::TooFewVotes { got: 2, needed: 3 })
        );
        let doubled = vec![three[0].clone(), three[0].clone(), three[1].clone()];
        assert_eq!(validators.verify_qc(qc(doubled), hash, 3), Err(QcError::DuplicateVote(keys[0].node_id())));
        let outsider = NodeKey::generate();
        let mut foreign = three.clone();
        foreign[2] = vote(&outsider);
        assert_eq!(validators.verify_qc(qc(foreign), hash, 3), Err(QcError::NotAMember(outsider.node_id())));
        let mut forged = three.clone();
        forged[1].signature = three[0].signature.clone();
        assert_eq!(validators.verify_qc(qc(forged), hash, 3), Err(QcError::BadSignature(keys[1].node_id())));
        assert!(matches!(validators.verify_qc(qc(three), B256::ZERO, 3), Err(QcError::WrongBlock { .. })));
    }
}
