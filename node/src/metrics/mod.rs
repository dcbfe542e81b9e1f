//! Prometheus metrics and the `/metrics`, `/healthz` and `/readyz` endpoints.
//!
//! Each module owns a metrics struct registered in the node's one [`Registry`]; every name starts
//! with `bcos_`.

mod server;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

pub use server::{Health, bind, serve};

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    // Names are constants of this module, so a clash is a programming error caught by the tests.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        tracing::error!(target: "metrics", error = %e, "metric registered twice");
    }
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}")))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}")))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets);
    register(registry, Histogram::with_opts(opts).unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}")))
}

/// Transaction pool metrics.
#[derive(Clone)]
pub struct PoolMetrics {
    /// Pending transactions.
    pub size: IntGauge,
    /// Transactions admitted.
    pub admitted: IntCounter,
    /// Transactions refused, by reason.
    pub rejected: IntCounterVec,
    /// Transactions dropped because block production found them unexecutable.
    pub evicted: IntCounter,
}

impl PoolMetrics {
    /// Registers the pool metrics.
    pub fn register(registry: &Registry) -> Self {
        let rejected = IntCounterVec::new(
            Opts::new("bcos_txpool_rejected_total", "Transactions refused by the pool, by reason"),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        Self {
            size: gauge(registry, "bcos_txpool_size", "Pending transactions in the pool"),
            admitted: counter(registry, "bcos_txpool_admitted_total", "Transactions admitted to the pool"),
            rejected: register(registry, rejected),
            evicted: counter(registry, "bcos_txpool_evicted_total", "Pooled transactions found unexecutable"),
        }
    }
}

/// Chain (block production and commit) metrics.
#[derive(Clone)]
pub struct ChainMetrics {
    /// Height of the latest committed block.
    pub height: IntGauge,
    /// Transactions committed.
    pub committed_txs: IntCounter,
    /// Blocks committed.
    pub committed_blocks: IntCounter,
    /// Time to execute a block.
    pub execution_seconds: Histogram,
    /// Time to write a block.
    pub commit_seconds: Histogram,
    /// Transactions per block.
    pub block_txs: Histogram,
    /// Chain compatibility version in force for the next block.
    pub compatibility_version: IntGauge,
    /// Highest compatibility version this node executes.
    pub max_compatibility_version: IntGauge,
    /// 1 once the chain runs under a compatibility version above that: the node applies no
    /// more blocks until it is upgraded.
    pub incompatible: IntGauge,
}

impl ChainMetrics {
    /// Registers the chain metrics.
    pub fn register(registry: &Registry) -> Self {
        let seconds = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
        Self {
            height: gauge(registry, "bcos_block_height", "Height of the latest committed block"),
            committed_txs: counter(registry, "bcos_committed_transactions_total", "Transactions committed"),
            committed_blocks: counter(registry, "bcos_committed_blocks_total", "Blocks committed"),
            execution_seconds: histogram(
                registry,
                "bcos_block_execution_seconds",
                "Time to execute a block",
                seconds.clone(),
            ),
            commit_seconds: histogram(registry, "bcos_block_commit_seconds", "Time to write a block", seconds),
            block_txs: histogram(
                registry,
                "bcos_block_transactions",
                "Transactions per block",
                vec![0.0, 1.0, 10.0, 100.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0],
            ),
            compatibility_version: gauge(
                registry,
                "bcos_compatibility_version",
                "Chain compatibility version in force for the next block",
            ),
            max_compatibility_version: gauge(
                registry,
                "bcos_node_max_compatibility_version",
                "Highest chain compatibility version this node executes",
            ),
            incompatible: gauge(
                registry,
                "bcos_node_incompatible",
                "1 when the chain needs a compatibility version above what this node executes (it applies no more blocks)",
            ),
        }
    }
}

/// JSON-RPC and gRPC metrics.
#[derive(Clone)]
pub struct RpcMetrics {
    /// Calls by API and method.
    pub calls: IntCounterVec,
    /// Error answers by API and method.
    pub errors: IntCounterVec,
    /// Call latency by API and method.
    pub latency: HistogramVec,
}

impl RpcMetrics {
    /// Registers the RPC metrics.
    pub fn register(registry: &Registry) -> Self {
        let labels = &["api", "method"];
        let calls = IntCounterVec::new(Opts::new("bcos_rpc_calls_total", "RPC calls"), labels)
            .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        let errors = IntCounterVec::new(Opts::new("bcos_rpc_errors_total", "RPC calls answered with an error"), labels)
            .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        let latency = HistogramVec::new(
            HistogramOpts::new("bcos_rpc_latency_seconds", "RPC call latency")
                .buckets(vec![0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
            labels,
        )
        .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        Self {
            calls: register(registry, calls),
            errors: register(registry, errors),
            latency: register(registry, latency),
        }
    }
}

/// Metrics of TLS on the JSON-RPC port.
#[derive(Clone)]
pub struct RpcTlsMetrics {
    /// Handshakes that failed, by reason: `no_certificate`, `expired`, `not_yet_valid`,
    /// `revoked`, `bad_certificate` (the client's certificate was refused), `client_alert` (the
    /// client refused ours), `protocol` (not TLS, or broken TLS), `timeout`, `io`, `tls`.
    pub handshake_failures: IntCounterVec,
}

impl RpcTlsMetrics {
    /// Registers the TLS metrics.
    pub fn register(registry: &Registry) -> Self {
        let failures = IntCounterVec::new(
            Opts::new("bcos_rpc_tls_handshake_failures_total", "JSON-RPC TLS handshakes that failed, by reason"),
            &["reason"],
        )
        .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        Self { handshake_failures: register(registry, failures) }
    }
}

/// Consensus engine metrics.
#[derive(Clone)]
pub struct ConsensusMetrics {
    /// 1 for the engine running now, 0 for the other, by mode.
    pub engine: IntGaugeVec,
    /// First height the running engine decided.
    pub engine_since_height: IntGauge,
    /// Engine switches since the node started.
    pub switches: IntCounter,
    /// Round (PBFT view, Raft term) at the height being decided.
    pub round: IntGauge,
}

impl ConsensusMetrics {
    /// Registers the consensus metrics.
    pub fn register(registry: &Registry) -> Self {
        let engine = IntGaugeVec::new(Opts::new("bcos_consensus_engine", "The consensus engine running"), &["mode"])
            .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
        Self {
            engine: register(registry, engine),
            engine_since_height: gauge(
                registry,
                "bcos_consensus_engine_since_height",
                "First height the running consensus engine decided",
            ),
            switches: counter(registry, "bcos_consensus_switches_total", "Consensus engine switches"),
            round: gauge(registry, "bcos_consensus_round", "Round (PBFT view, Raft term) of the height being decided"),
        }
    }
}

/// Shows when this node's certificate chain expires (the earliest expiry in it), so alerting can
/// warn before its peers start refusing it.
pub fn certificate_expiry(registry: &Registry, not_after: std::time::SystemTime) {
    let expiry = gauge(
        registry,
        "bcos_node_certificate_expiry_timestamp_seconds",
        "When this node's certificate chain expires, in Unix seconds",
    );
    let seconds = not_after.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    expiry.set(i64::try_from(seconds).unwrap_or(i64::MAX));
}
