//! Assembles a running node from its configuration: storage, chain, pool, block production,
//! JSON-RPC, gRPC and metrics, with one shutdown signal for all of them.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use bcos_consensus::{Engine, EngineConfig, RestoreError, Validators};
use bcos_sdk::{
    config::{ConfigError, Genesis, NodeConfig, P2pConfig, PeerAddress},
    crypto::{KeyError, NodeKey},
    pki::{NodeChain, RevocationList},
};
use prometheus::Registry;
use tokio::{sync::watch, task::JoinSet};

use crate::{
    chain::{Chain, ChainError, now_ms},
    consensus::{
        driver::{Driver, LiveState, registered_nodes, registered_peers},
        solo::SoloSealer,
        switch::ConsensusEngine,
    },
    metrics::{ChainMetrics, Health, PoolMetrics, RpcMetrics, RpcTlsMetrics},
    network::{
        Blacklist, Certificates, Multiaddr, Network, NetworkConfig, NetworkHandle, host_multiaddr, tcp_multiaddr,
    },
    rpc::{
        NodeApi, eth, grpc,
        tls::{TlsError, TlsServer},
    },
    storage::{BlockReader, RocksStore, StorageError},
    txpool::{PoolError, TxPool},
    version::NodeVersion,
};

/// Why a node could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// A configuration file is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The node key could not be loaded.
    #[error("node key: {0}")]
    Key(#[from] KeyError),
    /// The database could not be opened or is damaged.
    #[error("storage at {path}: {source}")]
    Storage {
        /// Database directory.
        path: PathBuf,
        /// Why.
        source: StorageError,
    },
    /// The chain could not be opened or a block could not be committed.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The pool journal could not be restored.
    #[error("restoring the transaction pool: {0}")]
    Pool(#[from] PoolError),
    /// The consensus engine's saved state cannot be used; starting without it could make this
    /// node vote twice.
    #[error(
        "consensus state saved in {path}: {source}; starting without it could make this node vote twice, so it does not start"
    )]
    ConsensusState {
        /// Database directory.
        path: PathBuf,
        /// Why.
        source: RestoreError,
    },
    /// This node's certificate is missing, unreadable or would be refused by its peers.
    #[error("certificate: {0}")]
    Certificate(String),
    /// TLS on the JSON-RPC port cannot be set up.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The genesis asks for something this build cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// A listener could not be bound or a server failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Addresses a running node listens on.
#[derive(Debug, Clone, Copy)]
pub struct Endpoints {
    /// JSON-RPC over HTTP and WebSocket.
    pub rpc: SocketAddr,
    /// Whether JSON-RPC is served over TLS (HTTPS and WSS).
    pub rpc_tls: bool,
    /// gRPC.
    pub grpc: SocketAddr,
    /// Metrics and probes.
    pub metrics: SocketAddr,
}

/// A started node.
pub struct RunningNode {
    /// Where it listens.
    pub endpoints: Endpoints,
    /// Its node id.
    pub node_id: alloy_primitives::B256,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<Result<(), ServiceError>>,
    rpc: jsonrpsee::server::ServerHandle,
}

/// A single consensus node is its own quorum: once started it is as current as the chain. A
/// node with peers is ready once it is current with them. A node whose chain needs a newer build
/// is never ready: it falls behind with every block.
struct NodeHealth {
    chain: Arc<Chain>,
    live: Arc<LiveState>,
}

impl Health for NodeHealth {
    fn ready(&self) -> Result<(), String> {
        if let Some(incompatible) = self.chain.incompatibility() {
            return Err(incompatible.to_string());
        }
        self.live.check()
    }
}

/// Starts a node reporting `version`: opens (or creates) its chain and begins serving and
/// producing blocks. Refuses to start when the chain runs under a compatibility version above
/// what `version` executes.
pub async fn start(config: &NodeConfig, version: NodeVersion) -> Result<RunningNode, ServiceError> {
    let genesis = Genesis::load(&config.genesis_file)?;
    let key = NodeKey::load(&config.node_key_file)?;
    let node_id = key.node_id();
    std::fs::create_dir_all(&config.data_dir)?;
    let db_path = config.data_dir.join("chain");
    let store = Arc::new(
        RocksStore::open(&db_path, config.storage.sync_writes)
            .map_err(|source| ServiceError::Storage { path: db_path.clone(), source })?,
    );
    let registry = Registry::new();
    let chain = Arc::new(Chain::open(
        store.clone(),
        &genesis,
        version.max_compatibility_version(),
        ChainMetrics::register(&registry),
    )?);
    let pool = Arc::new(TxPool::new(
        genesis.chain_id,
        config.txpool.clone(),
        chain.system_config().block_gas_limit,
        store.clone(),
        store.clone(),
        PoolMetrics::register(&registry),
    ));
    let restored = pool.restore()?;
    tracing::info!(
        target: "service",
        height = store.head_number(),
        restored,
        %node_id,
        version = version.software(),
        protocol = %version.protocol(),
        compatibility = chain.system_config().compatibility_version,
        max_compatibility = version.max_compatibility_version(),
        "chain opened"
    );

    let live = Arc::new(if config.p2p.is_none() { LiveState::solo() } else { LiveState::default() });
    let api = Arc::new(NodeApi {
        chain: chain.clone(),
        pool: pool.clone(),
        node_id,
        live: live.clone(),
        version: version.clone(),
        network: OnceLock::new(),
        metrics: RpcMetrics::register(&registry),
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();

    // The chain's revoked certificate serials: peers are admitted and RPC clients served against
    // this list, which the consensus driver keeps current after every block.
    let revoked = RevocationList::default();
    revoked.replace(chain.revoked_serials()?);
    let rpc_tls = match &config.rpc.tls {
        Some(tls) => {
            Some(TlsServer::new(tls, genesis.ca_cert_der(), revoked.clone(), RpcTlsMetrics::register(&registry))?)
        }
        None => None,
    };
    let (rpc, rpc_addr) = eth::start(&config.rpc, api.clone(), rpc_tls).await?;
    let grpc_listener = crate::metrics::bind(config.grpc.listen).await?;
    let grpc_addr = grpc_listener.local_addr()?;
    let metrics_listener = crate::metrics::bind(config.metrics.listen).await?;
    let metrics_addr = metrics_listener.local_addr()?;

    let grpc_shutdown = wait_for(shutdown_rx.clone());
    let grpc_api = api.clone();
    tasks.spawn(async move {
        grpc::serve(grpc_listener, grpc_api, grpc_shutdown)
            .await
            .map_err(|e| ServiceError::Io(std::io::Error::other(format!("grpc server: {e}"))))
    });
    let consensus_nodes = chain.consensus_nodes()?;
    let registered = registered_nodes(&chain)?;
    if !registered.contains(&node_id) {
        // A node joining after genesis only learns of its registration by syncing: it follows
        // the chain as an observer, and its peers admit it once the registry lists it.
        tracing::warn!(
            target: "service",
            %node_id,
            "this node is not in the node registry of its local chain; it follows as an observer until it syncs its registration"
        );
    }
    match &config.p2p {
        None if consensus_nodes == [node_id] && registered == [node_id] => {
            let sealer = SoloSealer::new(chain.clone(), pool, key);
            let sealer_shutdown = shutdown_rx.clone();
            tasks.spawn(async move { sealer.run(sealer_shutdown).await.map_err(ServiceError::from) });
        }
        None => {
            return Err(ServiceError::Unsupported(format!(
                "the chain registers {} nodes: node.yaml needs a p2p section",
                registered.len()
            )));
        }
        Some(p2p) => {
            let certificates = node_certificates(p2p, &genesis, &key, revoked, &registry)?;
            let setup = ConsensusSetup { p2p, certificates, version, live: live.clone() };
            let network =
                start_consensus(setup, &key, chain.clone(), pool, &registry, &mut tasks, shutdown_rx.clone()).await?;
            // Set once, here: the API was built before the network started.
            let _ = api.network.set(network);
        }
    }
    let metrics_shutdown = wait_for(shutdown_rx.clone());
    let health = Arc::new(NodeHealth { chain, live });
    tasks.spawn(async move {
        crate::metrics::serve(metrics_listener, registry, health, metrics_shutdown).await?;
        Ok(())
    });

    Ok(RunningNode {
        endpoints: Endpoints {
            rpc: rpc_addr,
            rpc_tls: config.rpc.tls.is_some(),
            grpc: grpc_addr,
            metrics: metrics_addr,
        },
        node_id,
        shutdown,
        tasks,
        rpc,
    })
}

/// What the network and the consensus driver are started with.
struct ConsensusSetup<'a> {
    p2p: &'a P2pConfig,
    certificates: Option<Certificates>,
    version: NodeVersion,
    /// Where the driver publishes readiness, leadership and peers for the probe and the APIs.
    live: Arc<LiveState>,
}

/// This node's certificates for peer admission: required when the genesis names a chain CA, and
/// checked here as peers will check them, so a bad certificate stops the node with a clear error.
fn node_certificates(
    p2p: &P2pConfig,
    genesis: &Genesis,
    key: &NodeKey,
    revoked: RevocationList,
    registry: &Registry,
) -> Result<Option<Certificates>, ServiceError> {
    let Some(ca) = genesis.ca_cert_der() else {
        tracing::warn!(target: "service", "the genesis names no chain CA: peers are admitted by node id alone");
        return Ok(None);
    };
    let file = p2p.cert_file.as_ref().ok_or_else(|| {
        ServiceError::Certificate("the genesis names a chain CA, so node.yaml needs p2p.certFile".into())
    })?;
    let chain = NodeChain::load(file).map_err(|e| ServiceError::Certificate(e.to_string()))?;
    let certificates = Certificates { ca, chain: chain.verify_order(), revoked };
    let verified = certificates
        .verify_own(&key.node_id(), std::time::SystemTime::now())
        .map_err(|e| ServiceError::Certificate(format!("{}: {e}", file.display())))?;
    crate::metrics::certificate_expiry(registry, verified.not_after());
    tracing::info!(
        target: "service",
        member = %verified.member().id,
        serial = %verified.serial(),
        "certificate loaded"
    );
    Ok(Some(certificates))
}

/// Starts the network and the consensus engine in force for the next block (none, for an
/// observer); returns the network.
async fn start_consensus(
    setup: ConsensusSetup<'_>,
    key: &NodeKey,
    chain: Arc<Chain>,
    pool: Arc<TxPool>,
    registry: &Registry,
    tasks: &mut JoinSet<Result<(), ServiceError>>,
    shutdown: watch::Receiver<bool>,
) -> Result<NetworkHandle, ServiceError> {
    let p2p = setup.p2p;
    let revoked = setup.certificates.as_ref().map(|certificates| certificates.revoked.clone());
    let mut bootstrap = Vec::new();
    for peer in &p2p.peers {
        bootstrap.push((peer.node_id, peer_multiaddr(peer)?));
    }
    let network_config = NetworkConfig {
        bootstrap,
        policy: Arc::new(Blacklist(p2p.blacklist.iter().copied().collect())),
        certificates: setup.certificates,
        version: setup.version,
        ..NetworkConfig::new(tcp_multiaddr(p2p.listen))
    };
    let (network, events) = Network::start(network_config, key, registry)
        .await
        .map_err(|e| ServiceError::Io(std::io::Error::other(format!("p2p on {}: {e}", p2p.listen))))?;
    network
        .set_peers(registered_peers(&chain)?)
        .await
        .map_err(|e| ServiceError::Io(std::io::Error::other(e.to_string())))?;
    let config = chain.system_config();
    let validators = Validators::new(chain.consensus_nodes()?)
        .ok_or_else(|| ServiceError::Unsupported("no consensus nodes".into()))?;
    let engine_config = EngineConfig {
        key: key.clone(),
        validators,
        height: chain.head()?.number + 1,
        timeout_ms: config.consensus_timeout_ms,
        now_ms: now_ms(),
    };
    let mut engine = ConsensusEngine::new(config.consensus_mode, engine_config);
    restore_engine(&mut engine, &chain)?;
    tracing::info!(target: "service", role = engine.name(), height = engine.height(), "consensus started");
    let mut driver = Driver::new(engine, chain, pool, network.clone(), key, registry)?;
    if let Some(revoked) = revoked {
        driver = driver.follow_revocations_into(revoked)?;
    }
    let driver = driver.publishing_into(setup.live);
    tasks.spawn(async move { driver.run(events, shutdown).await.map_err(ServiceError::from) });
    Ok(network)
}

/// Gives the engine what it saved before the node stopped.
fn restore_engine(engine: &mut ConsensusEngine, chain: &Chain) -> Result<(), ServiceError> {
    let store = chain.store();
    let Some(saved) = store.consensus_state().map_err(|source| ServiceError::Storage { path: store.path(), source })?
    else {
        return Ok(());
    };
    match engine.restore(&saved) {
        Ok(()) => {
            tracing::info!(target: "service", role = engine.name(), height = engine.height(), round = engine.round(), "consensus state restored");
            Ok(())
        }
        // The chain switched engines since: the old engine's heights are all committed.
        Err(RestoreError::WrongEngine { found, .. }) => {
            tracing::info!(target: "service", %found, "saved state of the previous consensus engine is obsolete");
            Ok(())
        }
        Err(source) => Err(ServiceError::ConsensusState { path: store.path(), source }),
    }
}

/// The libp2p address of a configured peer: IP addresses directly, other hosts by DNS.
fn peer_multiaddr(peer: &PeerAddress) -> Result<Multiaddr, ServiceError> {
    peer.host_port()
        .and_then(|(host, port)| host_multiaddr(host, port))
        .ok_or_else(|| ServiceError::Unsupported(format!("peer address {:?} is not host:port", peer.address)))
}

async fn wait_for(mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}

impl RunningNode {
    /// Runs until `stop` resolves or a component fails; then shuts every component down and
    /// waits for them. Returns the first failure.
    pub async fn run_until(mut self, stop: impl std::future::Future<Output = ()>) -> Result<(), ServiceError> {
        let mut failure = None;
        tokio::select! {
            () = stop => {}
            finished = self.tasks.join_next() => {
                failure = finished.and_then(|r| match r {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(e) => Some(ServiceError::Io(std::io::Error::other(format!("task failed: {e}")))),
                });
                if let Some(e) = &failure {
                    tracing::error!(target: "service", error = %e, "component failed; shutting down");
                }
            }
        }
        let _ = self.shutdown.send(true);
        let _ = self.rpc.stop();
        self.rpc.clone().stopped().await;
        while let Some(result) = self.tasks.join_next().await {
            if let Ok(Err(e)) = result {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}
