//! Command line: `run`, `devnet`, `keygen` and `ca`.

pub mod ca;
mod devnet;

use std::path::PathBuf;

use anyhow::Context as _;
use bcos_sdk::{
    config::NodeConfig,
    crypto::{AccountKey, NodeKey},
};
use clap::{Parser, Subcommand};

use crate::{service, version::NodeVersion};

/// The BCOS node.
#[derive(Debug, Parser)]
#[command(name = "bcos-node", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node from its node.yaml (what a container runs).
    ///
    /// The software version the node reports can be overridden with the environment variable
    /// BCOS_REPORTED_VERSION (a semantic version), for rollout tests.
    Run {
        /// The node file.
        #[arg(long, short)]
        config: PathBuf,
        /// For rollout tests: execute the chain only up to this compatibility version, as a
        /// build of an earlier release would (at most this build's own maximum).
        #[arg(long, hide = true)]
        max_compatibility_version: Option<u32>,
    },
    /// Start a local chain with generated keys and genesis; rerun on the same --dir to resume it.
    Devnet(devnet::DevnetArgs),
    /// The chain's certificate authority: create it, issue member CAs, node, client and server
    /// certificates, verify a node's chain, and revoke a certificate on chain.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// Create a key file (mode 0600; never overwrites).
    Keygen {
        /// Where to write the key.
        #[arg(long)]
        out: PathBuf,
        /// Write a secp256k1 account key instead of an Ed25519 node key.
        #[arg(long)]
        account: bool,
    },
}

/// Runs the command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run { config, max_compatibility_version } => {
            let mut version = NodeVersion::from_env()?;
            if let Some(max) = max_compatibility_version {
                version = version.with_max_compatibility_version(max)?;
            }
            let config = NodeConfig::load(&config)?;
            let node = service::start(&config, version).await?;
            print_endpoints("node", &node.endpoints, node.node_id);
            node.run_until(ctrl_c_or_term()).await?;
            Ok(())
        }
        Command::Devnet(args) => devnet::run(args).await,
        Command::Ca(command) => ca::run(command).await,
        Command::Keygen { out, account } => {
            if account {
                let key = AccountKey::generate();
                key.save_new(&out)?;
                println!("account {} written to {}", key.address(), out.display());
            } else {
                let key = NodeKey::generate();
                key.save_new(&out)?;
                println!("node id {} written to {}", key.node_id(), out.display());
            }
            Ok(())
        }
    }
}

async fn ctrl_c() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!(target: "cli", "interrupted; shutting down"),
        Err(e) => {
            tracing::error!(target: "cli", error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
}

/// Also stops on SIGTERM, which is how Kubernetes and process supervisors stop a node.
async fn terminated() -> anyhow::Result<()> {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("SIGTERM handler")?;
    term.recv().await;
    Ok(())
}

pub(crate) async fn ctrl_c_or_term() {
    tokio::select! {
        () = ctrl_c() => {}
        _ = terminated() => tracing::info!(target: "cli", "terminated; shutting down"),
    }
}

pub(crate) fn print_endpoints(name: &str, endpoints: &service::Endpoints, node_id: alloy_primitives::B256) {
    let (http, ws) = if endpoints.rpc_tls { ("https", "wss") } else { ("http", "ws") };
    println!(
        "{name}: id {node_id}\n  json-rpc {http}://{rpc} {ws}://{rpc}\n  grpc     http://{grpc}\n  metrics  http://{metrics}/metrics",
        rpc = endpoints.rpc,
        grpc = endpoints.grpc,
        metrics = endpoints.metrics,
    );
}
