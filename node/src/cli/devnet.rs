//! `bcos-node devnet`: a local chain in one process, resumable from its directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use bcos_sdk::{
    config::{
        Committee, ConsensusMode, Genesis, GrpcConfig, MetricsConfig, NodeConfig, P2pConfig, PeerAddress, Permissions,
        RpcConfig, StorageConfig, SystemConfig, TxPoolConfig,
    },
    crypto::{AccountKey, NodeKey},
    pki::{ChainCa, Member, Validity},
    types::system::Role,
};
use clap::Args;

use crate::{service, version::NodeVersion};

/// Options of `devnet`.
#[derive(Debug, Args)]
pub struct DevnetArgs {
    /// Number of consensus nodes.
    #[arg(long, default_value_t = 1)]
    pub nodes: u16,
    /// Number of observer nodes (they follow the chain and serve RPC, but never vote); they come
    /// after the consensus nodes in numbering and ports.
    #[arg(long, default_value_t = 0)]
    pub observers: u16,
    /// Consensus algorithm.
    #[arg(long, default_value = "pbft")]
    pub consensus: ConsensusMode,
    /// Directory holding keys, genesis, node files and data; reused on the next run.
    #[arg(long, default_value = "devnet")]
    pub dir: PathBuf,
    /// Chain id of a new devnet.
    #[arg(long, default_value_t = 20200)]
    pub chain_id: u64,
    /// Block interval of a new devnet, in milliseconds.
    #[arg(long, default_value_t = 500)]
    pub block_interval_ms: u64,
    /// Most transactions per block of a new devnet (smaller blocks keep latency low under load).
    #[arg(long, default_value_t = SystemConfig::default().max_txs_per_block)]
    pub max_txs_per_block: u64,
    /// JSON-RPC port of node 0 (node i uses this + i).
    #[arg(long, default_value_t = 8545)]
    pub rpc_port: u16,
    /// gRPC port of node 0 (node i uses this + i).
    #[arg(long, default_value_t = 50051)]
    pub grpc_port: u16,
    /// Metrics port of node 0 (node i uses this + i).
    #[arg(long, default_value_t = 9100)]
    pub metrics_port: u16,
    /// Peer-to-peer port of node 0 (node i uses this + i); unused by a single node.
    #[arg(long, default_value_t = 30300)]
    pub p2p_port: u16,
    /// Checks transactions against roles on a new devnet (deploying needs `deployer`, other
    /// transactions `transactor`); the admin account gets every role. The admin is the whole
    /// governing committee either way, so its proposals take effect at once.
    #[arg(long)]
    pub permissions: bool,
}

const GENESIS_FILE: &str = "genesis.yaml";
const ADMIN_KEY_FILE: &str = "admin.key";
/// How long the devnet's CA and certificates are valid.
const CERT_VALIDITY: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 24 * 60 * 60);

fn node_dir(dir: &Path, index: u16) -> PathBuf {
    dir.join(format!("node{index}"))
}

/// Creates keys, genesis and node files for a new devnet.
fn create(args: &DevnetArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let admin = AccountKey::generate();
    admin.save_new(&args.dir.join(ADMIN_KEY_FILE))?;
    let total = args.nodes.checked_add(args.observers).context("too many nodes")?;
    let keys: Vec<NodeKey> = (0..total).map(|_| NodeKey::generate()).collect();
    // Base port 0 lets every node's listener pick a free port (it prints the one it got).
    let port = |base: u16, index: u16| -> anyhow::Result<u16> {
        if base == 0 {
            return Ok(0);
        }
        base.checked_add(index).context("port number overflows; choose lower base ports")
    };
    if total > 1 && args.p2p_port == 0 {
        bail!("--p2p-port 0: peers must know each other's ports; give a base port");
    }
    // One chain CA and one member institution; every node gets a certificate from it.
    let validity = Validity::starting(std::time::SystemTime::now(), CERT_VALIDITY);
    let ca = ChainCa::generate(&format!("devnet {}", args.chain_id), validity)?;
    let ca_dir = args.dir.join("ca");
    std::fs::create_dir_all(&ca_dir).with_context(|| format!("creating {}", ca_dir.display()))?;
    ca.save_new(&ca_dir.join("ca.crt"), &ca_dir.join("ca.key"))?;
    let member = ca.issue_member_ca(&Member { name: "Devnet".into(), id: "devnet".into() }, validity)?;
    member.save_new(&ca_dir.join("member.crt"), &ca_dir.join("member.key"))?;
    let mut peers = Vec::new();
    for (index, key) in (0..total).zip(&keys) {
        peers.push(PeerAddress {
            node_id: key.node_id(),
            address: format!("127.0.0.1:{}", port(args.p2p_port, index)?),
        });
    }
    for (index, key) in (0..total).zip(&keys) {
        let dir = node_dir(&args.dir, index);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        key.save_new(&dir.join("node.key"))?;
        member.issue_node_chain(&key.node_id(), validity)?.save_new(&dir.join("node.crt"))?;
        let p2p = (total > 1).then(|| -> anyhow::Result<P2pConfig> {
            Ok(P2pConfig {
                listen: ([127, 0, 0, 1], port(args.p2p_port, index)?).into(),
                peers: peers.iter().filter(|p| p.node_id != key.node_id()).cloned().collect(),
                blacklist: Vec::new(),
                cert_file: Some(PathBuf::from("node.crt")),
            })
        });
        let config = NodeConfig {
            data_dir: PathBuf::from("data"),
            genesis_file: PathBuf::from("../").join(GENESIS_FILE),
            node_key_file: PathBuf::from("node.key"),
            rpc: RpcConfig::on(([127, 0, 0, 1], port(args.rpc_port, index)?).into()),
            grpc: GrpcConfig { listen: ([127, 0, 0, 1], port(args.grpc_port, index)?).into() },
            metrics: MetricsConfig { listen: ([127, 0, 0, 1], port(args.metrics_port, index)?).into() },
            txpool: TxPoolConfig::default(),
            storage: StorageConfig::default(),
            p2p: p2p.transpose()?,
        };
        config.save(&dir.join("node.yaml"))?;
    }
    let node_ids: Vec<_> = keys.iter().map(NodeKey::node_id).collect();
    let (consensus_nodes, observer_nodes) = node_ids.split_at(usize::from(args.nodes));
    // With checks on, the admin holds every role so the devnet stays usable from its one key.
    let permissions = Permissions {
        enabled: args.permissions,
        roles: if args.permissions { [(admin.address(), Role::ALL.to_vec())].into() } else { Default::default() },
    };
    let genesis = Genesis {
        chain_id: args.chain_id,
        timestamp_ms: crate::chain::now_ms(),
        system_config: SystemConfig {
            block_interval_ms: args.block_interval_ms,
            max_txs_per_block: args.max_txs_per_block,
            consensus_mode: args.consensus,
            ..SystemConfig::default()
        },
        consensus_nodes: consensus_nodes.to_vec(),
        observer_nodes: observer_nodes.to_vec(),
        node_addresses: Default::default(),
        ca_cert: Some(ca.cert().pem().to_owned()),
        committee: Committee::single(admin.address()),
        permissions,
        alloc: Default::default(),
    };
    genesis.save(&args.dir.join(GENESIS_FILE))?;
    Ok(())
}

/// Runs the devnet until Ctrl-C or SIGTERM.
pub(super) async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let genesis_path = args.dir.join(GENESIS_FILE);
    if genesis_path.exists() {
        println!("resuming devnet in {}", args.dir.display());
    } else {
        create(&args)?;
        println!("created devnet in {}", args.dir.display());
    }
    let genesis = Genesis::load(&genesis_path)?;
    let admin = AccountKey::load(&args.dir.join(ADMIN_KEY_FILE))?;
    println!(
        "chain id {}  consensus {}  permissions {}  admin account {} (the committee; key in {})",
        genesis.chain_id,
        genesis.system_config.consensus_mode,
        if genesis.permissions.enabled { "on" } else { "off" },
        admin.address(),
        args.dir.join(ADMIN_KEY_FILE).display()
    );
    let node_count = u16::try_from(genesis.consensus_nodes.len() + genesis.observer_nodes.len())
        .context("too many nodes in genesis")?;
    let version = NodeVersion::from_env()?;
    let mut nodes = Vec::new();
    for index in 0..node_count {
        let config = NodeConfig::load(&node_dir(&args.dir, index).join("node.yaml"))?;
        let node = service::start(&config, version.clone()).await.with_context(|| format!("starting node {index}"))?;
        super::print_endpoints(&format!("node {index}"), &node.endpoints, node.node_id);
        nodes.push(node);
    }
    println!("devnet running; Ctrl-C to stop");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let handles: Vec<_> = nodes
        .into_iter()
        .map(|node| {
            let mut stop = stop_rx.clone();
            tokio::spawn(node.run_until(async move {
                let _ = stop.wait_for(|stopped| *stopped).await;
            }))
        })
        .collect();
    super::ctrl_c_or_term().await;
    let _ = stop_tx.send(true);
    for handle in handles {
        handle.await.context("node task panicked")??;
    }
    println!("devnet stopped");
    Ok(())
}
