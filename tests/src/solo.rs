//! One `bcos-node run` process that is a chain of its own (its single consensus node seals
//! blocks alone), for tests of one node's interfaces with settings `devnet` does not offer: a
//! chain CA in the genesis and TLS on JSON-RPC.

use std::path::{Path, PathBuf};

use alloy::primitives::Address;
use anyhow::Context;
use bcos_sdk::{
    config::{
        Committee, Genesis, GrpcConfig, MetricsConfig, NodeConfig, RpcConfig, RpcTlsConfig, StorageConfig,
        SystemConfig, TxPoolConfig,
    },
    crypto::NodeKey,
};
use tokio::process::Child;

use crate::{
    CHAIN_ID, Endpoints,
    cluster::{Launch, now_ms, spawn_node},
    node_binary,
};

/// What a [`SoloNode`]'s files say beyond the defaults.
#[derive(Debug, Clone, Default)]
pub struct SoloSpec {
    /// The chain CA certificate (PEM) the genesis names as `caCert`.
    pub ca_cert: Option<String>,
    /// The node file's `rpc.tls`; its files must exist when the node starts.
    pub rpc_tls: Option<RpcTlsConfig>,
}

/// A running single-node chain. Dropping it kills the process (it is spawned kill-on-drop).
pub struct SoloNode {
    _child: Child,
    endpoints: Endpoints,
    log: PathBuf,
}

impl SoloNode {
    /// Writes a node key, genesis and node file into `dir` (created if missing) and starts the
    /// node on free loopback ports.
    pub async fn start(dir: &Path, spec: SoloSpec) -> anyhow::Result<Self> {
        crate::install_tls_provider();
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = NodeKey::generate();
        key.save_new(&dir.join("node.key"))?;
        let genesis = Genesis {
            chain_id: CHAIN_ID,
            timestamp_ms: now_ms(),
            system_config: SystemConfig { block_interval_ms: 200, ..SystemConfig::default() },
            consensus_nodes: vec![key.node_id()],
            observer_nodes: Vec::new(),
            node_addresses: Default::default(),
            ca_cert: spec.ca_cert,
            committee: Committee::single(Address::repeat_byte(0xad)),
            permissions: Default::default(),
            alloc: Default::default(),
        };
        genesis.save(&dir.join("genesis.yaml"))?;
        let config = NodeConfig {
            data_dir: PathBuf::from("data"),
            genesis_file: PathBuf::from("genesis.yaml"),
            node_key_file: PathBuf::from("node.key"),
            rpc: RpcConfig { tls: spec.rpc_tls, ..RpcConfig::on(([127, 0, 0, 1], 0).into()) },
            grpc: GrpcConfig { listen: ([127, 0, 0, 1], 0).into() },
            metrics: MetricsConfig { listen: ([127, 0, 0, 1], 0).into() },
            txpool: TxPoolConfig::default(),
            storage: StorageConfig::default(),
            p2p: None,
        };
        let config_file = dir.join("node.yaml");
        config.save(&config_file)?;
        let log = dir.join("node.log");
        let (child, endpoints) =
            spawn_node(&node_binary()?, &config_file, &log, key.node_id(), &Launch::default()).await?;
        Ok(Self { _child: child, endpoints, log })
    }

    /// Where the node listens.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Everything the node wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
