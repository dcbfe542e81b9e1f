//! A consortium chain of N `bcos-node run` processes on loopback, with a TCP [`Proxy`] on every
//! link between them, so tests can crash (SIGKILL), silence (SIGSTOP) and partition nodes.
//!
//! [`Cluster::start`] writes what `bcos-node devnet` would (node keys, one admin key, genesis and
//! one `node.yaml` per node) into a temporary directory, except that node `i` knows node `j` at
//! the proxy port of the link `(i, j)` rather than at `j`'s own peer-to-peer port. JSON-RPC, gRPC
//! and metrics listen on port 0; each start prints the ports it got, which the cluster parses.
//!
//! [`ClusterSpec::observers`] adds observer nodes to the genesis: processes after the consensus
//! nodes, wired the same way, that follow the chain by sync and never vote.
//! [`ClusterSpec::with_committee`] names a governing committee of several keys (one by default,
//! deciding alone), and [`ClusterSpec::with_permissions`] switches the role checks on, with the
//! funded accounts holding `deployer` and `transactor` so loads and probes still run.
//!
//! [`Cluster::start_mixed`] starts some nodes as another release would run ([`Launch`]: the
//! software version they report, the highest compatibility version they execute), and
//! [`Cluster::restart_as`] restarts a node as another release, as a rolling upgrade does.
//!
//! The cluster pins the `bcos-node` binary when it starts (a hard link in its directory), so a
//! rebuild of the shared target directory during a test cannot restart a node with another build.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{B256, U256},
    providers::RootProvider,
};
use anyhow::{Context, bail, ensure};
use bcos_sdk::{
    config::{
        Committee, ConsensusMode, Genesis, GenesisAccount, GrpcConfig, MetricsConfig, NodeConfig, P2pConfig,
        PeerAddress, Permissions, RpcConfig, StorageConfig, SystemConfig, TxPoolConfig,
    },
    crypto::{AccountKey, NodeKey},
    pki::{ChainCa, Member, Validity},
    types::system::Role,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{Endpoints, free_port_range, node_binary, proxy::Proxy};

/// How long a node may take to start and print its endpoints (generous: 2 shared cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a cluster's certificates are valid.
const CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// Chain id of every cluster.
pub const CHAIN_ID: u64 = 20200;
/// Accounts funded at genesis, for tests and [`crate::Load`].
const FUNDED_ACCOUNTS: usize = 8;
/// Native balance of each funded account, in wei.
const FUNDED_BALANCE: u128 = 1_000_000_000_000_000_000_000_000;
/// The chain CA's directory, inside the cluster's.
const CA_DIR: &str = "ca";
/// Each node's data directory, inside its node directory.
const DATA_DIR: &str = "data";
/// Set this variable to keep the cluster's directory (keys, data, logs) after the test.
const KEEP_ENV: &str = "BCOS_TEST_KEEP";
/// The node's override of the software version it reports (`bcos_node::version`).
const REPORTED_VERSION_ENV: &str = "BCOS_REPORTED_VERSION";

/// How a node process runs beyond its `node.yaml`: as this build (the default), or as a build of
/// another release, which one binary plays through the node's rollout-test overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Launch {
    /// The software version the node reports (`BCOS_REPORTED_VERSION`); `None`: the build's.
    pub reported_version: Option<String>,
    /// The highest chain compatibility version the node executes
    /// (`--max-compatibility-version`); `None`: the build's.
    pub max_compatibility_version: Option<u32>,
}

impl Launch {
    /// A build of an earlier release: it reports `version` and executes the chain up to
    /// compatibility version `max` only.
    pub fn release(version: &str, max: u32) -> Self {
        Self { reported_version: Some(version.to_owned()), max_compatibility_version: Some(max) }
    }
}

/// What chain a [`Cluster`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterSpec {
    /// Number of consensus nodes in the genesis (each its own process, indices `0..nodes`).
    pub nodes: usize,
    /// Number of observer nodes in the genesis (each its own process, indices after the
    /// consensus nodes).
    pub observers: usize,
    /// Nodes outside the genesis (indices after the observers): each has a key, a node file
    /// and a place in the proxies, but no certificate and no process until the test issues one
    /// (from a member CA of its choice, with `bcos-node ca` and the CA in [`Cluster::ca_dir`])
    /// and starts it with [`Cluster::restart`]. The genesis nodes do not list them as peers;
    /// they dial the genesis nodes, which admit them once the registry does.
    pub spares: usize,
    /// Consensus algorithm.
    pub consensus: ConsensusMode,
    /// Block interval of the genesis system config.
    pub block_interval_ms: u64,
    /// Base consensus timeout of the genesis system config (PBFT view / Raft election timeout).
    pub consensus_timeout_ms: u64,
    /// Most transactions per block. Debug builds execute a few milliseconds per transfer, so a
    /// block holding a whole backlog (after a stall) can take longer to build and re-execute
    /// than a short view timeout; small blocks keep the fault tests within their timeouts.
    pub max_txs_per_block: u64,
    /// Members of the governing committee (their keys: [`Cluster::committee_key`]).
    pub committee: usize,
    /// Approvals a proposal needs.
    pub threshold: u32,
    /// Whether transactions are checked against roles.
    pub permissions: bool,
}

impl ClusterSpec {
    /// `nodes` PBFT nodes with short timeouts, so fault tests stay quick.
    pub fn pbft(nodes: usize) -> Self {
        Self {
            nodes,
            observers: 0,
            spares: 0,
            consensus: ConsensusMode::Pbft,
            block_interval_ms: 200,
            consensus_timeout_ms: 1_000,
            max_txs_per_block: 20,
            committee: 1,
            threshold: 1,
            permissions: false,
        }
    }

    /// `nodes` Raft nodes with short timeouts.
    pub fn raft(nodes: usize) -> Self {
        Self { consensus: ConsensusMode::Raft, ..Self::pbft(nodes) }
    }

    /// The same chain with `observers` observer nodes in the genesis.
    pub fn with_observers(self, observers: usize) -> Self {
        Self { observers, ..self }
    }

    /// The same chain with `spares` nodes outside the genesis (see [`ClusterSpec::spares`]).
    pub fn with_spares(self, spares: usize) -> Self {
        Self { spares, ..self }
    }

    /// The same chain governed by a committee of `members` of which `threshold` must approve.
    pub fn with_committee(self, members: usize, threshold: u32) -> Self {
        Self { committee: members, threshold, ..self }
    }

    /// The same chain with role checks on; the funded accounts may deploy and transact, nobody
    /// else.
    pub fn with_permissions(self) -> Self {
        Self { permissions: true, ..self }
    }

    /// The consensus timeout as a duration.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.consensus_timeout_ms)
    }
}

/// One node process and where its files are.
struct Node {
    binary: PathBuf,
    id: B256,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    endpoints: Option<Endpoints>,
    paused: bool,
    launch: Launch,
}

/// A running chain of node processes joined through proxies. Dropping it kills every process.
pub struct Cluster {
    spec: ClusterSpec,
    // Dropped in this order: processes, then proxies, then the directory.
    nodes: Vec<Node>,
    proxy: Proxy,
    funded: Vec<[u8; 32]>,
    committee: Vec<[u8; 32]>,
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Cluster {
    /// Creates the chain in a new temporary directory and starts every node.
    pub async fn start(spec: ClusterSpec) -> anyhow::Result<Self> {
        Self::start_mixed(spec, &[]).await
    }

    /// [`Cluster::start`], with each node of `launches` started as its [`Launch`] says (and
    /// restarted so, until [`Cluster::restart_as`]).
    pub async fn start_mixed(spec: ClusterSpec, launches: &[(usize, Launch)]) -> anyhow::Result<Self> {
        ensure!(spec.nodes >= 2, "a cluster has at least two nodes");
        ensure!(spec.committee >= 1, "a chain has a committee");
        crate::install_tls_provider();
        let dir = tempfile::tempdir()?;
        let path = dir.path().to_owned();
        let genesis_nodes = spec.nodes + spec.observers;
        let total = genesis_nodes + spec.spares;
        let count = u16::try_from(total).context("too many nodes")?;
        let base = free_port_range(count)?;
        let listen_ports: Vec<u16> = (0..count).map(|i| base + i).collect();
        let proxy = Proxy::start(&listen_ports).await?;
        let binary = pin_binary(&path)?;

        let committee: Vec<AccountKey> = (0..spec.committee).map(|_| AccountKey::generate()).collect();
        for (i, member) in committee.iter().enumerate() {
            member.save_new(&path.join(format!("committee{i}.key")))?;
        }
        let keys: Vec<NodeKey> = (0..total).map(|_| NodeKey::generate()).collect();
        let ids: Vec<B256> = keys.iter().map(NodeKey::node_id).collect();
        let funded: Vec<AccountKey> = (0..FUNDED_ACCOUNTS).map(|_| AccountKey::generate()).collect();
        // One chain CA and one member institution certify every node, as in a devnet.
        let validity = Validity::starting(std::time::SystemTime::now(), CERT_VALIDITY);
        let ca = ChainCa::generate("test cluster", validity)?;
        let member = ca.issue_member_ca(&Member { name: "Test Bank".into(), id: "testbank".into() }, validity)?;
        let ca_dir = path.join(CA_DIR);
        std::fs::create_dir_all(&ca_dir)?;
        ca.save_new(&ca_dir.join("ca.crt"), &ca_dir.join("ca.key"))?;
        let genesis = Genesis {
            chain_id: CHAIN_ID,
            timestamp_ms: now_ms(),
            system_config: SystemConfig {
                block_interval_ms: spec.block_interval_ms,
                consensus_mode: spec.consensus,
                consensus_timeout_ms: spec.consensus_timeout_ms,
                max_txs_per_block: spec.max_txs_per_block,
                ..SystemConfig::default()
            },
            consensus_nodes: ids[..spec.nodes].to_vec(),
            observer_nodes: ids[spec.nodes..genesis_nodes].to_vec(),
            node_addresses: Default::default(),
            ca_cert: Some(ca.cert().pem().to_owned()),
            committee: Committee {
                members: committee.iter().map(AccountKey::address).collect(),
                threshold: spec.threshold,
            },
            permissions: Permissions {
                enabled: spec.permissions,
                roles: if spec.permissions {
                    funded.iter().map(|key| (key.address(), vec![Role::Deployer, Role::Transactor])).collect()
                } else {
                    Default::default()
                },
            },
            alloc: funded
                .iter()
                .map(|key| {
                    (key.address(), GenesisAccount { balance: U256::from(FUNDED_BALANCE), ..Default::default() })
                })
                .collect(),
        };
        genesis.save(&path.join("genesis.yaml"))?;

        let mut nodes = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let node_dir = path.join(format!("node{index}"));
            std::fs::create_dir_all(&node_dir)?;
            key.save_new(&node_dir.join("node.key"))?;
            if index < genesis_nodes {
                member.issue_node_chain(&key.node_id(), validity)?.save_new(&node_dir.join("node.crt"))?;
            }
            let mut peers = Vec::new();
            for (other, other_key) in keys.iter().enumerate().take(genesis_nodes) {
                if let Some(port) = proxy.port(index, other) {
                    peers.push(PeerAddress { node_id: other_key.node_id(), address: format!("127.0.0.1:{port}") });
                }
            }
            let config = NodeConfig {
                data_dir: PathBuf::from(DATA_DIR),
                genesis_file: PathBuf::from("../genesis.yaml"),
                node_key_file: PathBuf::from("node.key"),
                rpc: RpcConfig::on(([127, 0, 0, 1], 0).into()),
                grpc: GrpcConfig { listen: ([127, 0, 0, 1], 0).into() },
                metrics: MetricsConfig { listen: ([127, 0, 0, 1], 0).into() },
                txpool: TxPoolConfig::default(),
                storage: StorageConfig::default(),
                p2p: Some(P2pConfig {
                    listen: ([127, 0, 0, 1], listen_ports[index]).into(),
                    peers,
                    blacklist: Vec::new(),
                    cert_file: Some(PathBuf::from("node.crt")),
                }),
            };
            let config_file = node_dir.join("node.yaml");
            config.save(&config_file)?;
            nodes.push(Node {
                binary: binary.clone(),
                id: key.node_id(),
                config: config_file,
                log: path.join(format!("node{index}.log")),
                child: None,
                endpoints: None,
                paused: false,
                launch: launches
                    .iter()
                    .find(|(i, _)| *i == index)
                    .map(|(_, launch)| launch.clone())
                    .unwrap_or_default(),
            });
        }
        let mut cluster = Self {
            spec,
            nodes,
            proxy,
            funded: funded.iter().map(AccountKey::secret).collect(),
            committee: committee.iter().map(AccountKey::secret).collect(),
            dir: Some(dir),
            path,
        };
        // Start every genesis node at once: each spends most of its start-up opening its database.
        let starts = cluster.nodes[..genesis_nodes]
            .iter()
            .map(|node| spawn_node(&node.binary, &node.config, &node.log, node.id, &node.launch));
        let started = futures::future::join_all(starts).await;
        for (node, result) in cluster.nodes.iter_mut().zip(started) {
            let (child, endpoints) = result?;
            node.child = Some(child);
            node.endpoints = Some(endpoints);
        }
        Ok(cluster)
    }

    /// The chain's spec.
    pub fn spec(&self) -> ClusterSpec {
        self.spec
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a cluster has nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every genesis node's index (spares are not included).
    pub fn all(&self) -> Vec<usize> {
        (0..self.spec.nodes + self.spec.observers).collect()
    }

    /// The nodes the genesis made consensus nodes.
    pub fn genesis_consensus(&self) -> Vec<usize> {
        (0..self.spec.nodes).collect()
    }

    /// The nodes the genesis made observers.
    pub fn genesis_observers(&self) -> Vec<usize> {
        (self.spec.nodes..self.spec.nodes + self.spec.observers).collect()
    }

    /// The nodes outside the genesis (see [`ClusterSpec::spares`]).
    pub fn spares(&self) -> Vec<usize> {
        (self.spec.nodes + self.spec.observers..self.nodes.len()).collect()
    }

    /// The chain CA's directory (`ca.crt`, `ca.key`), as `bcos-node ca init` writes it.
    pub fn ca_dir(&self) -> PathBuf {
        self.path.join(CA_DIR)
    }

    /// Node `i`'s directory (`node.key`, `node.crt`, `node.yaml`).
    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.path.join(format!("node{i}"))
    }

    /// Directory with the genesis, keys, node files, data and logs.
    pub fn dir(&self) -> &Path {
        &self.path
    }

    /// The key of committee member `i` (also in `committee<i>.key` in the cluster's directory).
    pub fn committee_key(&self, i: usize) -> anyhow::Result<AccountKey> {
        self.committee
            .get(i)
            .and_then(|secret| AccountKey::from_secret(*secret))
            .with_context(|| format!("no committee member {i}"))
    }

    /// Node `i`'s data directory (the `data_dir` of its `node.yaml`).
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.node_dir(i).join(DATA_DIR)
    }

    /// Deletes node `i`'s data directory (blocks, state, pool journal, consensus state), keeping
    /// its key and configuration: restarted, it starts from the genesis. It must be killed.
    pub fn delete_data(&self, i: usize) -> anyhow::Result<()> {
        ensure!(self.nodes.get(i).is_some_and(|node| node.child.is_none()), "node {i} still runs");
        let dir = self.data_dir(i);
        std::fs::remove_dir_all(&dir).with_context(|| format!("deleting {}", dir.display()))
    }

    /// Node `i`'s node id.
    pub fn node_id(&self, i: usize) -> B256 {
        self.nodes[i].id
    }

    /// The node ids of `nodes`, in order.
    pub fn node_ids(&self, nodes: &[usize]) -> Vec<B256> {
        nodes.iter().map(|&i| self.node_id(i)).collect()
    }

    /// The index of the node with id `id`.
    pub fn index_of(&self, id: &B256) -> Option<usize> {
        self.nodes.iter().position(|node| node.id == *id)
    }

    /// Keys of accounts funded at genesis (the same for every call).
    pub fn funded_accounts(&self) -> Vec<AccountKey> {
        self.funded.iter().filter_map(|secret| AccountKey::from_secret(*secret)).collect()
    }

    /// The endpoints node `i` printed at its latest start; an error while it is killed.
    pub fn endpoints(&self, i: usize) -> anyhow::Result<&Endpoints> {
        self.nodes.get(i).and_then(|node| node.endpoints.as_ref()).with_context(|| format!("node {i} is not running"))
    }

    /// A JSON-RPC client of node `i` (without fillers: reads and raw transactions).
    pub fn provider(&self, i: usize) -> anyhow::Result<RootProvider> {
        Ok(RootProvider::new(crate::rpc_client(self.endpoints(i)?.http.parse()?)))
    }

    /// Whether node `i` is running and not paused.
    pub fn is_live(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|node| node.child.is_some() && !node.paused)
    }

    /// The nodes that are running and not paused.
    pub fn live(&self) -> Vec<usize> {
        (0..self.nodes.len()).filter(|&i| self.is_live(i)).collect()
    }

    /// The proxies between the nodes.
    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }

    /// Drops all traffic between nodes of `a` and nodes of `b` until [`Cluster::heal`].
    pub fn cut(&self, a: &[usize], b: &[usize]) {
        self.proxy.cut(a, b);
    }

    /// Lets all traffic through again.
    pub fn heal(&self) {
        self.proxy.heal();
    }

    /// Kills node `i` with SIGKILL, as a crash would, and reaps it.
    pub async fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        let node = self.nodes.get_mut(i).context("no such node")?;
        if let Some(mut child) = node.child.take() {
            child.start_kill().context("sending SIGKILL")?;
            child.wait().await.context("reaping the killed node")?;
        }
        node.endpoints = None;
        node.paused = false;
        Ok(())
    }

    /// Starts node `i` again on the same directory (killing it first if it runs).
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i).await?;
        let node = &mut self.nodes[i];
        let (child, endpoints) = spawn_node(&node.binary, &node.config, &node.log, node.id, &node.launch).await?;
        node.child = Some(child);
        node.endpoints = Some(endpoints);
        Ok(())
    }

    /// [`Cluster::restart`] as `launch` says, from now on: a node upgraded (or downgraded) to
    /// another release. An error when the node exits before it serves (with its log's end).
    pub async fn restart_as(&mut self, i: usize, launch: Launch) -> anyhow::Result<()> {
        self.nodes.get_mut(i).context("no such node")?.launch = launch;
        self.restart(i).await
    }

    /// Stops node `i` with SIGSTOP: it keeps its connections but says and answers nothing.
    pub async fn pause(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP").await?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// Lets a paused node `i` go on with SIGCONT.
    pub async fn resume(&mut self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT").await?;
        self.nodes[i].paused = false;
        Ok(())
    }

    async fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let pid = self
            .nodes
            .get(i)
            .and_then(|node| node.child.as_ref())
            .and_then(Child::id)
            .with_context(|| format!("node {i} is not running"))?;
        let status = Command::new("kill").arg(signal).arg(pid.to_string()).status().await?;
        ensure!(status.success(), "kill {signal} {pid} failed: {status}");
        Ok(())
    }

    /// Everything node `i` wrote to stderr so far, over all its starts.
    pub fn log(&self, i: usize) -> String {
        self.nodes.get(i).and_then(|node| std::fs::read_to_string(&node.log).ok()).unwrap_or_default()
    }

    /// The last `lines` lines of every node's log, for failure messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 0..self.nodes.len() {
            let log = self.log(i);
            let all: Vec<&str> = log.lines().collect();
            out.push_str(&format!("--- node {i} ({}) ---\n", self.nodes[i].id));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                // SIGKILL also ends a stopped process.
                let _ = child.start_kill();
                let deadline = Instant::now() + Duration::from_secs(5);
                while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if (std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some())
            && let Some(dir) = self.dir.take()
        {
            eprintln!("cluster directory kept: {}", dir.keep().display());
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// Links (or else copies) the `bcos-node` binary into `dir`: a rebuild replaces the file in the
/// target directory with a new one and leaves this one as it is.
fn pin_binary(dir: &Path) -> anyhow::Result<PathBuf> {
    let source = node_binary()?;
    let pinned = dir.join("bcos-node");
    if std::fs::hard_link(&source, &pinned).is_err() {
        std::fs::copy(&source, &pinned).with_context(|| format!("copying {}", source.display()))?;
    }
    Ok(pinned)
}

/// Starts `bcos-node run` as `launch` says and waits for it to print its endpoints; stderr goes
/// to `log`.
pub(crate) async fn spawn_node(
    binary: &Path,
    config: &Path,
    log: &Path,
    id: B256,
    launch: &Launch,
) -> anyhow::Result<(Child, Endpoints)> {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).context("opening node log")?;
    let mut command = Command::new(binary);
    command.arg("run").arg("--config").arg(config);
    // Set or removed, never inherited: a variable in the test's environment must not change
    // what every node reports.
    match &launch.reported_version {
        Some(version) => command.env(REPORTED_VERSION_ENV, version),
        None => command.env_remove(REPORTED_VERSION_ENV),
    };
    if let Some(max) = launch.max_compatibility_version {
        command.arg("--max-compatibility-version").arg(max.to_string());
    }
    let mut child =
        command.stdout(Stdio::piped()).stderr(stderr).kill_on_drop(true).spawn().context("starting bcos-node run")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let parsed = tokio::time::timeout(START_TIMEOUT, async {
        let (mut printed_id, mut rpc, mut grpc, mut metrics) = (None, None, None, None);
        while let Some(line) = lines.next_line().await? {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("node:"), Some("id"), Some(id)) => printed_id = Some(id.parse::<B256>()?),
                // `http://` and `ws://` URLs, or `https://` and `wss://` with TLS.
                (Some("json-rpc"), Some(http), Some(ws)) => rpc = Some((http.to_owned(), ws.to_owned())),
                (Some("grpc"), Some(url), _) => grpc = Some(url.to_owned()),
                (Some("metrics"), Some(url), _) => metrics = url.strip_suffix("/metrics").map(str::to_owned),
                _ => {}
            }
            if let (Some(printed_id), Some((http, ws)), Some(grpc), Some(metrics)) =
                (&printed_id, &rpc, &grpc, &metrics)
            {
                ensure!(*printed_id == id, "node printed id {printed_id}, expected {id}");
                return Ok(Endpoints {
                    http: http.clone(),
                    ws: ws.clone(),
                    grpc: grpc.clone(),
                    metrics: metrics.clone(),
                });
            }
        }
        bail!("node exited before printing its endpoints")
    })
    .await;
    let endpoints = match parsed {
        Ok(Ok(endpoints)) => endpoints,
        Ok(Err(e)) => {
            let _ = child.start_kill();
            bail!("{e}; log {}:\n{}", log.display(), tail(log, 40))
        }
        Err(_) => {
            let _ = child.start_kill();
            bail!("node did not print its endpoints within {START_TIMEOUT:?}; log:\n{}", tail(log, 40))
        }
    };
    // Keep reading stdout so the node never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok((child, endpoints))
}

fn tail(file: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
