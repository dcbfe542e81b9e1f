//! PKI: the chain CA certifies member (institution) CAs, which certify node and SDK-client
//! certificates.
//!
//! Data flow: the chain's operator creates a [`ChainCa`] once and issues one [`MemberCa`] per
//! institution ([`ChainCa::issue_member_ca`]). A member CA certifies its nodes' existing Ed25519
//! keys ([`MemberCa::issue_node`], subject CN = node id hex) and its SDK clients' keys
//! ([`MemberCa::issue_client`]), and the TLS certificates of its JSON-RPC endpoints
//! ([`MemberCa::issue_server`], with DNS names and IP addresses that clients check; loaded by a node
//! as a [`ServerIdentity`]). A node presents `[member CA, node]` during admission; the peer
//! checks it with [`verify_node_chain`] against the chain CA and the revocation list, and only then
//! holds a [`VerifiedNode`] whose node id it compares with the libp2p key.
//!
//! All keys are Ed25519. Certificates are X.509 v3, issued with rcgen and parsed with x509-parser;
//! CA keys are stored as PKCS#8 PEM files with mode 0600 and are never overwritten.
//!
//! Name constraints are deliberately not put into member CA certificates: the only meaningful
//! constraint here is a directoryName one (O/OU of the institution), which webpki-based TLS
//! verifiers do not support. The same rule — a leaf's O and OU equal its member CA's — is enforced
//! by the verifiers in this module instead.

use std::{
    collections::{BTreeSet, HashSet},
    fs,
    io::Write,
    path::Path,
    sync::{Arc, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use alloy_primitives::B256;
use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ED25519, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm, string::Ia5String,
};
use x509_parser::{
    certificate::X509Certificate, extensions::GeneralName, oid_registry, prelude::FromDer, x509::X509Name,
};

use crate::crypto::KeyError;

/// Length in bytes of the random serial numbers this module issues (positive, 127 random bits).
pub const SERIAL_LEN: usize = 16;

/// Maximum accepted size of one DER certificate; larger input is refused before parsing.
pub const MAX_CERT_LEN: usize = 16 * 1024;

/// Number of certificates in a node or client chain presented to a peer: member CA, leaf.
pub const CHAIN_LEN: usize = 2;

/// Most certificates in a TLS server chain file: server, member CA and, optionally, the chain CA.
pub const MAX_SERVER_CHAIN_LEN: usize = 3;

/// Most DNS names and IP addresses one server certificate carries.
pub const MAX_SERVER_NAMES: usize = 32;

/// The result type of this module.
pub type Result<T, E = PkiError> = std::result::Result<T, E>;

/// The role a certificate plays in a chain; names the offending certificate in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertRole {
    /// The self-signed chain CA.
    ChainCa,
    /// A member (institution) CA.
    MemberCa,
    /// A node certificate.
    Node,
    /// An SDK client certificate.
    Client,
    /// A TLS server certificate (the JSON-RPC endpoint's).
    Server,
}

impl std::fmt::Display for CertRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::ChainCa => "chain CA certificate",
            Self::MemberCa => "member CA certificate",
            Self::Node => "node certificate",
            Self::Client => "client certificate",
            Self::Server => "server certificate",
        })
    }
}

/// Why issuing, loading or verifying a certificate failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    // Caller errors.
    /// A key or certificate file could not be read or written, or exists already.
    #[error(transparent)]
    File(#[from] KeyError),
    /// The validity period is empty (`not_after` is not later than `not_before`).
    #[error("validity period is empty: not_after must be later than not_before")]
    EmptyValidity,
    /// A validity bound is before 1970 or beyond what X.509 can encode.
    #[error("validity bound out of range")]
    TimeOutOfRange,
    /// A name or institution id is empty or contains control characters.
    #[error("invalid {field}: {value:?}")]
    InvalidName {
        /// Which name.
        field: &'static str,
        /// The offending value.
        value: String,
    },
    /// The 32 bytes given as a node id or client key are not an Ed25519 public key.
    #[error("not an Ed25519 public key: {0}")]
    InvalidPublicKey(B256),
    /// A stored key or certificate file is unusable: not PEM, not an Ed25519 PKCS#8 key, not
    /// the expected certificates, or a key that does not match its certificate.
    #[error("{file}: {reason}")]
    BadKeyFile {
        /// The key or certificate file.
        file: String,
        /// Why.
        reason: String,
    },
    /// rcgen refused to build the certificate.
    #[error("issuing certificate: {0}")]
    Issue(String),

    // Errors in presented certificates (the peer's fault).
    /// The chain does not have the expected number of certificates.
    #[error("chain has {got} certificates, expected {expected}")]
    ChainLength {
        /// Certificates presented.
        got: usize,
        /// Certificates expected.
        expected: usize,
    },
    /// The certificate is not well-formed DER X.509 (or is too large, or has trailing data).
    #[error("{role}: malformed: {reason}")]
    Malformed {
        /// Which certificate.
        role: CertRole,
        /// Why.
        reason: String,
    },
    /// The certificate's issuer name is not its supposed issuer's subject name.
    #[error("{role}: issuer name does not match the issuing certificate's subject")]
    IssuerMismatch {
        /// Which certificate.
        role: CertRole,
    },
    /// The certificate's signature does not verify with its issuer's key.
    #[error("{role}: bad signature: {reason}")]
    BadSignature {
        /// Which certificate.
        role: CertRole,
        /// Why.
        reason: String,
    },
    /// The certificate is not valid yet.
    #[error("{role}: not valid before {not_before} (unix seconds)")]
    NotYetValid {
        /// Which certificate.
        role: CertRole,
        /// Start of validity, unix seconds.
        not_before: i64,
    },
    /// The certificate has expired.
    #[error("{role}: expired at {not_after} (unix seconds)")]
    Expired {
        /// Which certificate.
        role: CertRole,
        /// End of validity, unix seconds.
        not_after: i64,
    },
    /// The certificate must be a CA (basicConstraints CA:TRUE) but is not, or its path length
    /// constraint does not allow this chain.
    #[error("{role}: not allowed to act as a CA here")]
    NotCa {
        /// Which certificate.
        role: CertRole,
    },
    /// An end-entity certificate claims to be a CA.
    #[error("{role}: end-entity certificate must not be a CA")]
    UnexpectedCa {
        /// Which certificate.
        role: CertRole,
    },
    /// A required key usage or extended key usage is missing.
    #[error("{role}: missing key usage {usage}")]
    KeyUsage {
        /// Which certificate.
        role: CertRole,
        /// The missing usage.
        usage: &'static str,
    },
    /// The certificate carries a usage its role must not have: a node certificate (serverAuth
    /// and clientAuth) presented as an SDK client certificate.
    #[error("{role}: must not carry extended key usage {usage}")]
    UnexpectedUsage {
        /// Which certificate.
        role: CertRole,
        /// The usage it must not carry.
        usage: &'static str,
    },
    /// The certificate carries a critical extension this module does not understand.
    #[error("{role}: unsupported critical extension {oid}")]
    UnsupportedCriticalExtension {
        /// Which certificate.
        role: CertRole,
        /// The extension's OID.
        oid: String,
    },
    /// A required subject attribute is missing, duplicated or differs from the issuer's.
    #[error("{role}: bad subject: {reason}")]
    BadSubject {
        /// Which certificate.
        role: CertRole,
        /// Why.
        reason: String,
    },
    /// The certified key is not an Ed25519 public key.
    #[error("{role}: certified key is not Ed25519")]
    NotEd25519 {
        /// Which certificate.
        role: CertRole,
    },
    /// The node certificate's key is not the node id its subject names.
    #[error("node certificate certifies key {certified} but names node {claimed}")]
    NodeIdMismatch {
        /// The certified Ed25519 key.
        certified: B256,
        /// The node id in the subject CN.
        claimed: String,
    },
    /// The certificate's serial number is revoked.
    #[error("{role}: serial {serial} is revoked")]
    Revoked {
        /// Which certificate.
        role: CertRole,
        /// The revoked serial.
        serial: Serial,
    },
}

impl PkiError {
    /// Whether the error is the presenting peer's fault (bad or revoked certificates) rather than
    /// a local one (files, arguments).
    pub fn is_bad_peer(&self) -> bool {
        !matches!(
            self,
            Self::File(_)
                | Self::EmptyValidity
                | Self::TimeOutOfRange
                | Self::InvalidName { .. }
                | Self::InvalidPublicKey(_)
                | Self::BadKeyFile { .. }
                | Self::Issue(_)
        )
    }
}

fn issue_err(e: rcgen::Error) -> PkiError {
    PkiError::Issue(e.to_string())
}

/// A certificate serial number: big-endian magnitude without leading zero bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// The serial with these big-endian bytes; leading zero bytes are ignored.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Self(bytes.get(start..).unwrap_or_default().to_vec())
    }

    /// Parses lowercase or uppercase hex, with or without `0x`.
    pub fn from_hex(text: &str) -> Option<Self> {
        hex::decode(text.strip_prefix("0x").unwrap_or(text)).ok().map(|b| Self::from_bytes(&b))
    }

    /// The big-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn random() -> Self {
        let mut bytes = [0u8; SERIAL_LEN];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        // Positive, and always SERIAL_LEN bytes long once encoded.
        bytes[0] = (bytes[0] & 0x7f) | 0x40;
        Self(bytes.to_vec())
    }
}

impl std::fmt::Display for Serial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

/// The revocation check hook used by the verifiers: is this serial revoked?
pub trait Revocation {
    /// Whether a certificate with this serial must be refused.
    fn is_revoked(&self, serial: &Serial) -> bool;
}

/// Nothing is revoked.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocation;

impl Revocation for NoRevocation {
    fn is_revoked(&self, _serial: &Serial) -> bool {
        false
    }
}

impl Revocation for HashSet<Serial> {
    fn is_revoked(&self, serial: &Serial) -> bool {
        self.contains(serial)
    }
}

impl Revocation for BTreeSet<Serial> {
    fn is_revoked(&self, serial: &Serial) -> bool {
        self.contains(serial)
    }
}

impl Revocation for Vec<Serial> {
    fn is_revoked(&self, serial: &Serial) -> bool {
        self.contains(serial)
    }
}

impl<R: Revocation + ?Sized> Revocation for &R {
    fn is_revoked(&self, serial: &Serial) -> bool {
        (**self).is_revoked(serial)
    }
}

/// The chain's revoked serials as the node last read them from the on-chain revocation list,
/// shared between the network's admission, the RPC's client-certificate check and the reader
/// that refreshes it after every block. Cheap to clone; clones share one list.
#[derive(Debug, Clone, Default)]
pub struct RevocationList(Arc<RwLock<BTreeSet<Serial>>>);

impl RevocationList {
    /// Replaces the list; `true` if it changed (holders of verified certificates re-check then).
    pub fn replace(&self, serials: impl IntoIterator<Item = Serial>) -> bool {
        let serials: BTreeSet<Serial> = serials.into_iter().collect();
        let mut list = self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if *list == serials {
            return false;
        }
        *list = serials;
        true
    }

    /// The revoked serials, in order.
    pub fn serials(&self) -> Vec<Serial> {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).iter().cloned().collect()
    }
}

impl Revocation for RevocationList {
    fn is_revoked(&self, serial: &Serial) -> bool {
        self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(serial)
    }
}

/// A certificate's validity period, given by the caller at issuance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant at which the certificate is valid.
    pub not_before: SystemTime,
    /// Last instant at which the certificate is valid.
    pub not_after: SystemTime,
}

impl Validity {
    /// Valid from `not_before` for `duration`.
    pub fn starting(not_before: SystemTime, duration: Duration) -> Self {
        Self { not_before, not_after: not_before + duration }
    }

    fn apply(&self, params: &mut CertificateParams) -> Result<()> {
        if self.not_after <= self.not_before {
            return Err(PkiError::EmptyValidity);
        }
        // X.509 times have whole-second precision.
        params.not_before = to_offset(self.not_before)?;
        params.not_after = to_offset(self.not_after)?;
        Ok(())
    }
}

fn to_offset(t: SystemTime) -> Result<time::OffsetDateTime> {
    let secs = t.duration_since(UNIX_EPOCH).map_err(|_| PkiError::TimeOutOfRange)?.as_secs();
    let secs = i64::try_from(secs).map_err(|_| PkiError::TimeOutOfRange)?;
    time::OffsetDateTime::from_unix_timestamp(secs).map_err(|_| PkiError::TimeOutOfRange)
}

/// An institution: its display name (subject O) and its id (subject OU).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Member {
    /// Institution name, e.g. `Example Bank`.
    pub name: String,
    /// Institution id, e.g. `org1`.
    pub id: String,
}

fn check_name(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        return Err(PkiError::InvalidName { field, value: value.to_owned() });
    }
    Ok(())
}

impl Member {
    fn check(&self) -> Result<()> {
        check_name("institution name", &self.name)?;
        check_name("institution id", &self.id)
    }

    fn dn(&self, common_name: &str) -> DistinguishedName {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, self.name.as_str());
        dn.push(DnType::OrganizationalUnitName, self.id.as_str());
        dn.push(DnType::CommonName, common_name);
        dn
    }
}

/// An issued certificate: DER and PEM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    der: Vec<u8>,
    pem: String,
    serial: Serial,
}

impl IssuedCert {
    fn new(cert: rcgen::Certificate, serial: Serial) -> Self {
        let der = cert.der().to_vec();
        let pem = pem_encode(&der);
        Self { der, pem, serial }
    }

    fn from_der(der: Vec<u8>, role: CertRole) -> Result<Self> {
        let serial = Serial::from_bytes(parse(&der, role)?.raw_serial());
        let pem = pem_encode(&der);
        Ok(Self { der, pem, serial })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The PEM encoding (`CERTIFICATE`).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The serial number (what revocation lists name).
    pub fn serial(&self) -> &Serial {
        &self.serial
    }

    /// Reads a certificate PEM file; `role` names it in errors.
    pub fn load(file: &Path, role: CertRole) -> Result<Self> {
        read_cert_file(file, role)
    }

    /// Parses one PEM certificate held in memory (a genesis field, a Secret); `source` names it
    /// in errors.
    pub fn from_pem(text: &str, role: CertRole, source: &str) -> Result<Self> {
        cert_from_pem(text.as_bytes(), role, source)
    }

    /// Writes the PEM to a new file (mode 0644); refuses to replace an existing file.
    pub fn save_new(&self, file: &Path) -> Result<()> {
        write_new(file, self.pem.as_bytes(), 0o644)
    }
}

/// A node's certificate file: the node certificate followed by its member CA's certificate, in
/// PEM (leaf first, the order TLS uses); this is what the node presents to its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeChain {
    /// The node certificate.
    pub node: IssuedCert,
    /// The member CA certificate that issued it.
    pub member: IssuedCert,
}

impl NodeChain {
    /// Reads a chain file; errors name the file.
    pub fn load(file: &Path) -> Result<Self> {
        let name = file.display().to_string();
        let text = fs::read(file).map_err(|source| KeyError::Io { file: name.clone(), source })?;
        let blocks = pem::parse_many(&text)
            .map_err(|e| PkiError::BadKeyFile { file: name.clone(), reason: format!("not PEM: {e}") })?;
        let [node, member] = blocks.as_slice() else {
            return Err(PkiError::BadKeyFile {
                file: name,
                reason: format!(
                    "holds {} PEM blocks, expected the node certificate then its member CA's",
                    blocks.len()
                ),
            });
        };
        let cert = |block: &pem::Pem, role| {
            if block.tag() != "CERTIFICATE" {
                return Err(PkiError::BadKeyFile { file: name.clone(), reason: "not a CERTIFICATE PEM".into() });
            }
            IssuedCert::from_der(block.contents().to_vec(), role)
        };
        Ok(Self { node: cert(node, CertRole::Node)?, member: cert(member, CertRole::MemberCa)? })
    }

    /// Writes the chain to a new file (mode 0644); refuses to replace an existing file.
    pub fn save_new(&self, file: &Path) -> Result<()> {
        save_chain_new(&[&self.node, &self.member], file)
    }

    /// The chain file's contents: the node certificate's PEM, then the member CA's.
    pub fn pem(&self) -> String {
        [self.node.pem(), self.member.pem()].concat()
    }

    /// The chain in the order the verifiers take it: `[member CA, node]`, DER.
    pub fn verify_order(&self) -> Vec<Vec<u8>> {
        vec![self.member.der().to_vec(), self.node.der().to_vec()]
    }
}

/// Writes certificates to one new PEM file (mode 0644), in order; refuses to replace a file. A TLS
/// server presents such a file: its certificate first, then the member CA's.
pub fn save_chain_new(certs: &[&IssuedCert], file: &Path) -> Result<()> {
    let text: String = certs.iter().map(|cert| cert.pem()).collect();
    write_new(file, text.as_bytes(), 0o644)
}

fn pem_encode(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der))
}

fn read_cert_file(file: &Path, role: CertRole) -> Result<IssuedCert> {
    let text = fs::read(file).map_err(|source| KeyError::Io { file: file.display().to_string(), source })?;
    cert_from_pem(&text, role, &file.display().to_string())
}

fn cert_from_pem(text: &[u8], role: CertRole, source: &str) -> Result<IssuedCert> {
    let pem = pem::parse(text)
        .map_err(|e| PkiError::BadKeyFile { file: source.to_owned(), reason: format!("not PEM: {e}") })?;
    if pem.tag() != "CERTIFICATE" {
        return Err(PkiError::BadKeyFile { file: source.to_owned(), reason: "not a CERTIFICATE PEM".into() });
    }
    IssuedCert::from_der(pem.into_contents(), role)
}

fn write_new(file: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = file.display().to_string();
    let mut out = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(file).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(name.clone())
        } else {
            KeyError::Io { file: name.clone(), source }
        }
    })?;
    out.write_all(data).and_then(|()| out.sync_all()).map_err(|source| KeyError::Io { file: name, source })?;
    Ok(())
}

/// The DER of an Ed25519 PKCS#8 v1 private key (RFC 8410) up to its 32-byte seed: SEQUENCE,
/// version 0, algorithm id-Ed25519, OCTET STRING holding the OCTET STRING of the seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// An Ed25519 key pair for a CA, an SDK client or a TLS server, stored as a PKCS#8 PEM file.
pub struct CertKey(KeyPair);

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey").field("public", &self.public_key()).finish_non_exhaustive()
    }
}

impl CertKey {
    /// A fresh random Ed25519 key.
    pub fn generate() -> Result<Self> {
        // ring would encode a new key as PKCS#8 v2 (RFC 5958, with the public key), which OpenSSL
        // 3.0 cannot read; SDK clients built on OpenSSL (curl, most language SDKs) must load
        // these files, so the key is encoded as PKCS#8 v1 (RFC 8410) instead.
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let mut der = ED25519_PKCS8_V1_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        KeyPair::try_from(der.as_slice()).map(Self).map_err(issue_err)
    }

    /// The Ed25519 public key.
    pub fn public_key(&self) -> B256 {
        B256::try_from(self.0.public_key_raw()).unwrap_or_default()
    }

    /// The PKCS#8 PEM encoding of the private key (what rustls loads).
    pub fn private_key_pem(&self) -> String {
        self.0.serialize_pem()
    }

    /// Loads a PKCS#8 PEM Ed25519 key file.
    pub fn load(file: &Path) -> Result<Self> {
        let text =
            fs::read_to_string(file).map_err(|source| KeyError::Io { file: file.display().to_string(), source })?;
        Self::from_pem(&text, &file.display().to_string())
    }

    /// Parses a PKCS#8 PEM Ed25519 key held in memory (a Secret); `source` names it in errors.
    pub fn from_pem(text: &str, source: &str) -> Result<Self> {
        let key = KeyPair::from_pem(text)
            .map_err(|e| PkiError::BadKeyFile { file: source.to_owned(), reason: e.to_string() })?;
        if key.algorithm() != &PKCS_ED25519 {
            return Err(PkiError::BadKeyFile { file: source.to_owned(), reason: "not an Ed25519 key".into() });
        }
        Ok(Self(key))
    }

    /// The PKCS#8 DER encoding of the private key (what TLS libraries take).
    pub fn private_key_der(&self) -> Vec<u8> {
        self.0.serialize_der()
    }

    /// Writes the key to a new file with mode 0600; refuses to replace an existing file.
    pub fn save_new(&self, file: &Path) -> Result<()> {
        write_new(file, self.0.serialize_pem().as_bytes(), 0o600)
    }
}

/// A bare Ed25519 public key to be certified (a node id or a client key).
struct Ed25519Public([u8; 32]);

impl Ed25519Public {
    fn new(key: &B256) -> Result<Self> {
        ed25519_dalek::VerifyingKey::from_bytes(&key.0).map_err(|_| PkiError::InvalidPublicKey(*key))?;
        Ok(Self(key.0))
    }
}

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

fn base_params(dn: DistinguishedName, validity: &Validity) -> Result<(CertificateParams, Serial)> {
    let mut params = CertificateParams::default();
    validity.apply(&mut params)?;
    let serial = Serial::random();
    params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
    params.distinguished_name = dn;
    params.use_authority_key_identifier_extension = true;
    Ok((params, serial))
}

fn ca_params(dn: DistinguishedName, validity: &Validity, path_len: u8) -> Result<(CertificateParams, Serial)> {
    let (mut params, serial) = base_params(dn, validity)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok((params, serial))
}

fn load_issuer(cert: &IssuedCert, key: CertKey, source: &str) -> Result<Issuer<'static, KeyPair>> {
    let parsed = parse(cert.der(), CertRole::ChainCa)?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.0.public_key_raw() {
        return Err(PkiError::BadKeyFile {
            file: source.to_owned(),
            reason: "key does not match the certificate".into(),
        });
    }
    Issuer::from_ca_cert_der(&cert.der().to_vec().into(), key.0)
        .map_err(|e| PkiError::BadKeyFile { file: source.to_owned(), reason: e.to_string() })
}

/// The chain's root: a self-signed CA (CA:TRUE, pathlen 1, keyCertSign + cRLSign) that certifies
/// member CAs.
pub struct ChainCa {
    issuer: Issuer<'static, KeyPair>,
    cert: IssuedCert,
}

impl std::fmt::Debug for ChainCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCa").field("serial", &self.cert.serial).finish_non_exhaustive()
    }
}

impl ChainCa {
    /// Creates a new chain CA with a fresh key; `chain_name` becomes subject O and CN.
    pub fn generate(chain_name: &str, validity: Validity) -> Result<Self> {
        check_name("chain name", chain_name)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, chain_name);
        dn.push(DnType::CommonName, format!("{chain_name} chain CA"));
        let (params, serial) = ca_params(dn, &validity, 1)?;
        let key = CertKey::generate()?.0;
        let cert = params.self_signed(&key).map_err(issue_err)?;
        Ok(Self { issuer: Issuer::new(params, key), cert: IssuedCert::new(cert, serial) })
    }

    /// Loads a chain CA from its certificate (PEM) and key (PKCS#8 PEM) files.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self> {
        let cert = read_cert_file(cert_file, CertRole::ChainCa)?;
        let issuer = load_issuer(&cert, CertKey::load(key_file)?, &key_file.display().to_string())?;
        Ok(Self { issuer, cert })
    }

    /// Parses a chain CA held in memory (a Secret): certificate PEM and PKCS#8 key PEM; `source`
    /// names them in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &str, source: &str) -> Result<Self> {
        let cert = cert_from_pem(cert_pem.as_bytes(), CertRole::ChainCa, source)?;
        let issuer = load_issuer(&cert, CertKey::from_pem(key_pem, source)?, source)?;
        Ok(Self { issuer, cert })
    }

    /// The PKCS#8 PEM of the CA key, to store beside the certificate.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Writes certificate and key to new files (key mode 0600); refuses to replace either.
    pub fn save_new(&self, cert_file: &Path, key_file: &Path) -> Result<()> {
        write_new(key_file, self.issuer.key().serialize_pem().as_bytes(), 0o600)?;
        self.cert.save_new(cert_file)
    }

    /// The CA certificate, which every node trusts.
    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }

    /// Certifies a member CA (CA:TRUE, pathlen 0, subject O = name, OU = id) with a fresh key.
    pub fn issue_member_ca(&self, member: &Member, validity: Validity) -> Result<MemberCa> {
        member.check()?;
        let (params, serial) = ca_params(member.dn(&format!("{} member CA", member.name)), &validity, 0)?;
        let key = CertKey::generate()?.0;
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(MemberCa { issuer: Issuer::new(params, key), cert: IssuedCert::new(cert, serial), member: member.clone() })
    }
}

/// An institution's CA (CA:TRUE, pathlen 0), certifying the institution's nodes and SDK clients.
pub struct MemberCa {
    issuer: Issuer<'static, KeyPair>,
    cert: IssuedCert,
    member: Member,
}

impl std::fmt::Debug for MemberCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberCa")
            .field("member", &self.member)
            .field("serial", &self.cert.serial)
            .finish_non_exhaustive()
    }
}

impl MemberCa {
    /// Loads a member CA from its certificate (PEM) and key (PKCS#8 PEM) files.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<Self> {
        let cert = read_cert_file(cert_file, CertRole::MemberCa)?;
        Self::with_key(cert, CertKey::load(key_file)?, &key_file.display().to_string())
    }

    /// Parses a member CA held in memory (a Secret): certificate PEM and PKCS#8 key PEM; `source`
    /// names them in errors.
    pub fn from_pem(cert_pem: &str, key_pem: &str, source: &str) -> Result<Self> {
        let cert = cert_from_pem(cert_pem.as_bytes(), CertRole::MemberCa, source)?;
        Self::with_key(cert, CertKey::from_pem(key_pem, source)?, source)
    }

    fn with_key(cert: IssuedCert, key: CertKey, source: &str) -> Result<Self> {
        let member = {
            let parsed = parse(cert.der(), CertRole::MemberCa)?;
            member_of(&parsed, CertRole::MemberCa)?
        };
        let issuer = load_issuer(&cert, key, source)?;
        Ok(Self { issuer, cert, member })
    }

    /// The PKCS#8 PEM of the CA key, to store beside the certificate.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Writes certificate and key to new files (key mode 0600); refuses to replace either.
    pub fn save_new(&self, cert_file: &Path, key_file: &Path) -> Result<()> {
        write_new(key_file, self.issuer.key().serialize_pem().as_bytes(), 0o600)?;
        self.cert.save_new(cert_file)
    }

    /// The member CA certificate, the first element of every chain it issues.
    pub fn cert(&self) -> &IssuedCert {
        &self.cert
    }

    /// The institution.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Certifies a node's Ed25519 key (`NodeKey::node_id()`): subject CN = node id hex,
    /// digitalSignature, extended key usage serverAuth + clientAuth.
    pub fn issue_node(&self, node_id: &B256, validity: Validity) -> Result<IssuedCert> {
        let key = Ed25519Public::new(node_id)?;
        let (mut params, serial) = base_params(self.member.dn(&hex::encode(node_id)), &validity)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(IssuedCert::new(cert, serial))
    }

    /// Certifies a node as [`issue_node`](Self::issue_node) does and bundles the certificate
    /// with this member CA's, as the node presents them.
    pub fn issue_node_chain(&self, node_id: &B256, validity: Validity) -> Result<NodeChain> {
        Ok(NodeChain { node: self.issue_node(node_id, validity)?, member: self.cert().clone() })
    }

    /// Certifies an SDK client's Ed25519 key ([`CertKey::public_key`]): subject CN = `name`,
    /// digitalSignature, extended key usage clientAuth.
    pub fn issue_client(&self, name: &str, public_key: &B256, validity: Validity) -> Result<IssuedCert> {
        check_name("client name", name)?;
        let key = Ed25519Public::new(public_key)?;
        let (mut params, serial) = base_params(self.member.dn(name), &validity)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(IssuedCert::new(cert, serial))
    }

    /// Certifies the Ed25519 key of a TLS server (a node's JSON-RPC endpoint): subject CN = the
    /// first name, subject alternative names = `names` (each a DNS name or an IP address, which
    /// is what TLS clients check; node certificates carry none), digitalSignature, extended key
    /// usage serverAuth.
    pub fn issue_server(&self, names: &[String], public_key: &B256, validity: Validity) -> Result<IssuedCert> {
        let Some(first) = names.first() else {
            return Err(PkiError::InvalidName { field: "server name", value: "(none given)".into() });
        };
        if names.len() > MAX_SERVER_NAMES {
            return Err(PkiError::InvalidName {
                field: "server names",
                value: format!("{} names, at most {MAX_SERVER_NAMES}", names.len()),
            });
        }
        let key = Ed25519Public::new(public_key)?;
        let (mut params, serial) = base_params(self.member.dn(first), &validity)?;
        params.subject_alt_names = names.iter().map(|name| server_name(name)).collect::<Result<_>>()?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(issue_err)?;
        Ok(IssuedCert::new(cert, serial))
    }
}

/// A subject alternative name: an IP address if `name` parses as one, else a DNS name
/// (letters, digits and hyphens in dot-separated labels, optionally starting with `*.`).
fn server_name(name: &str) -> Result<SanType> {
    if let Ok(ip) = name.parse::<std::net::IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let invalid = || PkiError::InvalidName { field: "server DNS name", value: name.to_owned() };
    let labels = name.strip_prefix("*.").unwrap_or(name);
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.len() > 253 || !labels.split('.').all(valid_label) {
        return Err(invalid());
    }
    Ia5String::try_from(name).map(SanType::DnsName).map_err(|_| invalid())
}

/// A node certificate chain that verified; only [`verify_node_chain`] creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNode {
    node_id: B256,
    member: Member,
    not_after: SystemTime,
    serial: Serial,
}

impl VerifiedNode {
    /// The certified node id (Ed25519 public key); compare it with the peer's libp2p key.
    pub fn node_id(&self) -> &B256 {
        &self.node_id
    }

    /// The institution whose member CA issued the certificate.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// When the earliest certificate of the chain expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The node certificate's serial.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }
}

/// An SDK client certificate chain that verified; only [`verify_client_chain`] creates one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClient {
    name: String,
    public_key: B256,
    member: Member,
    not_after: SystemTime,
    serial: Serial,
}

impl VerifiedClient {
    /// The client name (subject CN).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The certified Ed25519 key.
    pub fn public_key(&self) -> &B256 {
        &self.public_key
    }

    /// The institution whose member CA issued the certificate.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// When the earliest certificate of the chain expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The client certificate's serial.
    pub fn serial(&self) -> &Serial {
        &self.serial
    }
}

/// Verifies a node's chain `[member CA, node]` against the chain CA certificate at `now`.
///
/// Checks every signature up to `ca_der`, every validity period, the CA flags and path lengths,
/// key usages (keyCertSign on CAs; digitalSignature, serverAuth and clientAuth on the node), that
/// the node's O/OU equal its member CA's, that neither member CA nor node serial is revoked, and
/// that the node certificate certifies an Ed25519 key equal to the node id in its subject CN.
pub fn verify_node_chain(
    ca_der: &[u8],
    chain: &[&[u8]],
    now: SystemTime,
    revoked: &dyn Revocation,
) -> Result<VerifiedNode> {
    let leaf = verify_chain(ca_der, chain, now, revoked, CertRole::Node)?;
    let claimed = leaf.common_name;
    if hex::encode(leaf.public_key) != claimed.to_ascii_lowercase().trim_start_matches("0x") {
        return Err(PkiError::NodeIdMismatch { certified: leaf.public_key, claimed });
    }
    Ok(VerifiedNode { node_id: leaf.public_key, member: leaf.member, not_after: leaf.not_after, serial: leaf.serial })
}

/// Verifies an SDK client's chain `[member CA, client]` against the chain CA certificate at
/// `now`, like [`verify_node_chain`] but requiring extended key usage clientAuth only.
pub fn verify_client_chain(
    ca_der: &[u8],
    chain: &[&[u8]],
    now: SystemTime,
    revoked: &dyn Revocation,
) -> Result<VerifiedClient> {
    let leaf = verify_chain(ca_der, chain, now, revoked, CertRole::Client)?;
    Ok(VerifiedClient {
        name: leaf.common_name,
        public_key: leaf.public_key,
        member: leaf.member,
        not_after: leaf.not_after,
        serial: leaf.serial,
    })
}

/// A TLS server's certificate chain as read from one PEM file: the server certificate, then the
/// member CA certificate that issued it (and optionally the chain CA's). Only
/// [`ServerChain::load`] creates one, after checking that the first certificate is a server
/// certificate for an Ed25519 key (not a CA; digitalSignature and serverAuth; at least one DNS
/// name or IP address) and that each certificate is signed by the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerChain {
    certs: Vec<IssuedCert>,
    public_key: B256,
}

impl ServerChain {
    /// Reads and checks a PEM file of certificates, server certificate first.
    pub fn load(file: &Path) -> Result<Self> {
        let name = file.display().to_string();
        let bad = |reason: String| PkiError::BadKeyFile { file: name.clone(), reason };
        let text = fs::read(file).map_err(|source| KeyError::Io { file: name.clone(), source })?;
        let blocks = pem::parse_many(&text).map_err(|e| bad(format!("not PEM: {e}")))?;
        let expected = "expected the server certificate followed by its member CA certificate";
        if blocks.is_empty() {
            return Err(bad(format!("holds no PEM certificates; {expected}")));
        }
        if blocks.len() > MAX_SERVER_CHAIN_LEN {
            return Err(bad(format!("holds {} certificates; {expected}", blocks.len())));
        }
        if let Some(other) = blocks.iter().find(|block| block.tag() != "CERTIFICATE") {
            return Err(bad(format!("holds a {} PEM block; expected only certificates", other.tag())));
        }
        let roles = [CertRole::Server, CertRole::MemberCa, CertRole::ChainCa];
        let certs = blocks
            .into_iter()
            .zip(roles)
            .map(|(block, role)| IssuedCert::from_der(block.into_contents(), role))
            .collect::<Result<Vec<_>>>()
            .map_err(|e| bad(e.to_string()))?;
        let public_key = check_chain_links(&certs, &roles).map_err(|e| bad(e.to_string()))?;
        Ok(Self { certs, public_key })
    }

    /// The certificates, server certificate first.
    pub fn certs(&self) -> &[IssuedCert] {
        &self.certs
    }

    /// Pairs the chain with the server's key, which must be the key the server certificate
    /// certifies; `key_file` names the key in errors.
    pub fn with_key(self, key: CertKey, key_file: &Path) -> Result<ServerIdentity> {
        if key.public_key() != self.public_key {
            return Err(PkiError::BadKeyFile {
                file: key_file.display().to_string(),
                reason: "key does not match the server certificate".into(),
            });
        }
        Ok(ServerIdentity { chain: self, key })
    }
}

/// Checks a server chain: a server certificate first, then certificates each signed by the next
/// and each a CA allowed to issue what lies below it. Returns the server's Ed25519 key.
fn check_chain_links(certs: &[IssuedCert], roles: &[CertRole]) -> Result<B256> {
    let chain = certs
        .iter()
        .zip(roles)
        .map(|(cert, role)| Ok((parse(cert.der(), *role)?, *role)))
        .collect::<Result<Vec<_>>>()?;
    let Some((leaf, _)) = chain.first() else {
        return Err(PkiError::ChainLength { got: 0, expected: CHAIN_LEN });
    };
    check_server_leaf(leaf)?;
    for (below, pair) in chain.windows(2).enumerate() {
        let [(cert, cert_role), (issuer, issuer_role)] = pair else { continue };
        check_issued_by(cert, issuer, *cert_role)?;
        // The member CA has no CA below it, the chain CA one.
        check_ca(issuer, u32::try_from(below).unwrap_or(u32::MAX), *issuer_role)?;
    }
    ed25519_key(leaf, CertRole::Server)
}

fn check_server_leaf(cert: &X509Certificate<'_>) -> Result<()> {
    let role = CertRole::Server;
    check_signing_leaf(cert, role)?;
    let eku = cert.extended_key_usage().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    if !eku.is_some_and(|e| e.value.server_auth) {
        return Err(PkiError::KeyUsage { role, usage: "serverAuth" });
    }
    // TLS clients check the name they connected to against these, never against the subject CN.
    let names = cert.subject_alternative_name().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    let has_name = names.is_some_and(|names| {
        names.value.general_names.iter().any(|name| matches!(name, GeneralName::DNSName(_) | GeneralName::IPAddress(_)))
    });
    if !has_name {
        return Err(PkiError::BadSubject {
            role,
            reason: "no DNS name or IP address (subject alternative name) for clients to check".into(),
        });
    }
    Ok(())
}

/// A TLS server's certificate chain with its private key; built by [`ServerChain::with_key`].
#[derive(Debug)]
pub struct ServerIdentity {
    chain: ServerChain,
    key: CertKey,
}

impl ServerIdentity {
    /// The certificates to present, server certificate first.
    pub fn certs(&self) -> &[IssuedCert] {
        self.chain.certs()
    }

    /// The server's private key, PKCS#8 DER.
    pub fn private_key_der(&self) -> Vec<u8> {
        self.key.private_key_der()
    }
}

struct Leaf {
    common_name: String,
    public_key: B256,
    member: Member,
    not_after: SystemTime,
    serial: Serial,
}

fn verify_chain(
    ca_der: &[u8],
    chain: &[&[u8]],
    now: SystemTime,
    revoked: &dyn Revocation,
    leaf_role: CertRole,
) -> Result<Leaf> {
    let [member_der, leaf_der] = chain else {
        return Err(PkiError::ChainLength { got: chain.len(), expected: CHAIN_LEN });
    };
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let now = i64::try_from(now).unwrap_or(i64::MAX);

    let ca = parse(ca_der, CertRole::ChainCa)?;
    let member = parse(member_der, CertRole::MemberCa)?;
    let leaf = parse(leaf_der, leaf_role)?;

    // Chain CA: self-signed trust anchor; must allow one intermediate CA below it.
    check_issued_by(&ca, &ca, CertRole::ChainCa)?;
    let ca_not_after = check_time(&ca, now, CertRole::ChainCa)?;
    check_ca(&ca, 1, CertRole::ChainCa)?;

    // Member CA.
    check_issued_by(&member, &ca, CertRole::MemberCa)?;
    let member_not_after = check_time(&member, now, CertRole::MemberCa)?;
    check_ca(&member, 0, CertRole::MemberCa)?;
    check_revoked(&member, revoked, CertRole::MemberCa)?;
    let institution = member_of(&member, CertRole::MemberCa)?;

    // Leaf.
    check_issued_by(&leaf, &member, leaf_role)?;
    let leaf_not_after = check_time(&leaf, now, leaf_role)?;
    check_end_entity(&leaf, leaf_role)?;
    let serial = check_revoked(&leaf, revoked, leaf_role)?;
    if member_of(&leaf, leaf_role)? != institution {
        return Err(PkiError::BadSubject { role: leaf_role, reason: "O/OU differ from the member CA's".into() });
    }
    let common_name = single_attr(leaf.subject(), &oid_registry::OID_X509_COMMON_NAME, "CN", leaf_role)?;
    let public_key = ed25519_key(&leaf, leaf_role)?;

    let not_after = ca_not_after.min(member_not_after).min(leaf_not_after);
    let not_after = u64::try_from(not_after)
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
        .map_err(|_| PkiError::Malformed { role: leaf_role, reason: "validity before 1970".into() })?;
    Ok(Leaf { common_name, public_key, member: institution, not_after, serial })
}

fn parse(der: &[u8], role: CertRole) -> Result<X509Certificate<'_>> {
    if der.len() > MAX_CERT_LEN {
        return Err(PkiError::Malformed { role, reason: format!("{} bytes exceeds {MAX_CERT_LEN}", der.len()) });
    }
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    if !rest.is_empty() {
        return Err(PkiError::Malformed { role, reason: format!("{} trailing bytes", rest.len()) });
    }
    if cert.version() != x509_parser::x509::X509Version::V3 {
        return Err(PkiError::Malformed { role, reason: "not an X.509 v3 certificate".into() });
    }
    // Reject unknown critical extensions; also surfaces duplicate/unparsable extensions.
    for ext in cert.extensions() {
        let known = [
            oid_registry::OID_X509_EXT_BASIC_CONSTRAINTS,
            oid_registry::OID_X509_EXT_KEY_USAGE,
            oid_registry::OID_X509_EXT_EXTENDED_KEY_USAGE,
            oid_registry::OID_X509_EXT_NAME_CONSTRAINTS,
            oid_registry::OID_X509_EXT_SUBJECT_ALT_NAME,
        ];
        if ext.critical && !known.contains(&ext.oid) {
            return Err(PkiError::UnsupportedCriticalExtension { role, oid: ext.oid.to_id_string() });
        }
    }
    cert.tbs_certificate
        .extensions_map()
        .map_err(|e| PkiError::Malformed { role, reason: format!("extensions: {e}") })?;
    Ok(cert)
}

fn check_issued_by(cert: &X509Certificate<'_>, issuer: &X509Certificate<'_>, role: CertRole) -> Result<()> {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(PkiError::IssuerMismatch { role });
    }
    if cert.signature_algorithm.algorithm != oid_registry::OID_SIG_ED25519 {
        return Err(PkiError::BadSignature { role, reason: "signature algorithm is not Ed25519".into() });
    }
    cert.verify_signature(Some(issuer.public_key())).map_err(|e| PkiError::BadSignature { role, reason: e.to_string() })
}

/// Checks the validity period at `now`; returns not-after in unix seconds.
fn check_time(cert: &X509Certificate<'_>, now: i64, role: CertRole) -> Result<i64> {
    let not_before = cert.validity().not_before.timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if now < not_before {
        return Err(PkiError::NotYetValid { role, not_before });
    }
    if now > not_after {
        return Err(PkiError::Expired { role, not_after });
    }
    Ok(not_after)
}

/// A CA that may have `below` more CA certificates beneath it, with keyCertSign.
fn check_ca(cert: &X509Certificate<'_>, below: u32, role: CertRole) -> Result<()> {
    let constraints = cert.basic_constraints().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    match constraints.map(|c| c.value) {
        Some(bc) if bc.ca && bc.path_len_constraint.is_none_or(|len| len >= below) => {}
        _ => return Err(PkiError::NotCa { role }),
    }
    let usage = cert.key_usage().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    if !usage.is_some_and(|u| u.value.key_cert_sign()) {
        return Err(PkiError::KeyUsage { role, usage: "keyCertSign" });
    }
    Ok(())
}

/// An end-entity certificate (not a CA) whose key may sign (digitalSignature).
fn check_signing_leaf(cert: &X509Certificate<'_>, role: CertRole) -> Result<()> {
    let constraints = cert.basic_constraints().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(PkiError::UnexpectedCa { role });
    }
    let usage = cert.key_usage().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?;
    if !usage.is_some_and(|u| u.value.digital_signature()) {
        return Err(PkiError::KeyUsage { role, usage: "digitalSignature" });
    }
    Ok(())
}

fn check_end_entity(cert: &X509Certificate<'_>, role: CertRole) -> Result<()> {
    check_signing_leaf(cert, role)?;
    let eku =
        cert.extended_key_usage().map_err(|e| PkiError::Malformed { role, reason: e.to_string() })?.map(|e| e.value);
    let Some(eku) = eku else { return Err(PkiError::KeyUsage { role, usage: "clientAuth" }) };
    if !eku.client_auth {
        return Err(PkiError::KeyUsage { role, usage: "clientAuth" });
    }
    if role == CertRole::Node && !eku.server_auth {
        return Err(PkiError::KeyUsage { role, usage: "serverAuth" });
    }
    // Node certificates also carry clientAuth; an SDK endpoint admits SDK clients only.
    if role == CertRole::Client && eku.server_auth {
        return Err(PkiError::UnexpectedUsage { role, usage: "serverAuth" });
    }
    Ok(())
}

fn check_revoked(cert: &X509Certificate<'_>, revoked: &dyn Revocation, role: CertRole) -> Result<Serial> {
    let serial = Serial::from_bytes(cert.raw_serial());
    if revoked.is_revoked(&serial) {
        return Err(PkiError::Revoked { role, serial });
    }
    Ok(serial)
}

fn single_attr(name: &X509Name<'_>, oid: &oid_registry::Oid<'_>, label: &str, role: CertRole) -> Result<String> {
    let mut values = name.iter_by_oid(oid);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(PkiError::BadSubject { role, reason: format!("need exactly one {label}") });
    };
    value
        .as_str()
        .map(str::to_owned)
        .map_err(|_| PkiError::BadSubject { role, reason: format!("{label} is not a string") })
}

fn member_of(cert: &X509Certificate<'_>, role: CertRole) -> Result<Member> {
    let subject = cert.subject();
    Ok(Member {
        name: single_attr(subject, &oid_registry::OID_X509_ORGANIZATION_NAME, "O", role)?,
        id: single_attr(subject, &oid_registry::OID_X509_ORGANIZATIONAL_UNIT, "OU", role)?,
    })
}

fn ed25519_key(cert: &X509Certificate<'_>, role: CertRole) -> Result<B256> {
    let spki = cert.public_key();
    if spki.algorithm.algorithm != oid_registry::OID_SIG_ED25519 || spki.algorithm.parameters.is_some() {
        return Err(PkiError::NotEd25519 { role });
    }
    let key = B256::try_from(spki.subject_public_key.data.as_ref()).map_err(|_| PkiError::NotEd25519 { role })?;
    ed25519_dalek::VerifyingKey::from_bytes(&key.0).map_err(|_| PkiError::NotEd25519 { role })?;
    Ok(key)
}

#[cfg(test)]
mod tests;
