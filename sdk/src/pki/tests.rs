use super::*;
use crate::crypto::NodeKey;
use std::os::unix::fs::PermissionsExt;

const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

fn valid_now() -> Validity {
    Validity { not_before: SystemTime::now() - HOUR, not_after: SystemTime::now() + 30 * DAY }
}

fn member() -> Member {
    Member { name: "Example Bank".into(), id: "org1".into() }
}

struct Fixture {
    ca: ChainCa,
    member: MemberCa,
    node_key: NodeKey,
    node: IssuedCert,
}

fn fixture() -> Fixture {
    let ca = ChainCa::generate("testchain", valid_now()).expect("chain CA");
    let member = ca.issue_member_ca(&member(), valid_now()).expect("member CA");
    let node_key = NodeKey::generate();
    let node = member.issue_node(&node_key.node_id(), valid_now()).expect("node cert");
    Fixture { ca, member, node_key, node }
}

fn verify(ca: &ChainCa, chain: &[&[u8]]) -> Result<VerifiedNode> {
    verify_node_chain(ca.cert().der(), chain, SystemTime::now(), &NoRevocation)
}

/// An rcgen signer backed by a node's Ed25519 key, to forge certificates "issued" by a leaf.
struct NodeSigner {
    key: ed25519_dalek::SigningKey,
    public: [u8; 32],
}

impl NodeSigner {
    fn new(key: &NodeKey) -> Self {
        let key = ed25519_dalek::SigningKey::from_bytes(&key.secret());
        let public = key.verifying_key().to_bytes();
        Self { key, public }
    }
}

impl PublicKeyData for NodeSigner {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ED25519
    }
}

impl rcgen::SigningKey for NodeSigner {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        use ed25519_dalek::Signer;
        Ok(self.key.sign(msg).to_bytes().to_vec())
    }
}

/// Node-certificate parameters as `MemberCa::issue_node` builds them, with a chosen subject CN.
fn node_params(member: &Member, common_name: &str, validity: &Validity) -> CertificateParams {
    let (mut params, _) = base_params(member.dn(common_name), validity).expect("params");
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params
}

#[test]
fn full_chain_verifies() {
    let f = fixture();
    let verified = verify(&f.ca, &[f.member.cert().der(), f.node.der()]).expect("chain verifies");
    assert_eq!(verified.node_id(), &f.node_key.node_id());
    assert_eq!(verified.member(), &member());
    assert_eq!(verified.serial(), f.node.serial());
    let expected_not_after = valid_now().not_after.duration_since(UNIX_EPOCH).expect("epoch").as_secs();
    let not_after = verified.not_after().duration_since(UNIX_EPOCH).expect("epoch").as_secs();
    assert!(expected_not_after.abs_diff(not_after) < 5, "{expected_not_after} vs {not_after}");

    // The certificate certifies exactly the node key, with the expected extensions.
    let parsed = parse(f.node.der(), CertRole::Node).expect("parse");
    assert_eq!(parsed.public_key().subject_public_key.data.as_ref(), f.node_key.node_id().as_slice());
    assert!(parsed.key_usage().expect("ku").expect("ku").value.digital_signature());
    let eku = parsed.extended_key_usage().expect("eku").expect("eku").value;
    assert!(eku.server_auth && eku.client_auth);
    let ca = parse(f.ca.cert().der(), CertRole::ChainCa).expect("parse");
    let bc = ca.basic_constraints().expect("bc").expect("bc").value;
    assert!(bc.ca && bc.path_len_constraint == Some(1));
    let ku = ca.key_usage().expect("ku").expect("ku").value;
    assert!(ku.key_cert_sign() && ku.crl_sign());
    let m = parse(f.member.cert().der(), CertRole::MemberCa).expect("parse");
    let bc = m.basic_constraints().expect("bc").expect("bc").value;
    assert!(bc.ca && bc.path_len_constraint == Some(0));
}

#[test]
fn pem_matches_der_and_serials_are_random() {
    let f = fixture();
    let pem = pem::parse(f.node.pem()).expect("pem");
    assert_eq!(pem.contents(), f.node.der());
    let second = f.member.issue_node(&f.node_key.node_id(), valid_now()).expect("node cert");
    assert_ne!(second.serial(), f.node.serial());
    for serial in [f.node.serial(), second.serial(), f.member.cert().serial(), f.ca.cert().serial()] {
        assert_eq!(serial.as_bytes().len(), SERIAL_LEN);
    }
    let parsed = parse(f.node.der(), CertRole::Node).expect("parse");
    assert_eq!(&Serial::from_bytes(parsed.raw_serial()), f.node.serial());
    assert_eq!(Serial::from_hex(&f.node.serial().to_string()).as_ref(), Some(f.node.serial()));
}

#[test]
fn client_chain_verifies_and_is_not_a_node() {
    let f = fixture();
    let key = CertKey::generate().expect("key");
    let client = f.member.issue_client("app-1", &key.public_key(), valid_now()).expect("client cert");
    let chain = [f.member.cert().der(), client.der()];
    let verified = verify_client_chain(f.ca.cert().der(), &chain, SystemTime::now(), &NoRevocation).expect("client");
    assert_eq!(verified.name(), "app-1");
    assert_eq!(verified.public_key(), &key.public_key());
    assert_eq!(verified.member(), &member());
    // A client certificate lacks serverAuth and does not name a node.
    assert!(matches!(verify(&f.ca, &chain), Err(PkiError::KeyUsage { role: CertRole::Node, usage: "serverAuth" })));
    // Nor is a node certificate a client certificate, though it carries clientAuth for p2p.
    let node_chain = [f.member.cert().der(), f.node.der()];
    assert!(matches!(
        verify_client_chain(f.ca.cert().der(), &node_chain, SystemTime::now(), &NoRevocation),
        Err(PkiError::UnexpectedUsage { role: CertRole::Client, usage: "serverAuth" })
    ));
}

#[test]
fn refuses_certificate_from_another_ca() {
    let f = fixture();
    // Same subject names, different key: the names chain up but the signature does not.
    let other = ChainCa::generate("testchain", valid_now()).expect("other CA");
    let err = verify(&other, &[f.member.cert().der(), f.node.der()]).expect_err("foreign CA");
    assert!(matches!(err, PkiError::BadSignature { role: CertRole::MemberCa, .. }), "{err}");
    assert!(err.is_bad_peer());

    let renamed = ChainCa::generate("otherchain", valid_now()).expect("other CA");
    let err = verify(&renamed, &[f.member.cert().der(), f.node.der()]).expect_err("foreign CA");
    assert!(matches!(err, PkiError::IssuerMismatch { role: CertRole::MemberCa }), "{err}");

    // A node certified by another institution's member CA of the same name.
    let other_member = other.issue_member_ca(&member(), valid_now()).expect("member");
    let err = verify(
        &f.ca,
        &[f.member.cert().der(), other_member.issue_node(&f.node_key.node_id(), valid_now()).expect("node").der()],
    )
    .expect_err("foreign member");
    assert!(matches!(err, PkiError::BadSignature { role: CertRole::Node, .. }), "{err}");
}

#[test]
fn refuses_expired_and_not_yet_valid() {
    let f = fixture();
    let now = SystemTime::now();
    let past = Validity { not_before: now - 10 * DAY, not_after: now - DAY };
    let future = Validity { not_before: now + DAY, not_after: now + 10 * DAY };
    let id = f.node_key.node_id();

    let expired = f.member.issue_node(&id, past).expect("node");
    let err = verify(&f.ca, &[f.member.cert().der(), expired.der()]).expect_err("expired");
    assert!(matches!(err, PkiError::Expired { role: CertRole::Node, .. }), "{err}");

    let early = f.member.issue_node(&id, future).expect("node");
    let err = verify(&f.ca, &[f.member.cert().der(), early.der()]).expect_err("not yet valid");
    assert!(matches!(err, PkiError::NotYetValid { role: CertRole::Node, .. }), "{err}");

    // A valid node under an expired member CA.
    let old_member = f.ca.issue_member_ca(&member(), past).expect("member");
    let node = old_member.issue_node(&id, valid_now()).expect("node");
    let err = verify(&f.ca, &[old_member.cert().der(), node.der()]).expect_err("expired member");
    assert!(matches!(err, PkiError::Expired { role: CertRole::MemberCa, .. }), "{err}");

    // Everything is valid now, but not at a later `now`.
    let later = now + 60 * DAY;
    let err = verify_node_chain(f.ca.cert().der(), &[f.member.cert().der(), f.node.der()], later, &NoRevocation)
        .expect_err("later");
    assert!(matches!(err, PkiError::Expired { role: CertRole::ChainCa, .. }), "{err}");
}

#[test]
fn refuses_revoked_serials() {
    let f = fixture();
    let chain = [f.member.cert().der(), f.node.der()];
    let mut revoked = HashSet::new();
    revoked.insert(Serial::from_hex("0x01").expect("hex"));
    verify_node_chain(f.ca.cert().der(), &chain, SystemTime::now(), &revoked).expect("unrelated revocation");

    revoked.insert(f.node.serial().clone());
    let err = verify_node_chain(f.ca.cert().der(), &chain, SystemTime::now(), &revoked).expect_err("revoked node");
    assert!(matches!(&err, PkiError::Revoked { role: CertRole::Node, serial } if serial == f.node.serial()), "{err}");

    let revoked = BTreeSet::from([f.member.cert().serial().clone()]);
    let err = verify_node_chain(f.ca.cert().der(), &chain, SystemTime::now(), &revoked).expect_err("revoked member");
    assert!(matches!(err, PkiError::Revoked { role: CertRole::MemberCa, .. }), "{err}");

    // Leading zero bytes do not hide a serial.
    let mut padded = vec![0u8];
    padded.extend_from_slice(f.node.serial().as_bytes());
    let list = vec![Serial::from_bytes(&padded)];
    let err = verify_node_chain(f.ca.cert().der(), &chain, SystemTime::now(), &list).expect_err("padded");
    assert!(matches!(err, PkiError::Revoked { .. }), "{err}");
}

#[test]
fn refuses_leaf_signed_by_leaf() {
    let f = fixture();
    let signer = NodeSigner::new(&f.node_key);
    let issuer = Issuer::from_ca_cert_der(&f.node.der().to_vec().into(), signer).expect("issuer");
    let victim = NodeKey::generate();
    let params = node_params(&member(), &hex::encode(victim.node_id()), &valid_now());
    let forged = params.signed_by(&Ed25519Public::new(&victim.node_id()).expect("key"), &issuer).expect("forge");

    // The forged leaf's names and signature chain up to the node certificate, which is not
    // issued by the chain CA.
    let err = verify(&f.ca, &[f.node.der(), forged.der()]).expect_err("leaf as CA");
    assert!(matches!(err, PkiError::IssuerMismatch { role: CertRole::MemberCa }), "{err}");

    // An end-entity certificate issued directly by the chain CA (names and signatures all chain
    // up correctly) still may not issue: it is not a CA.
    let params = node_params(&member(), &hex::encode(f.node_key.node_id()), &valid_now());
    let leaf = params.signed_by(&Ed25519Public::new(&f.node_key.node_id()).expect("key"), &f.ca.issuer).expect("leaf");
    let issuer = Issuer::from_ca_cert_der(leaf.der(), NodeSigner::new(&f.node_key)).expect("issuer");
    let params = node_params(&member(), &hex::encode(victim.node_id()), &valid_now());
    let forged = params.signed_by(&Ed25519Public::new(&victim.node_id()).expect("key"), &issuer).expect("forge");
    let err = verify(&f.ca, &[leaf.der(), forged.der()]).expect_err("leaf as CA");
    assert!(matches!(err, PkiError::NotCa { role: CertRole::MemberCa }), "{err}");

    // A member CA certificate in the leaf position is refused too.
    let err = verify(&f.ca, &[f.member.cert().der(), f.member.cert().der()]).expect_err("CA as leaf");
    assert!(matches!(err, PkiError::IssuerMismatch { role: CertRole::Node } | PkiError::UnexpectedCa { .. }), "{err}");
}

#[test]
fn refuses_node_key_differing_from_claimed_id() {
    let f = fixture();
    let claimed = NodeKey::generate().node_id();
    let params = node_params(&member(), &hex::encode(claimed), &valid_now());
    let key = Ed25519Public::new(&f.node_key.node_id()).expect("key");
    let cert = params.signed_by(&key, &f.member.issuer).expect("cert");
    let err = verify(&f.ca, &[f.member.cert().der(), cert.der()]).expect_err("mismatch");
    assert!(
        matches!(&err, PkiError::NodeIdMismatch { certified, claimed: c } if *certified == f.node_key.node_id() && *c == hex::encode(claimed)),
        "{err}"
    );
}

#[test]
fn refuses_node_of_another_institution_under_member_ca() {
    let f = fixture();
    let other = Member { name: "Other Bank".into(), id: "org2".into() };
    let params = node_params(&other, &hex::encode(f.node_key.node_id()), &valid_now());
    let key = Ed25519Public::new(&f.node_key.node_id()).expect("key");
    let cert = params.signed_by(&key, &f.member.issuer).expect("cert");
    let err = verify(&f.ca, &[f.member.cert().der(), cert.der()]).expect_err("wrong O/OU");
    assert!(matches!(err, PkiError::BadSubject { role: CertRole::Node, .. }), "{err}");
}

#[test]
fn garbage_is_refused_without_panic() {
    let f = fixture();
    let node = f.node.der();
    let mut trailing = node.to_vec();
    trailing.push(0);
    let mut flipped = node.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    let mut sig_flipped = node.to_vec();
    let last = sig_flipped.len() - 1;
    sig_flipped[last] ^= 0x01;
    let mut noise = vec![0u8; 300];
    rand::rngs::OsRng.fill_bytes(&mut noise);
    let inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x30],
        vec![0x30, 0x82, 0xff, 0xff],
        noise,
        node[..node.len() / 2].to_vec(),
        trailing,
        flipped,
        vec![0x30; MAX_CERT_LEN + 1],
    ];
    for input in &inputs {
        assert!(verify(&f.ca, &[f.member.cert().der(), input]).is_err());
        assert!(verify(&f.ca, &[input, node]).is_err());
        assert!(verify_node_chain(input, &[f.member.cert().der(), node], SystemTime::now(), &NoRevocation).is_err());
    }
    let err = verify(&f.ca, &[f.member.cert().der(), &sig_flipped]).expect_err("bad signature");
    assert!(matches!(err, PkiError::BadSignature { role: CertRole::Node, .. }), "{err}");
    // Every prefix of a valid certificate is refused.
    for len in 0..node.len() {
        assert!(verify(&f.ca, &[f.member.cert().der(), &node[..len]]).is_err(), "prefix {len}");
    }
}

#[test]
fn refuses_wrong_chain_length() {
    let f = fixture();
    for chain in [&[][..], &[f.node.der()][..], &[f.member.cert().der(), f.member.cert().der(), f.node.der()][..]] {
        let err = verify(&f.ca, chain).expect_err("length");
        assert!(matches!(err, PkiError::ChainLength { expected: CHAIN_LEN, .. }), "{err}");
    }
}

#[test]
fn refuses_bad_issuance_arguments() {
    let f = fixture();
    let now = SystemTime::now();
    let empty = Validity { not_before: now, not_after: now };
    assert!(matches!(f.member.issue_node(&f.node_key.node_id(), empty), Err(PkiError::EmptyValidity)));
    let ancient = Validity { not_before: UNIX_EPOCH - DAY, not_after: now };
    assert!(matches!(ChainCa::generate("c", ancient), Err(PkiError::TimeOutOfRange)));
    assert!(matches!(ChainCa::generate("", valid_now()), Err(PkiError::InvalidName { .. })));
    let bad = Member { name: "x".into(), id: "a\nb".into() };
    assert!(matches!(f.ca.issue_member_ca(&bad, valid_now()), Err(PkiError::InvalidName { .. })));
    // Some 32-byte strings are not points on the curve.
    let not_a_point = (0u8..=255)
        .map(B256::repeat_byte)
        .find(|k| ed25519_dalek::VerifyingKey::from_bytes(&k.0).is_err())
        .expect("a non-point");
    let err = f.member.issue_node(&not_a_point, valid_now()).expect_err("invalid key");
    assert!(matches!(err, PkiError::InvalidPublicKey(_)) && !err.is_bad_peer());
}

#[test]
fn ca_files_round_trip_and_are_never_overwritten() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = fixture();
    let (ca_cert, ca_key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    f.ca.save_new(&ca_cert, &ca_key).expect("save CA");
    assert_eq!(fs::metadata(&ca_key).expect("meta").permissions().mode() & 0o777, 0o600);
    assert!(matches!(f.ca.save_new(&ca_cert, &ca_key), Err(PkiError::File(KeyError::Exists(_)))));

    let (m_cert, m_key) = (dir.path().join("org1.crt"), dir.path().join("org1.key"));
    f.member.save_new(&m_cert, &m_key).expect("save member");
    assert_eq!(fs::metadata(&m_key).expect("meta").permissions().mode() & 0o777, 0o600);

    let ca = ChainCa::load(&ca_cert, &ca_key).expect("load CA");
    assert_eq!(ca.cert(), f.ca.cert());
    let member_ca = MemberCa::load(&m_cert, &m_key).expect("load member");
    assert_eq!(member_ca.member(), &member());
    assert_eq!(member_ca.cert().der(), f.member.cert().der());

    // The loaded CAs still issue certificates that verify against the original CA certificate.
    let member2 =
        ca.issue_member_ca(&Member { name: "Second".into(), id: "org2".into() }, valid_now()).expect("member");
    let node = member2.issue_node(&NodeKey::generate().node_id(), valid_now()).expect("node");
    verify(&f.ca, &[member2.cert().der(), node.der()]).expect("issued by loaded CA");
    let node = member_ca.issue_node(&f.node_key.node_id(), valid_now()).expect("node");
    verify(&f.ca, &[f.member.cert().der(), node.der()]).expect("issued by loaded member CA");

    // A key that does not belong to the certificate is refused.
    assert!(matches!(ChainCa::load(&ca_cert, &m_key), Err(PkiError::BadKeyFile { .. })));

    let client_key = CertKey::generate().expect("key");
    let key_file = dir.path().join("client.key");
    client_key.save_new(&key_file).expect("save");
    assert_eq!(CertKey::load(&key_file).expect("load").public_key(), client_key.public_key());
    assert!(matches!(client_key.save_new(&key_file), Err(PkiError::File(KeyError::Exists(_)))));
    let cert_file = dir.path().join("node.crt");
    f.node.save_new(&cert_file).expect("save cert");
    assert!(matches!(f.node.save_new(&cert_file), Err(PkiError::File(KeyError::Exists(_)))));
}

#[test]
fn node_chain_files_round_trip_and_bad_ones_are_named() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("node.crt");
    let chain = f.member.issue_node_chain(&f.node_key.node_id(), valid_now()).expect("chain");
    chain.save_new(&file).expect("written");
    assert!(matches!(chain.save_new(&file), Err(PkiError::File(_))), "never overwritten");
    let loaded = NodeChain::load(&file).expect("loads");
    assert_eq!(loaded, chain);
    let order = loaded.verify_order();
    let refs: Vec<&[u8]> = order.iter().map(Vec::as_slice).collect();
    assert_eq!(verify(&f.ca, &refs).expect("verifies").node_id(), &f.node_key.node_id());

    let single = dir.path().join("single.crt");
    f.node.save_new(&single).expect("written");
    let err = NodeChain::load(&single).unwrap_err().to_string();
    assert!(err.ends_with("holds 1 PEM blocks, expected the node certificate then its member CA's"), "{err}");
    let swapped = dir.path().join("swapped.crt");
    std::fs::write(&swapped, format!("{}{}", f.member.cert().pem(), f.node.pem())).expect("written");
    assert!(NodeChain::load(&swapped).is_ok(), "parsing does not judge roles; verification does");
    let refs: Vec<Vec<u8>> = NodeChain::load(&swapped).expect("parses").verify_order();
    let refs: Vec<&[u8]> = refs.iter().map(Vec::as_slice).collect();
    assert!(verify(&f.ca, &refs).is_err(), "a swapped chain does not verify");
    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "not pem").expect("written");
    assert!(NodeChain::load(&garbage).unwrap_err().to_string().contains("garbage.crt"));
}

fn names(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// A server key and certificate for `names`, written as `server.key` and `server.crt` (the
/// server certificate, then the member CA's) into `dir`.
fn server_files(f: &Fixture, dir: &Path, names_: &[&str]) -> (CertKey, IssuedCert) {
    let key = CertKey::generate().expect("key");
    let cert = f.member.issue_server(&names(names_), &key.public_key(), valid_now()).expect("server cert");
    key.save_new(&dir.join("server.key")).expect("save key");
    save_chain_new(&[&cert, f.member.cert()], &dir.join("server.crt")).expect("save chain");
    (key, cert)
}

#[test]
fn server_certificate_names_its_addresses_and_loads_with_its_key() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, cert) = server_files(&f, dir.path(), &["localhost", "127.0.0.1", "::1", "*.rpc.bank.example"]);

    let parsed = parse(cert.der(), CertRole::Server).expect("parse");
    let sans = parsed.subject_alternative_name().expect("san").expect("san").value.general_names.clone();
    let dns: Vec<_> =
        sans.iter().filter_map(|n| if let GeneralName::DNSName(d) = n { Some(*d) } else { None }).collect();
    assert_eq!(dns, ["localhost", "*.rpc.bank.example"]);
    let ips: Vec<_> =
        sans.iter().filter_map(|n| if let GeneralName::IPAddress(ip) = n { Some(ip.len()) } else { None }).collect();
    assert_eq!(ips, [4, 16]);
    let eku = parsed.extended_key_usage().expect("eku").expect("eku").value;
    assert!(eku.server_auth && !eku.client_auth);
    assert_eq!(
        single_attr(parsed.subject(), &oid_registry::OID_X509_COMMON_NAME, "CN", CertRole::Server).ok(),
        Some("localhost".into())
    );
    assert_eq!(member_of(&parsed, CertRole::Server).expect("member"), member());

    let chain = ServerChain::load(&dir.path().join("server.crt")).expect("chain loads");
    assert_eq!(chain.certs(), [cert.clone(), f.member.cert().clone()]);
    let identity = chain
        .clone()
        .with_key(CertKey::load(&dir.path().join("server.key")).expect("key"), Path::new("k"))
        .expect("key matches");
    assert_eq!(identity.certs().len(), 2);
    assert_eq!(identity.private_key_der(), key.private_key_der());
    let err = chain.with_key(CertKey::generate().expect("key"), Path::new("other.key")).expect_err("another key");
    assert_eq!(err.to_string(), "other.key: key does not match the server certificate");

    // A server certificate is not a client certificate.
    let err =
        verify_client_chain(f.ca.cert().der(), &[f.member.cert().der(), cert.der()], SystemTime::now(), &NoRevocation)
            .expect_err("server cert as client");
    assert!(matches!(err, PkiError::KeyUsage { usage: "clientAuth", .. }), "{err}");
    assert!(matches!(
        save_chain_new(&[&cert], &dir.path().join("server.crt")),
        Err(PkiError::File(KeyError::Exists(_)))
    ));
}

#[test]
fn server_names_must_be_dns_names_or_ip_addresses() {
    let f = fixture();
    let key = CertKey::generate().expect("key").public_key();
    for good in [&["node-1.bank.example"][..], &["10.0.0.1", "fe80::1"], &["*.svc.cluster.local"]] {
        f.member.issue_server(&names(good), &key, valid_now()).expect(good[0]);
    }
    let too_many: Vec<String> = (0..=MAX_SERVER_NAMES).map(|i| format!("n{i}.example")).collect();
    for bad in [
        vec![],
        names(&["-bad.example"]),
        names(&["a..b"]),
        names(&["under_score"]),
        names(&["sp ace"]),
        names(&["ok.example", "*"]),
        names(&["a.*.example"]),
        too_many,
    ] {
        let err = f.member.issue_server(&bad, &key, valid_now()).expect_err("bad name");
        assert!(matches!(err, PkiError::InvalidName { .. }) && !err.is_bad_peer(), "{bad:?}: {err}");
    }
}

#[test]
fn server_chain_files_are_checked_and_name_the_file() {
    let f = fixture();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = CertKey::generate().expect("key");
    let server = f.member.issue_server(&names(&["localhost"]), &key.public_key(), valid_now()).expect("server");
    let client = f.member.issue_client("app", &key.public_key(), valid_now()).expect("client");
    let other_member = ChainCa::generate("testchain", valid_now())
        .expect("CA")
        .issue_member_ca(&member(), valid_now())
        .expect("member");
    let write = |name: &str, text: &str| {
        let file = dir.path().join(name);
        fs::write(&file, text).expect("write");
        file
    };
    let cases: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "holds no PEM certificates"),
        ("garbage", "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into(), "not PEM"),
        ("key", key.private_key_pem(), "holds a PRIVATE KEY PEM block"),
        ("truncated", pem_encode(&server.der()[..100]), "server certificate: malformed"),
        (
            "reversed",
            format!("{}{}", f.member.cert().pem(), server.pem()),
            "server certificate: end-entity certificate must not be a CA",
        ),
        ("node", format!("{}{}", f.node.pem(), f.member.cert().pem()), "no DNS name or IP address"),
        ("client", format!("{}{}", client.pem(), f.member.cert().pem()), "missing key usage serverAuth"),
        ("foreign", format!("{}{}", server.pem(), other_member.cert().pem()), "server certificate: bad signature"),
        ("too-long", format!("{0}{1}{1}{1}", server.pem(), f.member.cert().pem()), "holds 4 certificates"),
    ];
    for (name, text, expected) in cases {
        let file = write(name, &text);
        let err = ServerChain::load(&file).expect_err(name).to_string();
        assert!(err.starts_with(&format!("{}: ", file.display())) && err.contains(expected), "{name}: {err}");
    }
    let missing = dir.path().join("missing.crt");
    let err = ServerChain::load(&missing).expect_err("missing").to_string();
    assert!(err.starts_with(&missing.display().to_string()), "{err}");
    // The server certificate alone, and with the chain CA after its member CA, are fine.
    ServerChain::load(&write("alone", server.pem())).expect("server alone");
    ServerChain::load(&write("full", &format!("{}{}{}", server.pem(), f.member.cert().pem(), f.ca.cert().pem())))
        .expect("with chain CA");
}

#[test]
fn keys_are_written_as_pkcs8_v1_and_earlier_v2_files_still_load() {
    let key = CertKey::generate().expect("key");
    let der = key.private_key_der();
    assert_eq!((der.len(), &der[..ED25519_PKCS8_V1_PREFIX.len()]), (48, &ED25519_PKCS8_V1_PREFIX[..]));
    let dir = tempfile::tempdir().expect("tempdir");
    key.save_new(&dir.path().join("v1.key")).expect("save");
    assert_eq!(CertKey::load(&dir.path().join("v1.key")).expect("load v1").public_key(), key.public_key());

    // ring's own encoding (PKCS#8 v2, with the public key), as keys were written before.
    let v2 = KeyPair::generate_for(&PKCS_ED25519).expect("key");
    fs::write(dir.path().join("v2.key"), v2.serialize_pem()).expect("write");
    let loaded = CertKey::load(&dir.path().join("v2.key")).expect("load v2");
    assert_eq!(loaded.public_key().as_slice(), v2.public_key_raw());
}
