//! `bcos-bench`: a load generator for any Ethereum JSON-RPC endpoint.
//!
//! Data flow: [`setup`] deploys an ERC-20 token from a deployer account and funds every sender
//! account with tokens; [`load`] pre-signs `rate × (warm-up + duration)` transfers round-robin
//! over the senders (nonces consecutive per sender), then an open-loop pacer offers them in
//! JSON-RPC batches of `eth_sendRawTransaction` at the requested rate over a bounded pool of HTTP
//! requests; meanwhile [`track`] follows `newHeads` over WebSocket and stamps each transaction
//! with the arrival time of the head whose block contains it. When sending ends, tracking drains
//! outstanding confirmations, and [`report`] turns send and confirmation times into throughput and
//! latency figures printed on stdout (progress goes to stderr).
//!
//! The chain is assumed to accept zero-fee EIP-1559 transactions (as BCOS does); for a chain that
//! charges gas, pass `--max-fee-per-gas` and a funded `--deployer-key`, and the senders are also
//! given native coin for their gas.

mod abi;
mod load;
mod report;
mod rpc;
mod setup;
mod track;

use std::{
    io::IsTerminal,
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::U256;
use anyhow::{Context, bail, ensure};
use bcos_sdk::crypto::AccountKey;
use clap::{Parser, builder::RangedU64ValueParser};
use rayon::prelude::*;
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;

use crate::{
    load::Schedule,
    report::{BlockOutcome, Report, RunData, RunParams, Summary, TxOutcome},
    setup::{Fees, TRANSFER_GAS},
    track::Tracker,
};

/// Most transactions one run may pre-sign (they are all held in memory, about 0.5 KB each).
const MAX_TOTAL_TXS: u64 = 20_000_000;
/// Most transactions one sender may have queued ahead of its committed nonce on common pools
/// (BCOS allows 1,000 ahead); more per sender risks refusals if the chain falls behind.
const NONCE_GAP_HINT: u64 = 1_000;
/// Pause between the end of setup and the first batch, so the tracker is settled.
const START_DELAY: Duration = Duration::from_millis(200);
/// Most refusal reasons printed.
const TOP_REJECTIONS: usize = 5;

const STATS_HELP: &str = "\
Statistics:
  window       the measured phase: transactions scheduled after the warm-up. It runs from when
               its first batch was sent (W0) to one batch interval after its last (W1).
  sent         window transactions sent; achieved = sent / (W1 - W0). If the senders cannot
               keep up with the schedule (all --connections busy), achieved falls below the
               offered rate and 'max lag' shows how far behind schedule a batch went out.
  rejected     window transactions the endpoint refused (or whose batch request failed);
               the most frequent reasons of all phases are printed as 'rejection' lines.
  committed    accepted window transactions seen in a block before --drain-timeout;
               'unconfirmed' are accepted ones never seen.
  sustained    commit rate inside the window: benchmark transactions whose confirmation
               arrived in [W0, W1), divided by W1 - W0 (warm-up fills the pipeline, so this
               is the steady-state rate).
  end-to-end   committed window transactions / (last of their confirmations - W0); it
               includes the confirmation tail of the last batches once.
  latency      per committed window transaction: confirmation time - send time, where send
               time is when its batch request started and confirmation time is when the
               newHeads notification of its block arrived. Nearest-rank percentiles. It is
               measured from the actual send, so when 'max lag' is large it omits the time
               a transaction waited behind schedule.
  blocks       blocks whose head arrived in [W0, W1): count, mean spacing of their heads,
               mean transactions per block (all transactions, not only the benchmark's).";

/// Pre-signs ERC-20 transfers from many accounts, offers them at a fixed rate to an Ethereum
/// JSON-RPC endpoint, and prints committed transactions per second and confirmation latency.
///
/// Setup deploys contracts/ERC20.sol from the deployer and funds every sender account; then
/// rate × (warmup + duration) transfers are signed before the clock starts and offered in
/// JSON-RPC batches of eth_sendRawTransaction. Confirmations are tracked through newHeads over
/// WebSocket. Results go to stdout, progress to stderr (RUST_LOG sets the level).
#[derive(Debug, Parser)]
#[command(name = "bcos-bench", version, after_long_help = STATS_HELP)]
struct Cli {
    /// HTTP JSON-RPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc: String,

    /// WebSocket JSON-RPC endpoint for newHeads [default: --rpc's host and port, ws://].
    #[arg(long)]
    ws: Option<String>,

    /// Offered load, transactions per second (open loop: not slowed by confirmations).
    #[arg(long, default_value_t = 5000, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    rate: u64,

    /// Seconds of measured load.
    #[arg(long, default_value_t = 30, value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    duration: u64,

    /// Seconds of load before measuring, excluded from the statistics.
    #[arg(long, default_value_t = 5)]
    warmup: u64,

    /// Sender accounts; transfers go round-robin over them.
    #[arg(long, default_value_t = 2000, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    accounts: usize,

    /// Transactions per JSON-RPC batch request.
    #[arg(long, default_value_t = 100, value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    batch: usize,

    /// Batch requests in flight at once (HTTP connections).
    #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    connections: usize,

    /// Seconds to wait for outstanding confirmations after sending stops.
    #[arg(long, default_value_t = 30)]
    drain_timeout: u64,

    /// Chain id to sign for [default: eth_chainId].
    #[arg(long)]
    chain_id: Option<u64>,

    /// Deployer's secp256k1 secret key, hex [default: a fresh random key].
    #[arg(long)]
    deployer_key: Option<String>,

    /// EIP-1559 max fee per gas, wei, of every transaction. Non-zero needs a funded
    /// --deployer-key; the senders are then also funded with native coin for their gas.
    #[arg(long, default_value_t = 0)]
    max_fee_per_gas: u128,

    /// EIP-1559 max priority fee per gas, wei (at most --max-fee-per-gas).
    #[arg(long, default_value_t = 0)]
    priority_fee_per_gas: u128,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bcos-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses a hex secp256k1 secret, with or without `0x`.
fn parse_key(hex_key: &str) -> anyhow::Result<AccountKey> {
    let text = hex_key.trim();
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text)).context("--deployer-key is not hex")?;
    let secret: [u8; 32] = bytes.try_into().map_err(|_| anyhow::anyhow!("--deployer-key must be 32 bytes"))?;
    AccountKey::from_secret(secret).context("--deployer-key is not a valid secp256k1 secret")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let total = cli.rate.saturating_mul(cli.warmup.saturating_add(cli.duration));
    ensure!(
        total <= MAX_TOTAL_TXS,
        "rate × (warmup + duration) = {total} transactions; at most {MAX_TOTAL_TXS} fit in one run"
    );
    ensure!(cli.priority_fee_per_gas <= cli.max_fee_per_gas, "--priority-fee-per-gas exceeds --max-fee-per-gas");
    let total = usize::try_from(total)?;
    let accounts = cli.accounts.min(total);
    let per_account = total.div_ceil(accounts) as u64;
    if per_account > NONCE_GAP_HINT {
        warn!(
            per_account,
            "many transactions per sender; endpoints limit how far ahead a sender may queue \
             (raise --accounts if transactions are refused as 'nonce too high')"
        );
    }
    let fees = Fees { max_fee_per_gas: cli.max_fee_per_gas, max_priority_fee_per_gas: cli.priority_fee_per_gas };

    let http = rpc::http_client(&cli.rpc)?;
    let ws_url = match &cli.ws {
        Some(ws) => ws.clone(),
        None => rpc::ws_url_from_http(&cli.rpc)?,
    };
    let chain_id = match cli.chain_id {
        Some(id) => id,
        None => rpc::chain_id(&http)
            .await
            .with_context(|| format!("cannot reach the JSON-RPC endpoint {} (eth_chainId)", cli.rpc))?,
    };
    let deployer = match &cli.deployer_key {
        Some(key) => parse_key(key)?,
        None => AccountKey::generate(),
    };
    info!(rpc = %cli.rpc, ws = %ws_url, chain_id, deployer = %deployer.address(), "setup");

    // Setup: token and funded senders.
    let senders: Arc<[AccountKey]> = tokio::task::spawn_blocking(move || {
        (0..accounts).into_par_iter().map(|_| AccountKey::generate()).collect::<Vec<_>>()
    })
    .await?
    .into();
    let token = setup::deploy(&http, &deployer, chain_id, fees).await?;
    let native = U256::from(per_account) * U256::from(TRANSFER_GAS) * U256::from(fees.max_fee_per_gas);
    let sender_addresses: Vec<_> = senders.iter().map(AccountKey::address).collect();
    setup::fund(&http, &deployer, token, chain_id, fees, &sender_addresses, native, cli.batch).await?;

    // Pre-sign everything before the clock starts.
    let started = Instant::now();
    let batch = cli.batch;
    let signers = senders.clone();
    let presigned =
        tokio::task::spawn_blocking(move || load::presign(&signers, token, chain_id, fees, total, batch)).await??;
    info!(
        transactions = total,
        batches = presigned.batches.len(),
        secs = format_args!("{:.1}", started.elapsed().as_secs_f64()),
        "pre-signed"
    );
    // Run: track confirmations, offer the load, drain.
    let tracker = Tracker::start(&ws_url, http.clone(), &presigned.hashes).await?;
    let schedule = Schedule { rate: cli.rate, batch };
    let anchor = Instant::now();
    info!(rate = cli.rate, warmup = cli.warmup, duration = cli.duration, "load started");
    let sent = load::send(
        http.clone(),
        presigned.batches,
        presigned.hashes.clone(),
        schedule,
        anchor + START_DELAY,
        cli.connections,
    )
    .await?;
    let tracked = tracker.finish(sent.accepted.clone(), Duration::from_secs(cli.drain_timeout)).await?;
    if !tracked.drained {
        warn!("not every accepted transaction was confirmed within --drain-timeout");
    }

    // Report.
    let warmup_txs = usize::try_from(cli.rate.saturating_mul(cli.warmup))?;
    let since = |t: Instant| t.saturating_duration_since(anchor);
    let txs = (0..total)
        .map(|i| TxOutcome {
            measured: i >= warmup_txs,
            sent_at: sent.batch_sent_at.get(i / batch).copied().flatten().map(since),
            accepted: sent.accepted.get(i).copied().unwrap_or(false),
            confirmed_at: tracked.confirmed_at.get(i).copied().flatten().map(since),
        })
        .collect();
    let blocks =
        tracked.blocks.iter().map(|b| BlockOutcome { seen_at: since(b.seen_at), tx_count: b.tx_count }).collect();
    let data = RunData {
        txs,
        blocks,
        batch_interval: schedule.interval(),
        max_lag: sent.max_lag,
        rejections: sent.rejections,
    };
    let summary = Summary::compute(&data);
    let params = RunParams {
        rate: cli.rate,
        duration: cli.duration,
        warmup: cli.warmup,
        accounts,
        batch,
        connections: cli.connections,
    };
    let report = Report { params: &params, summary: &summary, rejections: data.rejections.top(TOP_REJECTIONS) };
    print!("{report}");
    if summary.sent > 0 && summary.committed == 0 {
        bail!("nothing sent in the measured window was committed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent_and_defaults_match_the_target() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["bcos-bench"]).expect("defaults");
        assert_eq!((cli.rate, cli.duration, cli.warmup), (5000, 30, 5));
        assert_eq!((cli.accounts, cli.batch, cli.connections, cli.drain_timeout), (2000, 100, 8, 30));
        assert_eq!(cli.rpc, "http://127.0.0.1:8545");
        assert!(Cli::try_parse_from(["bcos-bench", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["bcos-bench", "--batch", "0"]).is_err());
    }

    #[test]
    fn deployer_key_parses_hex_with_or_without_prefix() {
        let key = AccountKey::generate();
        let hex_key = hex::encode(key.secret());
        assert_eq!(parse_key(&hex_key).expect("plain").address(), key.address());
        assert_eq!(parse_key(&format!("0x{hex_key}")).expect("0x").address(), key.address());
        assert!(parse_key("zz").is_err());
        assert!(parse_key("00").is_err());
        assert!(parse_key(&"00".repeat(32)).is_err());
    }
}
