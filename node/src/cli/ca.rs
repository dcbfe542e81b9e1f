//! `bcos-node ca`: the chain's certificate authority on the command line.
//!
//! File layout: a chain CA directory holds `ca.crt` and `ca.key`; a member directory holds
//! `member.crt` and `member.key`; a node certificate file certifies the node's existing
//! `node.key` and holds the node certificate followed by its member CA's (the chain the node
//! presents to peers); a client directory holds `client.key` and `client.crt`; a server directory
//! holds `server.key` and `server.crt` (the server certificate followed by its member CA's, ready
//! for `rpc.tls` in node.yaml). Keys are written with mode 0600, and nothing existing is ever
//! overwritten.
//!
//! `revoke` is the one command that talks to the chain: the revocation list contract accepts only
//! the governance contract, so it sends a committee member's governance proposal through a node's
//! gRPC API and reports whether the revocation ran or awaits other members' votes.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use alloy_consensus::TxEip1559;
use alloy_primitives::{B256, Bytes, TxKind};
use alloy_sol_types::{SolCall, SolEvent};
use anyhow::{Context as _, bail};
use bcos_sdk::{
    client::{ClientError, NodeClient},
    crypto::{AccountKey, NodeKey},
    pki::{
        CertKey, CertRole, ChainCa, IssuedCert, Member, MemberCa, NoRevocation, Validity, save_chain_new,
        verify_node_chain,
    },
    proto,
    types::system::{CERT_REVOCATION_ADDRESS, GOVERNANCE_ADDRESS, ICertRevocation, IGovernance},
};
use clap::{Args, Subcommand};

use crate::executor::decode_revert;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// Gas of a proposal transaction: a system contract call costs far less, and the chain charges
/// no gas price, so a generous limit costs nothing.
const PROPOSAL_GAS_LIMIT: u64 = 1_000_000;
/// How long one request to the node may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the proposal may take to be committed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the receipt is asked for while waiting.
const RECEIPT_POLL: Duration = Duration::from_millis(200);

/// Certificate authority commands.
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the chain CA (`ca.crt`, `ca.key`) in a new or empty directory.
    Init {
        /// Where to write the CA.
        #[arg(long)]
        dir: PathBuf,
        /// The chain's name (subject O of the CA).
        #[arg(long)]
        chain_name: String,
        /// Days the CA certificate is valid.
        #[arg(long, default_value_t = 3650)]
        days: u64,
    },
    /// Issue an institution's member CA (`member.crt`, `member.key`).
    Member {
        /// The chain CA directory.
        #[arg(long)]
        ca_dir: PathBuf,
        /// Institution name (subject O).
        #[arg(long)]
        name: String,
        /// Institution id (subject OU).
        #[arg(long)]
        id: String,
        /// Where to write the member CA.
        #[arg(long)]
        out: PathBuf,
        /// Days the member CA certificate is valid.
        #[arg(long, default_value_t = 1825)]
        days: u64,
    },
    /// Certify a node's key (its `node.key`) with a member CA.
    Node {
        /// The member CA directory.
        #[arg(long)]
        member_dir: PathBuf,
        /// The node's key file.
        #[arg(long)]
        node_key: PathBuf,
        /// Where to write the node certificate, followed by the member CA certificate (the
        /// chain the node presents as `p2p.certFile`).
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Create an SDK client key and certificate (`client.key`, `client.crt`) with a member CA.
    Client {
        /// The member CA directory.
        #[arg(long)]
        member_dir: PathBuf,
        /// Client name (subject CN).
        #[arg(long)]
        name: String,
        /// Where to write the client key and certificate.
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Create a TLS key and certificate for a node's JSON-RPC endpoint (`server.key`, and
    /// `server.crt` holding the certificate followed by the member CA's, for `rpc.tls` in
    /// node.yaml). Clients check the name they connect to against the names given here.
    Server {
        /// The member CA directory.
        #[arg(long)]
        member_dir: PathBuf,
        /// A DNS name clients connect to; repeat for several.
        #[arg(long)]
        dns: Vec<String>,
        /// An IP address clients connect to; repeat for several.
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Where to write the key and certificate.
        #[arg(long)]
        out: PathBuf,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = 365)]
        days: u64,
    },
    /// Verify a node certificate against the chain CA, as admission does, and print what it
    /// certifies.
    Verify {
        /// The chain CA certificate.
        #[arg(long)]
        ca: PathBuf,
        /// The member CA certificate that issued the node certificate.
        #[arg(long)]
        member: PathBuf,
        /// The node certificate.
        #[arg(long)]
        node: PathBuf,
    },
    /// Revoke a certificate on chain: a committee member proposes the revocation to the
    /// governance contract; it runs at once when the committee's threshold is 1, otherwise once
    /// enough members approve. Every node then refuses peers and clients presenting it.
    Revoke(RevokeArgs),
}

/// Options of `ca revoke`.
#[derive(Debug, Args)]
pub struct RevokeArgs {
    /// The certificate to revoke (of a chain file, its first certificate).
    #[arg(long)]
    cert: PathBuf,
    /// Why, recorded on chain with the serial.
    #[arg(long)]
    reason: String,
    /// gRPC endpoint of a node of the chain, for example http://127.0.0.1:50051.
    #[arg(long)]
    grpc: String,
    /// Account key file of a committee member, who signs the proposal.
    #[arg(long)]
    key: PathBuf,
    /// Blocks, from the node's current height, the proposal stays open for votes.
    #[arg(long, default_value_t = 100)]
    expires_in: u64,
}

fn valid_for(days: u64) -> anyhow::Result<Validity> {
    let duration =
        DAY.checked_mul(u32::try_from(days).context("--days is too large")?).context("--days is too large")?;
    Ok(Validity::starting(SystemTime::now(), duration))
}

fn create_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn load_member(dir: &Path) -> anyhow::Result<MemberCa> {
    Ok(MemberCa::load(&dir.join("member.crt"), &dir.join("member.key"))?)
}

/// Runs one CA command. Only `revoke` waits on the network; the others work on local files.
pub(super) async fn run(command: CaCommand) -> anyhow::Result<()> {
    match command {
        CaCommand::Init { dir, chain_name, days } => {
            create_dir(&dir)?;
            let ca = ChainCa::generate(&chain_name, valid_for(days)?)?;
            ca.save_new(&dir.join("ca.crt"), &dir.join("ca.key"))?;
            println!("chain CA serial {} written to {}", ca.cert().serial(), dir.display());
        }
        CaCommand::Member { ca_dir, name, id, out, days } => {
            let ca = ChainCa::load(&ca_dir.join("ca.crt"), &ca_dir.join("ca.key"))?;
            create_dir(&out)?;
            let member = ca.issue_member_ca(&Member { name, id }, valid_for(days)?)?;
            member.save_new(&out.join("member.crt"), &out.join("member.key"))?;
            println!("member CA serial {} written to {}", member.cert().serial(), out.display());
        }
        CaCommand::Node { member_dir, node_key, out, days } => {
            let member = load_member(&member_dir)?;
            let node_id = NodeKey::load(&node_key)?.node_id();
            let chain = member.issue_node_chain(&node_id, valid_for(days)?)?;
            chain.save_new(&out)?;
            println!("node {node_id} certificate serial {} written to {}", chain.node.serial(), out.display());
        }
        CaCommand::Client { member_dir, name, out, days } => {
            let member = load_member(&member_dir)?;
            create_dir(&out)?;
            let key = CertKey::generate()?;
            let cert = member.issue_client(&name, &key.public_key(), valid_for(days)?)?;
            key.save_new(&out.join("client.key"))?;
            cert.save_new(&out.join("client.crt"))?;
            println!("client {name} certificate serial {} written to {}", cert.serial(), out.display());
        }
        CaCommand::Server { member_dir, dns, ip, out, days } => {
            let names: Vec<String> = dns.into_iter().chain(ip.iter().map(IpAddr::to_string)).collect();
            if names.is_empty() {
                anyhow::bail!("give at least one --dns name or --ip address that clients connect to");
            }
            let member = load_member(&member_dir)?;
            let (key_file, cert_file) = (out.join("server.key"), out.join("server.crt"));
            // Check both before writing either, so a refusal leaves no key without its certificate.
            if let Some(existing) = [&key_file, &cert_file].into_iter().find(|file| file.exists()) {
                anyhow::bail!("{}: already exists; refusing to overwrite", existing.display());
            }
            create_dir(&out)?;
            let key = CertKey::generate()?;
            let cert = member.issue_server(&names, &key.public_key(), valid_for(days)?)?;
            key.save_new(&key_file)?;
            save_chain_new(&[&cert, member.cert()], &cert_file)?;
            println!(
                "server certificate serial {} for {} written to {}",
                cert.serial(),
                names.join(", "),
                out.display()
            );
        }
        CaCommand::Verify { ca, member, node } => {
            let ca = IssuedCert::load(&ca, CertRole::ChainCa)?;
            let member = IssuedCert::load(&member, CertRole::MemberCa)?;
            let node = IssuedCert::load(&node, CertRole::Node)?;
            let verified = verify_node_chain(ca.der(), &[member.der(), node.der()], SystemTime::now(), &NoRevocation)?;
            let expires = verified.not_after().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            println!(
                "node {} of {} ({}), serial {}, valid until {} (unix seconds)",
                verified.node_id(),
                verified.member().name,
                verified.member().id,
                verified.serial(),
                expires
            );
        }
        CaCommand::Revoke(args) => revoke(args).await?,
    }
    Ok(())
}

/// Proposes the revocation of `args.cert` and reports the proposal's outcome.
async fn revoke(args: RevokeArgs) -> anyhow::Result<()> {
    // The role only names the certificate in errors: any certificate the chain's CAs issued
    // (node, client, server or member CA) can be revoked by its serial.
    let serial = IssuedCert::load(&args.cert, CertRole::Node)?.serial().clone();
    let key = AccountKey::load(&args.key)?;
    let grpc = args.grpc.as_str();
    let mut client = request(grpc, "connecting", NodeClient::connect(grpc)).await?;
    let status = request(grpc, "reading the status", client.status()).await?;
    let nonce = request(grpc, "reading the key's nonce", client.account(key.address())).await?.nonce;
    let revoke = ICertRevocation::revokeCall { serial: Bytes::copy_from_slice(serial.as_bytes()), reason: args.reason };
    let propose = IGovernance::proposeCall {
        target: CERT_REVOCATION_ADDRESS,
        data: revoke.abi_encode().into(),
        expiresAtBlock: status.height.checked_add(args.expires_in).context("--expires-in is too large")?,
    };
    let raw = key.sign_transaction(TxEip1559 {
        chain_id: status.chain_id,
        nonce,
        gas_limit: PROPOSAL_GAS_LIMIT,
        to: TxKind::Call(GOVERNANCE_ADDRESS),
        input: propose.abi_encode().into(),
        ..Default::default()
    });
    let hash = request(grpc, "sending the proposal", client.send_raw_transaction(raw)).await?;
    let receipt = wait_for_receipt(&mut client, hash).await?;
    if !receipt.success {
        let reason = decode_revert(&receipt.revert_output).unwrap_or_else(|| "no reason given".to_owned());
        bail!("proposal transaction {hash} reverted in block {}: {reason}", receipt.block_number);
    }
    let id = governance_events::<IGovernance::ProposalCreated>(&receipt)
        .next()
        .context("the proposal's receipt has no ProposalCreated event")?
        .id;
    if governance_events::<IGovernance::ProposalExecuted>(&receipt).any(|executed| executed.id == id) {
        println!("certificate serial {serial} revoked: proposal {id} executed in block {}", receipt.block_number);
    } else if let Some(failed) =
        governance_events::<IGovernance::ProposalFailed>(&receipt).find(|failed| failed.id == id)
    {
        bail!("proposal {id} to revoke serial {serial} failed: {}", failed.reason);
    } else {
        println!(
            "certificate serial {serial}: proposal {id} awaits more committee votes (open until block {})",
            propose.expiresAtBlock
        );
    }
    Ok(())
}

/// Runs one request to the node at `grpc`, bounded by [`REQUEST_TIMEOUT`], naming both in errors.
async fn request<T>(grpc: &str, what: &str, call: impl Future<Output = Result<T, ClientError>>) -> anyhow::Result<T> {
    let answer = tokio::time::timeout(REQUEST_TIMEOUT, call)
        .await
        .with_context(|| format!("{what} ({grpc}): no answer in {REQUEST_TIMEOUT:?}"))?;
    answer.with_context(|| format!("{what} ({grpc})"))
}

/// Polls for the receipt of `hash` until it is committed or [`COMMIT_TIMEOUT`] passes.
async fn wait_for_receipt(client: &mut NodeClient, hash: B256) -> anyhow::Result<proto::Receipt> {
    let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
    loop {
        match tokio::time::timeout(REQUEST_TIMEOUT, client.receipt(hash)).await {
            Ok(Ok(receipt)) => return Ok(receipt),
            // Not committed yet; a slow answer is retried like one.
            Ok(Err(ClientError::Status(status))) if status.code() == tonic::Code::NotFound => {}
            Err(_) => {}
            Ok(Err(e)) => return Err(e).with_context(|| format!("reading the receipt of {hash}")),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("proposal transaction {hash} was not committed within {COMMIT_TIMEOUT:?}");
        }
        tokio::time::sleep(RECEIPT_POLL).await;
    }
}

/// The events of type `E` the governance contract logged in `receipt`; its other events do not
/// decode as `E` and are skipped.
fn governance_events<E: SolEvent>(receipt: &proto::Receipt) -> impl Iterator<Item = E> + '_ {
    receipt.logs.iter().filter(|log| log.address.as_slice() == GOVERNANCE_ADDRESS.as_slice()).filter_map(|log| {
        let topics: Option<Vec<B256>> = log.topics.iter().map(|t| B256::try_from(t.as_slice()).ok()).collect();
        E::decode_raw_log(topics?, &log.data).ok()
    })
}
