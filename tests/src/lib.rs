//! Test harness for end-to-end tests: starts `bcos-node` processes on loopback, each with its own
//! data directory, and gives tests the endpoints and keys they need. Nodes are real processes so
//! tests can kill them with SIGKILL and restart them on the same data.
//!
//! The `bcos-node` binary is taken from `BCOS_NODE_BIN`, or else from the Cargo target directory
//! this test binary was built in (build it first: `cargo build --bins`).
//!
//! [`Devnet`] runs `bcos-node devnet` (all nodes in one process). [`Cluster`] runs a chain of
//! `bcos-node run` processes joined through TCP proxies ([`proxy`]), so tests can crash, pause and
//! partition single nodes; [`checks`] compares their chains and [`Load`] keeps transactions
//! flowing meanwhile. [`admin`] governs a running cluster through its committee's proposals and
//! votes (consensus switches, node registry changes, roles, the audit log); [`checks`] also reads
//! quorum certificates and engine metrics. [`SoloNode`] runs one `bcos-node run` process that is
//! a chain of its own, with the genesis CA and JSON-RPC TLS settings a test gives it. [`chart`]
//! renders the operator's Helm chart.
//!
//! [`kube`] runs a real Kubernetes control plane and plays the kubelet for its Pods, and
//! [`operator`] runs the operator against it, for the operator's end-to-end tests, which share
//! the fixture of [`operator_chain`].

pub mod admin;
pub mod chart;
pub mod checks;
mod cluster;
pub mod kube;
mod load;
pub mod operator;
pub mod operator_chain;
pub mod proxy;
mod solo;

pub use checks::{BlockSummary, Certificate, EngineMetrics};
pub use cluster::{CHAIN_ID, Cluster, ClusterSpec, Launch};
pub use load::{Asset, Load, LoadReport, Sent};
pub use solo::{SoloNode, SoloSpec};

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bcos_sdk::crypto::AccountKey;

/// How long a node may take to start and print its endpoints (generous: 2 shared cores).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Makes ring the process's rustls crypto provider. reqwest is built with rustls but without a
/// provider of its own (its default, aws-lc-rs, takes too long to build here), so every reqwest
/// client, alloy's HTTP transport included, panics when built before a provider is installed.
/// The harness calls this whenever it starts a node, before any test builds a client.
pub(crate) fn install_tls_provider() {
    // An error means a provider is installed already, which serves as well.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs `bcos-node args...` to completion: whether it succeeded, its stdout and its stderr.
pub fn run_node<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> anyhow::Result<(bool, String, String)> {
    let output = Command::new(node_binary()?).args(args).output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// The one HTTP client for every plain JSON-RPC, metrics and probe request of the tests. Each
/// reqwest client built with its defaults loads the platform's root certificates (reqwest has TLS
/// here for the mutual-TLS tests), which in a debug build takes long enough to slow tests that
/// read many blocks to a crawl; this one trusts no roots and speaks plain HTTP only.
pub fn http_client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            install_tls_provider();
            reqwest::Client::builder()
                .tls_certs_only(Vec::new())
                .build()
                .unwrap_or_else(|e| panic!("a plain HTTP client always builds: {e}"))
        })
        .clone()
}

/// A JSON-RPC client of `url` over [`http_client`]; give it to
/// `ProviderBuilder::connect_client` or `RootProvider::new`.
pub fn rpc_client(url: reqwest::Url) -> alloy::rpc::client::RpcClient {
    alloy::rpc::client::RpcClient::new_http_with_client(http_client(), url)
}

/// Path of the `bcos-node` binary.
pub fn node_binary() -> anyhow::Result<PathBuf> {
    operator::binary("bcos-node", "BCOS_NODE_BIN")
}

/// Endpoints a node printed when it started.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// `http://host:port` of JSON-RPC (`https://` when it serves TLS).
    pub http: String,
    /// `ws://host:port` of JSON-RPC (`wss://` when it serves TLS).
    pub ws: String,
    /// `http://host:port` of gRPC.
    pub grpc: String,
    /// `http://host:port` of metrics and probes.
    pub metrics: String,
}

/// A `bcos-node devnet` process.
pub struct Devnet {
    dir: PathBuf,
    child: Option<Child>,
    endpoints: Vec<Endpoints>,
    log: PathBuf,
    extra_args: Vec<String>,
}

impl Devnet {
    /// Creates and starts a new single-node devnet in `dir` on free ports.
    pub fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, &[])
    }

    /// Like [`Devnet::start`], passing extra `devnet` options (for example a block interval).
    pub fn start_with(dir: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        install_tls_provider();
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        let log = dir.with_extension("log");
        let (child, endpoints) = spawn_devnet(dir, &extra_args, &log)?;
        Ok(Self { dir: dir.to_owned(), child: Some(child), endpoints, log, extra_args })
    }

    /// Node 0's endpoints.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints[0]
    }

    /// Every node's endpoints, by node index.
    pub fn all_endpoints(&self) -> &[Endpoints] {
        &self.endpoints
    }

    /// The devnet's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin key: the devnet's whole governing committee (with `--permissions`, also the
    /// holder of every role).
    pub fn admin_key(&self) -> anyhow::Result<AccountKey> {
        Ok(AccountKey::load(&self.dir.join("admin.key"))?)
    }

    /// Kills the node with SIGKILL, as a crash would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("sending SIGKILL")?;
            child.wait().context("reaping the killed node")?;
        }
        Ok(())
    }

    /// Starts the node again on the same directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let (child, endpoints) = spawn_devnet(&self.dir, &self.extra_args, &self.log)?;
        self.child = Some(child);
        self.endpoints = endpoints;
        Ok(())
    }

    /// Everything the node wrote to stderr so far (for assertion messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Ports below this are never handed out by the kernel for port 0 or outgoing connections
/// (Linux's default `ip_local_port_range` starts at 32768).
const EPHEMERAL_START: u16 = 32_768;
/// Lowest port [`free_port_range`] picks.
const FIXED_START: u16 = 20_000;

/// The first of `count` consecutive loopback ports that are free now, below the kernel's
/// ephemeral range and at a random place: nodes listen on such ports for their whole life,
/// restarts included, so nothing the kernel hands out meanwhile (port 0 listeners, outgoing
/// connections, other tests' nodes and proxies) can take one, and concurrent tests stay apart.
pub fn free_port_range(count: u16) -> anyhow::Result<u16> {
    use std::hash::{BuildHasher, Hasher};
    let span = EPHEMERAL_START - FIXED_START - count;
    for attempt in 0..200u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(attempt);
        hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos());
        let base = FIXED_START + u16::try_from(hasher.finish() % u64::from(span))?;
        if (base..base + count).all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()) {
            return Ok(base);
        }
    }
    bail!("no {count} consecutive free ports between {FIXED_START} and {EPHEMERAL_START}")
}

fn spawn_devnet(dir: &Path, extra_args: &[String], log: &Path) -> anyhow::Result<(Child, Vec<Endpoints>)> {
    let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log).context("opening node log")?;
    let mut child = Command::new(node_binary()?)
        .arg("devnet")
        .arg("--dir")
        .arg(dir)
        .args(["--rpc-port", "0", "--grpc-port", "0", "--metrics-port", "0"])
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .context("starting bcos-node devnet")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let (lines_tx, lines_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let (mut rpcs, mut grpcs, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = match lines_rx.recv_timeout(remaining) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                bail!(
                    "node did not print its endpoints in time; log: {}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        };
        if line.starts_with("devnet running") {
            break;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("json-rpc"), Some(url)) => rpcs.extend(url.strip_prefix("http://").map(str::to_owned)),
            (Some("grpc"), Some(url)) => grpcs.push(url.to_owned()),
            (Some("metrics"), Some(url)) => metrics.extend(url.strip_suffix("/metrics").map(str::to_owned)),
            _ => {}
        }
    }
    if rpcs.is_empty() || rpcs.len() != grpcs.len() || rpcs.len() != metrics.len() {
        bail!("incomplete endpoints");
    }
    let endpoints = rpcs
        .into_iter()
        .zip(grpcs)
        .zip(metrics)
        .map(|((rpc, grpc), metrics)| Endpoints {
            http: format!("http://{rpc}"),
            ws: format!("ws://{rpc}"),
            grpc,
            metrics,
        })
        .collect();
    Ok((child, endpoints))
}

/// Polls `check` every 50 ms until it returns `Some`, or fails after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The ERC-20 artifact compiled from `contracts/ERC20.sol`.
pub mod erc20 {
    alloy::sol!(
        #[sol(rpc)]
        ERC20,
        "../contracts/build/ERC20.json"
    );
}

/// Client bindings of the system config contract.
pub mod system_config {
    alloy::sol!(
        #[sol(rpc)]
        "../contracts/system/ISystemConfig.sol"
    );
}

/// Client bindings of the node registry contract.
pub mod node_registry {
    alloy::sol!(
        #[sol(rpc)]
        "../contracts/system/INodeRegistry.sol"
    );
}

/// Client bindings of the governance contract.
pub mod governance {
    alloy::sol!(
        #[sol(rpc, all_derives)]
        "../contracts/system/IGovernance.sol"
    );
}

/// Client bindings of the roles and permissions contract.
pub mod permissions {
    alloy::sol!(
        #[sol(rpc)]
        "../contracts/system/IPermissions.sol"
    );
}

/// Client bindings of the contract versions registry.
pub mod contract_versions {
    alloy::sol!(
        #[sol(rpc, all_derives)]
        "../contracts/system/IContractVersions.sol"
    );
}
