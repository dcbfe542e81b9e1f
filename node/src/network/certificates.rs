//! Admission by certificate: after Noise proves which key a peer holds, both sides send their
//! versions and certificate chain on `/bcos/admission/2` (the chain alone on `/bcos/admission/1`,
//! to peers of the first release; see [`super::hello`]). A peer is only admitted once it speaks a
//! protocol version this node speaks and its chain verifies.
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

use super::{
    NetworkError, NodeId,
    hello::{MAX_HELLO_LEN, PeerVersion, decode_hello, encode_hello},
};
use crate::version::{NodeVersion, ProtocolRange};

/// Largest admission message: the hello, then the chain's certificates, each with its length
/// prefix.
pub(crate) const MAX_ADMISSION_MESSAGE: usize = MAX_HELLO_LEN + CHAIN_LEN * (4 + MAX_CERT_LEN);
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

/// Why a peer was refused admission; `metric_label` names it in
/// `bcos_network_refused_connections_total`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AdmissionRefusal {
    /// No chain arrived within [`ADMISSION_TIMEOUT`].
    #[error("no certificate presented within {ADMISSION_TIMEOUT:?}")]
    NoCertificate,
    /// The hello before the chain does not decode.
    #[error("malformed hello: {0}")]
    BadHello(String),
    /// The peer speaks no protocol version this node speaks.
    #[error(
        "peer{} speaks protocol versions {theirs}, this node {ours}: no version in common",
        software.as_ref().map(|s| format!(" (version {s})")).unwrap_or_default()
    )]
    IncompatibleProtocol {
        /// What this node speaks.
        ours: ProtocolRange,
        /// What the peer speaks.
        theirs: ProtocolRange,
        /// The peer's software version, when it said.
        software: Option<String>,
    },
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

impl AdmissionRefusal {
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            Self::NoCertificate => "no_certificate",
            Self::BadHello(_) => "bad_hello",
            Self::IncompatibleProtocol { .. } => "incompatible_protocol",
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
pub(crate) fn encode_chain(chain: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(chain.iter().map(|c| 4 + c.len()).sum());
    for cert in chain {
        out.extend_from_slice(&u32::try_from(cert.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(cert);
    }
    out
}

/// Decodes [`encode_chain`]'s format; at most [`CHAIN_LEN`] certificates of [`MAX_CERT_LEN`].
fn decode_chain(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>, AdmissionRefusal> {
    let mut chain = Vec::with_capacity(CHAIN_LEN);
    while !bytes.is_empty() {
        if chain.len() == CHAIN_LEN {
            return Err(AdmissionRefusal::Malformed(format!("more than {CHAIN_LEN} certificates")));
        }
        let (len, rest) =
            bytes.split_first_chunk::<4>().ok_or_else(|| AdmissionRefusal::Malformed("truncated".into()))?;
        let len = u32::from_be_bytes(*len) as usize;
        if len > MAX_CERT_LEN {
            return Err(AdmissionRefusal::Malformed(format!("a certificate of {len} bytes exceeds {MAX_CERT_LEN}")));
        }
        let (cert, rest) = rest.split_at_checked(len).ok_or_else(|| AdmissionRefusal::Malformed("truncated".into()))?;
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
    /// The protocol versions this node speaks.
    protocol: ProtocolRange,
    own_message: Bytes,
    /// Connected peers that have not presented a valid chain yet, with their deadline.
    pending: HashMap<PeerId, Instant>,
    certified: HashMap<PeerId, Certified>,
}

impl CertificateGate {
    /// A gate presenting `certificates` and `version` to every peer.
    pub(crate) fn new(certificates: Certificates, version: &NodeVersion) -> Self {
        let own_message = Bytes::from([encode_hello(version), encode_chain(&certificates.chain)].concat());
        Self {
            certificates,
            protocol: version.protocol(),
            own_message,
            pending: HashMap::new(),
            certified: HashMap::new(),
        }
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

    /// Checks the versions and verifies the chain `peer` (which proved it holds `node`'s key)
    /// presented. `Ok(Some(version))`: the peer is admitted now and speaks `version`;
    /// `Ok(None)`: it was not waiting for admission (a repeated message), nothing changes. On
    /// `Err` the caller drops the peer.
    pub(crate) fn present(
        &mut self,
        peer: PeerId,
        node: NodeId,
        message: &[u8],
        now: SystemTime,
    ) -> Result<Option<PeerVersion>, AdmissionRefusal> {
        if !self.pending.contains_key(&peer) {
            return Ok(None);
        }
        let (hello, chain) = decode_hello(message).map_err(AdmissionRefusal::BadHello)?;
        let protocol = self.protocol.common(hello.protocol).ok_or_else(|| AdmissionRefusal::IncompatibleProtocol {
            ours: self.protocol,
            theirs: hello.protocol,
            software: hello.software.clone(),
        })?;
        let chain = decode_chain(chain)?;
        let verified = self.verify(node, &chain, now)?;
        self.pending.remove(&peer);
        self.certified.insert(peer, Certified { node, chain, not_after: verified.not_after() });
        Ok(Some(PeerVersion { software: hello.software, protocol }))
    }

    fn verify(&self, node: NodeId, chain: &[Vec<u8>], now: SystemTime) -> Result<VerifiedNode, AdmissionRefusal> {
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let verified = verify_node_chain(&self.certificates.ca, &refs, now, &self.certificates.revoked)
            .map_err(|e| AdmissionRefusal::from_pki(&e))?;
        if *verified.node_id() != node {
            return Err(AdmissionRefusal::KeyMismatch { certified: *verified.node_id(), peer: node });
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
    pub(crate) fn recheck(&mut self, now: SystemTime) -> Vec<(PeerId, AdmissionRefusal)> {
        let refused: Vec<(PeerId, AdmissionRefusal)> = self
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
    use crate::{network::identity::peer_id_of, version::PROTOCOL_VERSION};

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
            self.gate_of(revoked, &NodeVersion::this_build())
        }

        /// A gate of a node of this org running `version`.
        fn gate_of(&self, revoked: RevocationList, version: &NodeVersion) -> CertificateGate {
            let own = NodeKey::generate().node_id();
            let certificates =
                Certificates { ca: self.ca.cert().der().to_vec(), chain: self.chain(&own, year()), revoked };
            CertificateGate::new(certificates, version)
        }
    }

    /// The admission message of a node of this build presenting `chain`.
    fn message(chain: &[Vec<u8>]) -> Vec<u8> {
        with_hello(&encode_chain(chain))
    }

    /// `rest` after this build's hello.
    fn with_hello(rest: &[u8]) -> Vec<u8> {
        [encode_hello(&NodeVersion::this_build()).as_slice(), rest].concat()
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

        let valid = message(&org.chain(&id, year()));
        assert_eq!(gate.present(peer, id, &valid, wall), Ok(None), "not connected: nothing to admit");
        gate.connected(peer, now);
        assert!(gate.is_pending(&peer));
        let admitted = Some(PeerVersion { software: Some(bcos_sdk::VERSION.to_owned()), protocol: PROTOCOL_VERSION });
        assert_eq!(gate.present(peer, id, &valid, wall), Ok(admitted));
        assert!(!gate.is_pending(&peer));
        assert_eq!(gate.present(peer, id, &valid, wall), Ok(None), "a repeat changes nothing");

        let refuse = |gate: &mut CertificateGate, message: &[u8]| {
            let (id, peer) = node();
            gate.connected(peer, now);
            let refusal = gate.present(peer, id, message, wall).expect_err("refused");
            assert!(gate.is_pending(&peer), "still pending until the caller drops it");
            refusal.metric_label()
        };
        let (other, _) = node();
        let foreign = Org::new("another chain");
        assert_eq!(refuse(&mut gate, &message(&foreign.chain(&id, year()))), "foreign_ca");
        assert_eq!(refuse(&mut gate, &message(&org.chain(&other, year()))), "key_mismatch");
        let expired = Validity::starting(SystemTime::now() - 3 * DAY, DAY);
        assert_eq!(refuse(&mut gate, &message(&org.chain(&id, expired))), "certificate_expired");
        let future = Validity::starting(SystemTime::now() + DAY, DAY);
        assert_eq!(refuse(&mut gate, &message(&org.chain(&id, future))), "certificate_not_yet_valid");
        assert_eq!(refuse(&mut gate, &with_hello(b"\x00\x00\x00\x05abc")), "bad_certificate");
        assert_eq!(refuse(&mut gate, &message(&[vec![1; 10], vec![2; 10], vec![3; 10]])), "bad_certificate");
        assert_eq!(refuse(&mut gate, &message(&[vec![0x30; 10]])), "bad_certificate");
        assert_eq!(refuse(&mut gate, &with_hello(&[0xff, 0xff, 0xff, 0xff])), "bad_certificate");
        assert_eq!(refuse(&mut gate, &[0xff, 0xff, 0xff, 0xff]), "bad_hello");
    }

    #[test]
    fn peers_are_admitted_only_with_a_protocol_version_in_common() {
        let org = Org::new("chain");
        let range = |min, max| ProtocolRange { min, max };
        // This node speaks 1 and 2, as the release after the first would.
        let mut gate = org.gate_of(RevocationList::default(), &NodeVersion::this_build().speaking(range(1, 2)));
        let present = |gate: &mut CertificateGate, protocol: ProtocolRange, software: &str| {
            let (id, peer) = node();
            gate.connected(peer, Instant::now());
            let version = NodeVersion::this_build().reporting(software).expect("valid").speaking(protocol);
            let message = [encode_hello(&version), encode_chain(&org.chain(&id, year()))].concat();
            gate.present(peer, id, &message, SystemTime::now())
        };
        let admitted =
            |software: Option<&str>, protocol| Ok(Some(PeerVersion { software: software.map(Into::into), protocol }));
        assert_eq!(present(&mut gate, range(1, 1), "1.0.0"), admitted(Some("1.0.0"), 1), "the release before");
        assert_eq!(present(&mut gate, range(1, 2), "1.1.0"), admitted(Some("1.1.0"), 2), "the same release");
        assert_eq!(present(&mut gate, range(2, 3), "1.2.0"), admitted(Some("1.2.0"), 2), "the release after");
        let refusal = present(&mut gate, range(3, 4), "2.0.0").expect_err("nothing in common");
        assert_eq!(refusal.metric_label(), "incompatible_protocol");
        assert_eq!(
            refusal.to_string(),
            "peer (version 2.0.0) speaks protocol versions 3-4, this node 1-2: no version in common"
        );

        // A first-release peer's message, as the admission codec hands it over.
        let (id, peer) = node();
        gate.connected(peer, Instant::now());
        let first = [[0, 0, 0, 1, 0, 0, 0, 1, 0].as_slice(), &encode_chain(&org.chain(&id, year()))].concat();
        assert_eq!(gate.present(peer, id, &first, SystemTime::now()), admitted(None, 1));
        // A node that dropped protocol 1 refuses it.
        let mut newer = org.gate_of(RevocationList::default(), &NodeVersion::this_build().speaking(range(2, 2)));
        newer.connected(peer, Instant::now());
        let refusal = newer.present(peer, id, &first, SystemTime::now()).expect_err("refused");
        assert_eq!(refusal.to_string(), "peer speaks protocol versions 1, this node 2: no version in common");
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
            assert_eq!(gate.present(peer, id, &message(&chain), wall).map(|v| v.is_some()), Ok(true));
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
        assert_eq!(
            gate.present(peer, id, &message(&org.chain(&id, year())), SystemTime::now()).map(|v| v.is_some()),
            Ok(true)
        );
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
