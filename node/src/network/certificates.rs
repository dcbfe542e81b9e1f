//! Admission by certificate: after Noise proves which key a peer holds, both sides send their
//! certificate chain on `/bcos/admission/1`, and a peer is only admitted once its chain verifies.
//!
//! The [`CertificateGate`] is a pure state machine over instants and wall-clock time, so every
//! rule is tested without sockets; the network task feeds it connections and chains, and asks it
//! which peers to drop. A peer's chain is kept after it verified, so that a change of the
//! revocation list or the passing of a certificate's expiry re-runs the whole verification
//! (member CA included) and drops the peer at once.

use std::{
    collections::HashMap,
    time::{Duration, Instant, SystemTime},
};

use alloy_primitives::Bytes;
use bcos_sdk::pki::{CHAIN_LEN, MAX_CERT_LEN, PkiError, RevocationList, VerifiedNode, verify_node_chain};
use libp2p::PeerId;

use super::{NetworkError, NodeId};

/// Largest admission message: the chain's certificates, each with its length prefix.
pub(crate) const MAX_ADMISSION_MESSAGE: usize = CHAIN_LEN * (4 + MAX_CERT_LEN);
/// How long a connected peer has to present a chain that verifies.
pub const ADMISSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The node's own certificates and what peers' certificates are checked against.
#[derive(Debug, Clone)]
pub struct Certificates {
    /// The chain CA certificate (DER) named by genesis.
    pub ca: Vec<u8>,
    /// This node's chain, `[member CA, node]` (DER), sent to every peer.
    pub chain: Vec<Vec<u8>>,
    /// Revoked serials from the on-chain revocation list; after it changes, call
    /// [`recheck_certificates`](super::NetworkHandle::recheck_certificates).
    pub revoked: RevocationList,
}

impl Certificates {
    /// Checks this node's own chain as its peers will; the node checks it before it starts, so
    /// an expired, foreign or mismatched certificate stops it with a clear error instead of
    /// having it refused by everyone.
    pub fn verify_own(&self, node: &NodeId, now: SystemTime) -> Result<VerifiedNode, NetworkError> {
        let own = |e: PkiError| NetworkError::InvalidConfig(format!("this node's certificate: {e}"));
        let verified = verify_node_chain(&self.ca, &self.chain_refs(), now, &self.revoked).map_err(own)?;
        if verified.node_id() != node {
            return Err(NetworkError::InvalidConfig(format!(
                "this node's certificate certifies node {} but the node key is {node}",
                verified.node_id()
            )));
        }
        Ok(verified)
    }

    fn chain_refs(&self) -> Vec<&[u8]> {
        self.chain.iter().map(Vec::as_slice).collect()
    }
}

/// Why a peer's certificate was refused; `metric_label` names it in
/// `bcos_network_refused_connections_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertRefusal {
    /// No chain arrived within [`ADMISSION_TIMEOUT`].
    #[error("no certificate presented within {ADMISSION_TIMEOUT:?}")]
    NoCertificate,
    /// The admission message is not a sequence of length-prefixed certificates.
    #[error("malformed admission message: {0}")]
    Malformed(String),
    /// The chain does not verify.
    #[error("{0}")]
    Invalid(String, &'static str),
    /// The chain verifies but certifies another key than the one the peer proved in Noise.
    #[error("certificate is for node {certified}, but the peer holds the key of {peer}")]
    KeyMismatch {
        /// The certified node id.
        certified: NodeId,
        /// The node id the peer proved.
        peer: NodeId,
    },
}

impl CertRefusal {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::Malformed(_) => "bad_certificate",
            Self::Invalid(_, label) => label,
            Self::KeyMismatch { .. } => "key_mismatch",
        }
    }

    fn from_pki(error: &PkiError) -> Self {
        let label = match error {
            PkiError::Expired { .. } => "certificate_expired",
            PkiError::NotYetValid { .. } => "certificate_not_yet_valid",
            PkiError::Revoked { .. } => "certificate_revoked",
            PkiError::IssuerMismatch { .. } | PkiError::BadSignature { .. } => "foreign_ca",
            _ => "bad_certificate",
        };
        Self::Invalid(error.to_string(), label)
    }
}

/// Encodes a chain for the wire: each certificate with a 4-byte big-endian length.
pub(crate) fn encode_chain(chain: &[Vec<u8>]) -> Bytes {
    let mut out = Vec::with_capacity(chain.iter().map(|c| 4 + c.len()).sum());
    for cert in chain {
        out.extend_from_slice(&u32::try_from(cert.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(cert);
    }
    Bytes::from(out)
}

/// Decodes [`encode_chain`]'s format; at most [`CHAIN_LEN`] certificates of [`MAX_CERT_LEN`].
fn decode_chain(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, CertRefusal> {
    let mut chain = Vec::with_capacity(CHAIN_LEN);
    while !bytes.is_empty() {
        if chain.len() == CHAIN_LEN {
            return Err(CertRefusal::Malformed(format!("more than {CHAIN_LEN} certificates")));
        }
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(|| CertRefusal::Malformed("truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > MAX_CERT_LEN {
            return Err(CertRefusal::Malformed(format!("a certificate of {len} bytes exceeds {MAX_CERT_LEN}")));
        }
        let (cert, rest) = rest.split_at_checked(len).ok_or_else(|| CertRefusal::Malformed("truncated".into()))?;
        chain.push(cert.to_vec());
        bytes = rest;
    }
    Ok(chain)
}

/// A peer whose chain verified.
#[derive(Debug)]
struct Certified {
    node: NodeId,
    chain: Vec<Vec<u8>>,
    not_after: SystemTime,
}

/// Tracks which connected peers still owe a certificate and which presented one that verified.
#[derive(Debug)]
pub(crate) struct CertificateGate {
    certificates: Certificates,
    own_message: Bytes,
    /// Connected peers that have not presented a valid chain yet, with their deadline.
    pending: HashMap<PeerId, Instant>,
    certified: HashMap<PeerId, Certified>,
}

impl CertificateGate {
    pub(crate) fn new(certificates: Certificates) -> Self {
        let own_message = encode_chain(&certificates.chain);
        Self { certificates, own_message, pending: HashMap::new(), certified: HashMap::new() }
    }

    /// What this node sends every new peer.
    pub(crate) fn own_message(&self) -> Bytes {
        self.own_message.clone()
    }

    /// `peer` got its first connection: it has until `now + ADMISSION_TIMEOUT` to present a
    /// chain.
    pub(crate) fn connected(&mut self, peer: PeerId, now: Instant) {
        self.certified.remove(&peer);
        self.pending.insert(peer, now + ADMISSION_TIMEOUT);
    }

    /// `peer` lost its last connection.
    pub(crate) fn disconnected(&mut self, peer: &PeerId) {
        self.pending.remove(peer);
        self.certified.remove(peer);
    }

    /// Whether `peer` is connected and still owes its chain.
    pub(crate) fn is_pending(&self, peer: &PeerId) -> bool {
        self.pending.contains_key(peer)
    }

    /// Verifies the chain `peer` (which proved it holds `node`'s key) presented. `Ok(true)`:
    /// the peer is admitted now; `Ok(false)`: it was not waiting for admission (a repeated
    /// message), nothing changes. On `Err` the caller drops the peer.
    pub(crate) fn present(
        &mut self,
        peer: PeerId,
        node: NodeId,
        message: &[u8],
        now: SystemTime,
    ) -> Result<bool, CertRefusal> {
        if !self.pending.contains_key(&peer) {
            return Ok(false);
        }
        let chain = decode_chain(message)?;
        let verified = self.verify(node, &chain, now)?;
        self.pending.remove(&peer);
        self.certified.insert(peer, Certified { node, chain, not_after: verified.not_after() });
        Ok(true)
    }

    fn verify(&self, node: NodeId, chain: &[Vec<u8>], now: SystemTime) -> Result<VerifiedNode, CertRefusal> {
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let verified = verify_node_chain(&self.certificates.ca, &refs, now, &self.certificates.revoked)
            .map_err(|e| CertRefusal::from_pki(&e))?;
        if *verified.node_id() != node {
            return Err(CertRefusal::KeyMismatch { certified: *verified.node_id(), peer: node });
        }
        Ok(verified)
    }

    /// Peers past their deadline without a valid chain; they are forgotten here.
    pub(crate) fn overdue(&mut self, now: Instant) -> Vec<PeerId> {
        let overdue: Vec<PeerId> =
            self.pending.iter().filter(|(_, deadline)| **deadline <= now).map(|(peer, _)| *peer).collect();
        for peer in &overdue {
            self.pending.remove(peer);
        }
        overdue
    }

    /// Re-verifies every admitted peer's chain (after a revocation list change, or when a
    /// certificate expires) and forgets and returns those that no longer pass.
    pub(crate) fn recheck(&mut self, now: SystemTime) -> Vec<(PeerId, CertRefusal)> {
        let refused: Vec<(PeerId, CertRefusal)> = self
            .certified
            .iter()
            .filter_map(|(peer, certified)| {
                self.verify(certified.node, &certified.chain, now).err().map(|refusal| (*peer, refusal))
            })
            .collect();
        for (peer, _) in &refused {
            self.certified.remove(peer);
        }
        refused
    }

    /// When the next thing is due: a pending peer's deadline or an admitted certificate's
    /// expiry (as an instant on the monotonic clock).
    pub(crate) fn next_due(&self, now: Instant, wall: SystemTime) -> Option<Instant> {
        let expiry = self
            .certified
            .values()
            .map(|c| now + c.not_after.duration_since(wall).unwrap_or_default())
            .min()
            .map(|at| at + Duration::from_secs(1));
        self.pending.values().copied().chain(expiry).min()
    }

    /// Whether an admitted certificate has expired by `wall`.
    pub(crate) fn any_expired(&self, wall: SystemTime) -> bool {
        self.certified.values().any(|c| c.not_after < wall)
    }
}

#[cfg(test)]
mod tests {
    use bcos_sdk::{
        crypto::NodeKey,
        pki::{ChainCa, Member, MemberCa, Validity},
    };

    use super::*;
    use crate::network::identity::peer_id_of;

    const DAY: Duration = Duration::from_secs(86_400);

    struct Org {
        ca: ChainCa,
        member: MemberCa,
    }

    impl Org {
        fn new(chain: &str) -> Self {
            let validity = Validity::starting(SystemTime::now() - DAY, 10 * DAY);
            let ca = ChainCa::generate(chain, validity).expect("ca");
            let member =
                ca.issue_member_ca(&Member { name: "Bank".into(), id: "bank".into() }, validity).expect("member");
            Self { ca, member }
        }

        fn chain(&self, node: &NodeId, validity: Validity) -> Vec<Vec<u8>> {
            let cert = self.member.issue_node(node, validity).expect("node cert");
            vec![self.member.cert().der().to_vec(), cert.der().to_vec()]
        }

        fn gate(&self) -> CertificateGate {
            self.gate_with(RevocationList::default())
        }

        /// A gate of a node of this org, reading revocations from `revoked`.
        fn gate_with(&self, revoked: RevocationList) -> CertificateGate {
            let own = NodeKey::generate().node_id();
            CertificateGate::new(Certificates {
                ca: self.ca.cert().der().to_vec(),
                chain: self.chain(&own, year()),
                revoked,
            })
        }
    }

    fn year() -> Validity {
        Validity::starting(SystemTime::now() - DAY, 365 * DAY)
    }

    fn node() -> (NodeId, PeerId) {
        let id = NodeKey::generate().node_id();
        (id, peer_id_of(&id).expect("valid"))
    }

    #[test]
    fn a_valid_chain_admits_once_and_the_rest_are_refused_with_their_reason() {
        let org = Org::new("chain");
        let mut gate = org.gate();
        let (id, peer) = node();
        let (now, wall) = (Instant::now(), SystemTime::now());

        let message = encode_chain(&org.chain(&id, year()));
        assert_eq!(gate.present(peer, id, &message, wall), Ok(false), "not connected: nothing to admit");
        gate.connected(peer, now);
        assert!(gate.is_pending(&peer));
        assert_eq!(gate.present(peer, id, &message, wall), Ok(true));
        assert!(!gate.is_pending(&peer));
        assert_eq!(gate.present(peer, id, &message, wall), Ok(false), "a repeat changes nothing");

        let refuse = |gate: &mut CertificateGate, message: &[u8]| {
            let (id, peer) = node();
            gate.connected(peer, now);
            let refusal = gate.present(peer, id, message, wall).expect_err("refused");
            assert!(gate.is_pending(&peer), "still pending until the caller drops it");
            refusal.metric_label()
        };
        let (other, _) = node();
        let foreign = Org::new("another chain");
        assert_eq!(refuse(&mut gate, &encode_chain(&foreign.chain(&id, year()))), "foreign_ca");
        assert_eq!(refuse(&mut gate, &encode_chain(&org.chain(&other, year()))), "key_mismatch");
        let expired = Validity::starting(SystemTime::now() - 3 * DAY, DAY);
        assert_eq!(refuse(&mut gate, &encode_chain(&org.chain(&id, expired))), "certificate_expired");
        let future = Validity::starting(SystemTime::now() + DAY, DAY);
        assert_eq!(refuse(&mut gate, &encode_chain(&org.chain(&id, future))), "certificate_not_yet_valid");
        assert_eq!(refuse(&mut gate, b"\x00\x00\x00\x05abc"), "bad_certificate");
        assert_eq!(refuse(&mut gate, &encode_chain(&[vec![1; 10], vec![2; 10], vec![3; 10]])), "bad_certificate");
        assert_eq!(refuse(&mut gate, &encode_chain(&[vec![0x30; 10]])), "bad_certificate");
        assert_eq!(refuse(&mut gate, &[0xff, 0xff, 0xff, 0xff]), "bad_certificate");
    }

    #[test]
    fn peers_without_a_chain_are_overdue_after_the_timeout() {
        let org = Org::new("chain");
        let mut gate = org.gate();
        let (_, peer) = node();
        let now = Instant::now();
        gate.connected(peer, now);
        assert_eq!(gate.next_due(now, SystemTime::now()), Some(now + ADMISSION_TIMEOUT));
        assert!(gate.overdue(now + ADMISSION_TIMEOUT - Duration::from_millis(1)).is_empty());
        assert_eq!(gate.overdue(now + ADMISSION_TIMEOUT), vec![peer]);
        assert!(!gate.is_pending(&peer));
        assert_eq!(gate.next_due(now, SystemTime::now()), None);
    }

    #[test]
    fn revocation_and_expiry_drop_admitted_peers() {
        let org = Org::new("chain");
        let revoked = RevocationList::default();
        let mut gate = org.gate_with(revoked.clone());
        let (now, wall) = (Instant::now(), SystemTime::now());
        let (a, pa) = node();
        let (b, pb) = node();
        let short = Validity::starting(wall - DAY, DAY + Duration::from_secs(60));
        let member = org.member.issue_node(&a, year()).expect("cert");
        let chain_a = vec![org.member.cert().der().to_vec(), member.der().to_vec()];
        for (peer, id, chain) in [(pa, a, chain_a), (pb, b, org.chain(&b, short))] {
            gate.connected(peer, now);
            assert_eq!(gate.present(peer, id, &encode_chain(&chain), wall), Ok(true));
        }
        assert!(gate.recheck(wall).is_empty());

        let due = gate.next_due(now, wall).expect("b expires");
        assert!(due > now + Duration::from_secs(59) && due <= now + Duration::from_secs(62), "{:?}", due - now);
        assert!(!gate.any_expired(wall));
        let later = wall + Duration::from_secs(61);
        assert!(gate.any_expired(later));
        let dropped = gate.recheck(later);
        assert_eq!(dropped.len(), 1);
        assert_eq!((dropped[0].0, dropped[0].1.metric_label()), (pb, "certificate_expired"));

        assert!(revoked.replace([member.serial().clone()]));
        let dropped = gate.recheck(wall);
        assert_eq!(
            dropped.iter().map(|(p, r)| (*p, r.metric_label())).collect::<Vec<_>>(),
            [(pa, "certificate_revoked")]
        );
        assert!(gate.recheck(wall).is_empty(), "dropped peers are forgotten");
    }

    #[test]
    fn revoking_the_member_ca_drops_its_nodes() {
        let org = Org::new("chain");
        let revoked = RevocationList::default();
        let mut gate = org.gate_with(revoked.clone());
        let (id, peer) = node();
        gate.connected(peer, Instant::now());
        assert_eq!(gate.present(peer, id, &encode_chain(&org.chain(&id, year())), SystemTime::now()), Ok(true));
        revoked.replace([org.member.cert().serial().clone()]);
        assert_eq!(gate.recheck(SystemTime::now()).len(), 1);
    }

    #[test]
    fn a_node_checks_its_own_chain() {
        let org = Org::new("chain");
        let (own, _) = node();
        let certificates = Certificates {
            ca: org.ca.cert().der().to_vec(),
            chain: org.chain(&own, year()),
            revoked: Default::default(),
        };
        assert_eq!(certificates.verify_own(&own, SystemTime::now()).expect("valid").node_id(), &own);
        let err = certificates.verify_own(&node().0, SystemTime::now()).unwrap_err().to_string();
        assert!(err.contains("certifies node"), "{err}");
        let err = certificates.verify_own(&own, SystemTime::now() + 400 * DAY).unwrap_err().to_string();
        assert!(err.contains("this node's certificate: ") && err.contains("expired"), "{err}");
    }
}
