use std::time::SystemTime;

use bcos_sdk::{
    config::RpcConfig,
    crypto::NodeKey,
    pki::{CertKey, ChainCa, IssuedCert, Member, MemberCa, Validity, save_chain_new},
};
use prometheus::Registry;
use rustls::{
    ClientConfig,
    client::{WebPkiServerVerifier, danger::ServerCertVerifier},
    pki_types::ServerName,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

use super::*;
use crate::{rpc::eth, test_utils::solo_api};

const DAY: Duration = Duration::from_secs(86_400);
const BLOCK_NUMBER: &str = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
/// How long a refused handshake may take to show in the metrics.
const METRIC_TIMEOUT: Duration = Duration::from_secs(5);

fn valid() -> Validity {
    Validity { not_before: SystemTime::now() - DAY, not_after: SystemTime::now() + DAY }
}

fn bank() -> Member {
    Member { name: "Example Bank".into(), id: "bank1".into() }
}

/// A chain CA, its member CA, and a server certificate for `localhost` and 127.0.0.1 written
/// with its key into a temporary directory, as `bcos-node ca server` would.
struct Pki {
    dir: tempfile::TempDir,
    ca: ChainCa,
    member: MemberCa,
    server: IssuedCert,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = ChainCa::generate("testchain", valid()).expect("chain CA");
        let member = ca.issue_member_ca(&bank(), valid()).expect("member CA");
        let key = CertKey::generate().expect("key");
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let server = member.issue_server(&names, &key.public_key(), valid()).expect("server cert");
        key.save_new(&dir.path().join("server.key")).expect("save key");
        save_chain_new(&[&server, member.cert()], &dir.path().join("server.crt")).expect("save chain");
        Self { dir, ca, member, server }
    }

    fn tls_config(&self, require_client_cert: bool) -> RpcTlsConfig {
        RpcTlsConfig {
            cert_file: self.dir.path().join("server.crt"),
            key_file: self.dir.path().join("server.key"),
            require_client_cert,
        }
    }

    /// A client trusting this chain's CA, presenting `identity` if given.
    fn client(&self, identity: Option<&Identity>) -> Arc<ClientConfig> {
        client_config(self.ca.cert().der(), identity)
    }
}

/// An SDK client's key and chain `[client, member CA]`.
struct Identity {
    key: CertKey,
    chain: Vec<Vec<u8>>,
    serial: bcos_sdk::pki::Serial,
}

fn client_identity(member: &MemberCa, validity: Validity) -> Identity {
    let key = CertKey::generate().expect("key");
    let cert = member.issue_client("teller", &key.public_key(), validity).expect("client cert");
    Identity { key, chain: vec![cert.der().to_vec(), member.cert().der().to_vec()], serial: cert.serial().clone() }
}

fn client_config(root: &[u8], identity: Option<&Identity>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root.to_vec())).expect("root");
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => builder
            .with_client_auth_cert(
                identity.chain.iter().map(|der| CertificateDer::from(der.clone())).collect(),
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.private_key_der())),
            )
            .expect("client identity"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A node on a fresh chain serving JSON-RPC over TLS on a loopback port.
struct TlsNode {
    _dir: tempfile::TempDir,
    address: SocketAddr,
    handle: ServerHandle,
    metrics: RpcTlsMetrics,
}

impl TlsNode {
    async fn start(config: &RpcTlsConfig, chain_ca: Option<Vec<u8>>, revoked: RevocationList) -> Self {
        let registry = Registry::new();
        let (dir, api) = solo_api(4_242, &NodeKey::generate(), &registry);
        let metrics = RpcTlsMetrics::register(&registry);
        let tls = TlsServer::new(config, chain_ca, revoked, metrics.clone()).expect("TLS server");
        let (handle, address) =
            eth::start(&RpcConfig::on(([127, 0, 0, 1], 0).into()), api, Some(tls)).await.expect("start");
        Self { _dir: dir, address, handle, metrics }
    }

    /// Sends `eth_blockNumber` on a new connection and returns the whole HTTP response.
    async fn block_number(&self, client: Arc<ClientConfig>) -> std::io::Result<String> {
        let tcp = TcpStream::connect(self.address).await?;
        let name = ServerName::try_from("localhost").expect("server name");
        let mut tls = TlsConnector::from(client).connect(name, tcp).await?;
        let request = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BLOCK_NUMBER}",
            BLOCK_NUMBER.len()
        );
        tls.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        match tls.read_to_end(&mut response).await {
            Ok(_) => {}
            // The server may close without a TLS close_notify once the response is out.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
            Err(e) => return Err(e),
        }
        if response.is_empty() {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"));
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    }

    async fn assert_served(&self, client: Arc<ClientConfig>) {
        let response = self.block_number(client).await.expect("served");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(r#""result":"0x0""#), "{response}");
    }

    /// Asserts the client is refused and the node counts one more failure for `reason`.
    async fn assert_refused(&self, client: Arc<ClientConfig>, reason: &str) {
        let before = self.failures(reason);
        let result = self.block_number(client).await;
        assert!(result.is_err(), "{reason}: served anyway: {result:?}");
        let deadline = tokio::time::Instant::now() + METRIC_TIMEOUT;
        while self.failures(reason) == before {
            assert!(tokio::time::Instant::now() < deadline, "no {reason} failure counted; client saw {result:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn failures(&self, reason: &str) -> u64 {
        self.metrics.handshake_failures.with_label_values(&[reason]).get()
    }

    async fn stop(self) {
        self.handle.stop().expect("running");
        tokio::time::timeout(Duration::from_secs(10), self.handle.stopped()).await.expect("stops in time");
    }
}

#[test]
fn webpki_accepts_our_server_chain_for_its_names_only() {
    let pki = Pki::new();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(pki.ca.cert().der().to_vec())).expect("chain CA is a trust anchor");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().expect("verifier");
    let leaf = CertificateDer::from(pki.server.der().to_vec());
    let member = [CertificateDer::from(pki.member.cert().der().to_vec())];
    let now = UnixTime::now();
    for name in ["localhost", "127.0.0.1"] {
        let name = ServerName::try_from(name).expect("name");
        verifier.verify_server_cert(&leaf, &member, &name, &[], now).expect("webpki accepts the chain");
    }
    let other = ServerName::try_from("example.com").expect("name");
    let err = verifier.verify_server_cert(&leaf, &member, &other, &[], now).expect_err("wrong name");
    assert!(matches!(err, rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. })), "{err}");
    // Without the member CA the chain does not reach the root.
    let err = verifier.verify_server_cert(&leaf, &[], &ServerName::try_from("localhost").expect("name"), &[], now);
    assert!(matches!(err, Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer))), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_valid_unrevoked_member_clients() {
    let pki = Pki::new();
    let revoked = RevocationList::default();
    let node = TlsNode::start(&pki.tls_config(true), Some(pki.ca.cert().der().to_vec()), revoked.clone()).await;

    let client = client_identity(&pki.member, valid());
    // One client configuration throughout, so it would resume its TLS session if it could.
    let config = pki.client(Some(&client));
    node.assert_served(config.clone()).await;

    node.assert_refused(pki.client(None), "no_certificate").await;

    let other_ca = ChainCa::generate("otherchain", valid()).expect("CA");
    let other_member = other_ca.issue_member_ca(&bank(), valid()).expect("member CA");
    node.assert_refused(pki.client(Some(&client_identity(&other_member, valid()))), "bad_certificate").await;
    // Same names as this chain's CA, another key: the member CA's signature does not verify.
    let twin_member =
        ChainCa::generate("testchain", valid()).expect("CA").issue_member_ca(&bank(), valid()).expect("member");
    node.assert_refused(pki.client(Some(&client_identity(&twin_member, valid()))), "bad_certificate").await;

    let past = Validity { not_before: SystemTime::now() - 10 * DAY, not_after: SystemTime::now() - DAY };
    node.assert_refused(pki.client(Some(&client_identity(&pki.member, past))), "expired").await;

    // A server certificate of the same member lacks clientAuth.
    let key = CertKey::generate().expect("key");
    let server_cert = pki.member.issue_server(&["localhost".into()], &key.public_key(), valid()).expect("server");
    let as_client = Identity {
        key,
        chain: vec![server_cert.der().to_vec(), pki.member.cert().der().to_vec()],
        serial: server_cert.serial().clone(),
    };
    node.assert_refused(pki.client(Some(&as_client)), "bad_certificate").await;

    // Revocation bites on the next connection, resumed or not, and lifting it admits the client
    // again.
    node.assert_served(config.clone()).await;
    revoked.replace([client.serial.clone()]);
    node.assert_refused(config.clone(), "revoked").await;
    let other_client = client_identity(&pki.member, valid());
    node.assert_served(pki.client(Some(&other_client))).await;
    revoked.replace([pki.member.cert().serial().clone()]);
    node.assert_refused(pki.client(Some(&other_client)), "revoked").await;
    revoked.replace([]);
    node.assert_served(config).await;

    // A client that also sends the chain CA is fine; one that leaves out its member CA is not.
    let mut with_root = client_identity(&pki.member, valid());
    with_root.chain.push(pki.ca.cert().der().to_vec());
    node.assert_served(pki.client(Some(&with_root))).await;
    let mut leaf_only = client_identity(&pki.member, valid());
    leaf_only.chain.truncate(1);
    node.assert_refused(pki.client(Some(&leaf_only)), "bad_certificate").await;

    // A client that does not trust the node's certificate refuses it.
    let distrusting = client_config(other_ca.cert().der(), Some(&client));
    node.assert_refused(distrusting, "client_alert").await;
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_auth_serves_anyone_who_trusts_the_node_over_http_and_websocket() {
    let pki = Pki::new();
    let node = TlsNode::start(&pki.tls_config(false), None, RevocationList::default()).await;
    node.assert_served(pki.client(None)).await;
    node.assert_served(pki.client(Some(&client_identity(&pki.member, valid())))).await;

    // WebSocket upgrades work over TLS as over plain TCP (WSS).
    let tcp = TcpStream::connect(node.address).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = TlsConnector::from(pki.client(None)).connect(name, tcp).await.expect("handshake");
    let upgrade = "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
        Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    tls.write_all(upgrade.as_bytes()).await.expect("write");
    let mut head = vec![0u8; 256];
    let read = tls.read(&mut head).await.expect("read");
    let head = String::from_utf8_lossy(&head[..read]);
    assert!(head.starts_with("HTTP/1.1 101 Switching Protocols"), "{head}");

    // Plain HTTP to the TLS port gets no answer.
    let mut tcp = TcpStream::connect(node.address).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1"), "{answer:?}");
    let deadline = tokio::time::Instant::now() + METRIC_TIMEOUT;
    while node.failures("protocol") == 0 {
        assert!(tokio::time::Instant::now() < deadline, "plain HTTP not counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_need_the_chain_ca_in_the_genesis() {
    let pki = Pki::new();
    let metrics = RpcTlsMetrics::register(&Registry::new());
    let err = TlsServer::new(&pki.tls_config(true), None, RevocationList::default(), metrics.clone())
        .err()
        .expect("no chain CA");
    assert!(matches!(err, TlsError::NoChainCa), "{err}");
    let err = TlsServer::new(&pki.tls_config(true), Some(b"garbage".to_vec()), RevocationList::default(), metrics)
        .err()
        .expect("bad chain CA");
    assert!(matches!(err, TlsError::BadChainCa(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_neither_block_others_nor_stop_shutdown_and_time_out() {
    let pki = Pki::new();
    let node =
        TlsNode::start(&pki.tls_config(true), Some(pki.ca.cert().der().to_vec()), RevocationList::default()).await;
    let client = client_identity(&pki.member, valid());
    // Connections that never start their handshake.
    let mut silent = Vec::new();
    for _ in 0..3 {
        silent.push(TcpStream::connect(node.address).await.expect("connect"));
    }
    node.assert_served(pki.client(Some(&client))).await;

    let started = tokio::time::Instant::now();
    let deadline = started + HANDSHAKE_TIMEOUT + METRIC_TIMEOUT;
    while node.failures("timeout") < 3 {
        assert!(tokio::time::Instant::now() < deadline, "silent handshakes were not cut off");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(started.elapsed() >= HANDSHAKE_TIMEOUT - Duration::from_secs(1));
    drop(silent);

    // Shutdown completes with a silent connection and an idle established one still open.
    let _silent = TcpStream::connect(node.address).await.expect("connect");
    let tcp = TcpStream::connect(node.address).await.expect("connect");
    let _idle = TlsConnector::from(pki.client(Some(&client)))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("handshake");
    node.stop().await;
}

#[test]
fn refusals_are_described_by_what_the_pki_check_found() {
    let refused = |error: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, error);
    let chain_length = certificate_error(PkiError::ChainLength { got: 1, expected: 2 });
    let error = refused(rustls::Error::InvalidCertificate(chain_length));
    assert_eq!(failure_reason(&error), "bad_certificate");
    assert_eq!(describe(&error), "invalid peer certificate: chain has 1 certificates, expected 2");
    let error = refused(rustls::Error::NoCertificatesPresented);
    assert_eq!((failure_reason(&error), describe(&error)), ("no_certificate", "peer sent no certificates".into()));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert_eq!(failure_reason(&reset), "io");
}
