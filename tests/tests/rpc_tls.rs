//! JSON-RPC over TLS on a real node process, driven by alloy over a reqwest client with its own
//! rustls configuration (ring): with client certificates required, only SDK clients holding a
//! valid certificate from a member CA of this chain get an answer; without, any client that
//! trusts the chain CA does. Revocation is covered by the node's own tests (`rpc::tls`), as no
//! transaction revokes certificates on chain yet.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use alloy::{
    providers::{Provider, RootProvider},
    rpc::client::RpcClient,
};
use bcos_sdk::{
    config::RpcTlsConfig,
    pki::{CertKey, ChainCa, IssuedCert, Member, MemberCa, Validity, save_chain_new},
};
use bcos_tests::{SoloNode, SoloSpec, wait_for};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
};

const DAY: Duration = Duration::from_secs(86_400);
const TIMEOUT: Duration = Duration::from_secs(30);

fn valid() -> Validity {
    Validity { not_before: SystemTime::now() - DAY, not_after: SystemTime::now() + DAY }
}

fn bank() -> Member {
    Member { name: "Example Bank".into(), id: "bank1".into() }
}

/// A chain CA and member CA, and the node's server key and certificate (for `localhost` and
/// 127.0.0.1) in `dir`.
struct Pki {
    ca: ChainCa,
    member: MemberCa,
}

impl Pki {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let ca = ChainCa::generate("tls-test", valid())?;
        let member = ca.issue_member_ca(&bank(), valid())?;
        let key = CertKey::generate()?;
        let server = member.issue_server(&["localhost".into(), "127.0.0.1".into()], &key.public_key(), valid())?;
        key.save_new(&dir.join("server.key"))?;
        save_chain_new(&[&server, member.cert()], &dir.join("server.crt"))?;
        Ok(Self { ca, member })
    }

    /// A single-node chain naming this CA, serving JSON-RPC with the server certificate.
    async fn node(&self, dir: &Path, require_client_cert: bool) -> anyhow::Result<SoloNode> {
        let spec = SoloSpec {
            ca_cert: Some(self.ca.cert().pem().to_owned()),
            rpc_tls: Some(RpcTlsConfig {
                cert_file: dir.join("server.crt"),
                key_file: dir.join("server.key"),
                require_client_cert,
            }),
        };
        SoloNode::start(&dir.join("node"), spec).await
    }
}

/// An SDK client's key and certificate chain `[client, member CA]`.
struct ClientIdentity {
    key: CertKey,
    chain: Vec<IssuedCert>,
}

fn client_identity(member: &MemberCa, validity: Validity) -> anyhow::Result<ClientIdentity> {
    let key = CertKey::generate()?;
    let cert = member.issue_client("teller", &key.public_key(), validity)?;
    Ok(ClientIdentity { key, chain: vec![cert, member.cert().clone()] })
}

/// A JSON-RPC client of `url` trusting only `root`, presenting `identity` if given.
fn provider(url: &str, root: &IssuedCert, identity: Option<&ClientIdentity>) -> anyhow::Result<RootProvider> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(root.der().to_vec()))?;
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match identity {
        Some(identity) => builder.with_client_auth_cert(
            identity.chain.iter().map(|cert| CertificateDer::from(cert.der().to_vec())).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(identity.key.private_key_der())),
        )?,
        None => builder.with_no_client_auth(),
    };
    let client = reqwest::Client::builder().tls_backend_preconfigured(config).timeout(TIMEOUT).build()?;
    Ok(RootProvider::new(RpcClient::new_http_with_client(client, url.parse()?)))
}

/// The node's count of failed handshakes for `reason`, from its metrics endpoint.
async fn failures(node: &SoloNode, reason: &str) -> anyhow::Result<u64> {
    let text =
        bcos_tests::http_client().get(format!("{}/metrics", node.endpoints().metrics)).send().await?.text().await?;
    let series = format!("bcos_rpc_tls_handshake_failures_total{{reason=\"{reason}\"}} ");
    Ok(text.lines().find_map(|line| line.strip_prefix(&series)).and_then(|n| n.trim().parse().ok()).unwrap_or(0))
}

/// Asserts `client` gets no answer and the node counts a failed handshake for `reason`.
async fn assert_refused(node: &SoloNode, client: RootProvider, reason: &str) -> anyhow::Result<()> {
    let before = failures(node, reason).await?;
    let answer = client.get_block_number().await;
    assert!(answer.is_err(), "{reason}: answered {answer:?}");
    wait_for(&format!("a {reason} handshake failure"), TIMEOUT, || async {
        Ok((failures(node, reason).await? > before).then_some(()))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_valid_certificate_of_this_chain() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path())?;
    let node = pki.node(dir.path(), true).await?;
    let url = node.endpoints().http.clone();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let localhost = url.replace("127.0.0.1", "localhost");
    let root = pki.ca.cert();

    // A client with a certificate from a member CA of this chain is served, by IP or by name.
    let client = client_identity(&pki.member, valid())?;
    assert_eq!(provider(&url, root, Some(&client))?.get_block_number().await?, 0);
    assert_eq!(provider(&localhost, root, Some(&client))?.get_block_number().await?, 0);

    // No client certificate.
    assert_refused(&node, provider(&url, root, None)?, "no_certificate").await?;
    // A client certificate issued under another chain's CA.
    let other = ChainCa::generate("other-chain", valid())?;
    let foreign = client_identity(&other.issue_member_ca(&bank(), valid())?, valid())?;
    assert_refused(&node, provider(&url, root, Some(&foreign))?, "bad_certificate").await?;
    // An expired client certificate.
    let past = Validity { not_before: SystemTime::now() - 10 * DAY, not_after: SystemTime::now() - DAY };
    assert_refused(&node, provider(&url, root, Some(&client_identity(&pki.member, past)?))?, "expired").await?;
    // A client that trusts another CA refuses the node, however good its own certificate.
    assert_refused(&node, provider(&url, other.cert(), Some(&client))?, "client_alert").await?;

    // Refusals do not disturb admitted clients.
    provider(&url, root, Some(&client))?.get_block_number().await?;
    assert!(node.log().contains("TLS client refused"), "{}", node.log());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificates_serves_clients_that_trust_the_chain_ca() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = Pki::new(dir.path())?;
    let node = pki.node(dir.path(), false).await?;
    let url = node.endpoints().http.clone();
    assert!(node.endpoints().ws.starts_with("wss://"), "{}", node.endpoints().ws);

    provider(&url, pki.ca.cert(), None)?.get_block_number().await?;
    provider(&url, pki.ca.cert(), Some(&client_identity(&pki.member, valid())?))?.get_block_number().await?;

    // Plain HTTP to the TLS port gets no answer.
    let plain: RootProvider = RootProvider::new(bcos_tests::rpc_client(url.replace("https://", "http://").parse()?));
    assert!(plain.get_block_number().await.is_err());
    wait_for("a protocol failure", TIMEOUT, || async { Ok((failures(&node, "protocol").await? > 0).then_some(())) })
        .await?;
    Ok(())
}
