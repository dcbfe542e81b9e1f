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

use alloy_primitives::Bytes;
use anyhow::{Context as _, bail};
use bcos_sdk::{
    crypto::{AccountKey, NodeKey},
    governance::{Governor, ProposalOutcome},
    pki::{
        CertKey, CertRole, ChainCa, IssuedCert, Member, MemberCa, NoRevocation, Validity, save_chain_new,
        verify_node_chain,
    },
    types::system::{CERT_REVOCATION_ADDRESS, ICertRevocation},
};
use clap::{Args, Subcommand};

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

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
    let mut governor = Governor::connect(&args.grpc, AccountKey::load(&args.key)?).await?;
    let revoke = ICertRevocation::revokeCall { serial: Bytes::copy_from_slice(serial.as_bytes()), reason: args.reason };
    match governor.propose(CERT_REVOCATION_ADDRESS, &revoke, args.expires_in).await? {
        ProposalOutcome::Executed { id, block } => {
            println!("certificate serial {serial} revoked: proposal {id} executed in block {block}");
        }
        ProposalOutcome::Failed { id, reason } => bail!("proposal {id} to revoke serial {serial} failed: {reason}"),
        ProposalOutcome::Pending { id, expires_at_block } => println!(
            "certificate serial {serial}: proposal {id} awaits more committee votes (open until block {expires_at_block})"
        ),
    }
    Ok(())
}
