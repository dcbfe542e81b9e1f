//! Confirmation tracking. A reader task follows `newHeads` over WebSocket (falling back to polling
//! `eth_blockNumber` if the subscription closes) and timestamps each head the moment it arrives.
//! A processor task fetches every new block's transaction hashes with
//! `eth_getBlockByNumber(n, false)`, including blocks whose heads were skipped, and marks each
//! benchmark transaction confirmed at the arrival time of the head that revealed its block.

use std::time::{Duration, Instant};

use alloy_primitives::{B256, map::B256Map};
use anyhow::{Context, bail};
use jsonrpsee_core::{client::SubscriptionClientT, rpc_params};
use jsonrpsee_http_client::HttpClient;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::rpc::{self, Head};

/// Poll interval of the fallback when the subscription is gone.
const HEAD_POLL: Duration = Duration::from_millis(25);
/// Attempts to fetch an announced block before giving up on the run.
const FETCH_ATTEMPTS: u32 = 100;
/// Pause between fetch attempts.
const FETCH_RETRY: Duration = Duration::from_millis(50);

/// A committed block as the tracker saw it.
#[derive(Debug, Clone)]
pub(crate) struct BlockSeen {
    /// When the head that revealed it arrived.
    pub(crate) seen_at: Instant,
    /// All transactions in it, the benchmark's or not.
    pub(crate) tx_count: usize,
}

/// What tracking observed.
#[derive(Debug)]
pub(crate) struct Tracked {
    /// Per transaction, in send order: when it was seen committed.
    pub(crate) confirmed_at: Vec<Option<Instant>>,
    /// Every block committed after tracking started.
    pub(crate) blocks: Vec<BlockSeen>,
    /// Whether every accepted transaction was confirmed before the drain timeout.
    pub(crate) drained: bool,
}

/// Tells the processor that sending is over: which transactions to wait for, and until when.
#[derive(Debug)]
struct Drain {
    accepted: Vec<bool>,
    deadline: Instant,
}

/// A running tracker.
#[derive(Debug)]
pub(crate) struct Tracker {
    drain: oneshot::Sender<Drain>,
    processor: JoinHandle<anyhow::Result<Tracked>>,
    reader: JoinHandle<()>,
}

impl Tracker {
    /// Subscribes to `newHeads` and starts tracking `hashes` from the current head on.
    pub(crate) async fn start(ws_url: &str, http: HttpClient, hashes: &[B256]) -> anyhow::Result<Self> {
        let ws = rpc::ws_client(ws_url).await?;
        let subscription = ws
            .subscribe::<Head, _>("eth_subscribe", rpc_params!["newHeads"], "eth_unsubscribe")
            .await
            .context("eth_subscribe newHeads")?;
        let from = rpc::block_number(&http).await.context("eth_blockNumber")?;

        let mut index = B256Map::with_capacity_and_hasher(hashes.len(), Default::default());
        for (i, hash) in hashes.iter().enumerate() {
            index.insert(*hash, i);
        }

        let (heads_tx, heads_rx) = mpsc::unbounded_channel();
        let reader_http = http.clone();
        let reader = tokio::spawn(async move {
            let mut subscription = subscription;
            let mut last = from;
            while let Some(head) = subscription.next().await {
                let seen_at = Instant::now();
                match head {
                    Ok(head) => {
                        let number: u64 = head.number.to();
                        last = last.max(number);
                        if heads_tx.send((number, seen_at)).is_err() {
                            return;
                        }
                    }
                    Err(e) => warn!(error = %e, "undecodable newHeads notification"),
                }
            }
            warn!(
                reason = ?subscription.close_reason(),
                "newHeads subscription closed; polling eth_blockNumber instead"
            );
            drop(ws);
            loop {
                tokio::time::sleep(HEAD_POLL).await;
                match rpc::block_number(&reader_http).await {
                    Ok(number) if number > last => {
                        last = number;
                        if heads_tx.send((number, Instant::now())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => debug!(error = %e, "eth_blockNumber"),
                }
                if heads_tx.is_closed() {
                    return;
                }
            }
        });

        let (drain_tx, drain_rx) = oneshot::channel();
        let processor = tokio::spawn(process(http, index, hashes.len(), from, heads_rx, drain_rx));
        Ok(Self { drain: drain_tx, processor, reader })
    }

    /// Waits until every `accepted` transaction is confirmed or `timeout` passes, then stops.
    pub(crate) async fn finish(self, accepted: Vec<bool>, timeout: Duration) -> anyhow::Result<Tracked> {
        let deadline = Instant::now() + timeout;
        // If the processor already stopped, its own result says why.
        let _ = self.drain.send(Drain { accepted, deadline });
        let tracked = self.processor.await.context("confirmation tracker panicked")?;
        self.reader.abort();
        tracked
    }
}

/// Applies heads to the confirmation table until drained, timed out or failed.
async fn process(
    http: HttpClient,
    index: B256Map<usize>,
    total: usize,
    from: u64,
    mut heads: mpsc::UnboundedReceiver<(u64, Instant)>,
    mut drain_rx: oneshot::Receiver<Drain>,
) -> anyhow::Result<Tracked> {
    let mut confirmed_at: Vec<Option<Instant>> = vec![None; total];
    let mut blocks = Vec::new();
    let mut last = from;
    let mut drain: Option<Drain> = None;
    let mut outstanding = usize::MAX;

    loop {
        if outstanding == 0 {
            return Ok(Tracked { confirmed_at, blocks, drained: true });
        }
        let deadline = drain.as_ref().map(|d| d.deadline);
        tokio::select! {
            head = heads.recv() => {
                let Some((number, seen_at)) = head else { bail!("the head stream ended") };
                for n in last.saturating_add(1)..=number {
                    let block = fetch_block(&http, n).await?;
                    let mut tracked = 0;
                    for hash in &block.transactions {
                        let Some(&i) = index.get(hash) else { continue };
                        let Some(slot) = confirmed_at.get_mut(i) else { continue };
                        if slot.is_none() {
                            *slot = Some(seen_at);
                            tracked += 1;
                            if drain.as_ref().is_some_and(|d| d.accepted.get(i) == Some(&true)) {
                                outstanding = outstanding.saturating_sub(1);
                            }
                        }
                    }
                    debug!(block = n, txs = block.transactions.len(), tracked, "block");
                    blocks.push(BlockSeen { seen_at, tx_count: block.transactions.len() });
                }
                last = last.max(number);
            }
            received = &mut drain_rx, if drain.is_none() => {
                let Ok(d) = received else {
                    // The run was abandoned; hand back what was seen.
                    return Ok(Tracked { confirmed_at, blocks, drained: false });
                };
                outstanding = d
                    .accepted
                    .iter()
                    .zip(&confirmed_at)
                    .filter(|(accepted, confirmed)| **accepted && confirmed.is_none())
                    .count();
                if outstanding > 0 {
                    info!(outstanding, "sending done; waiting for confirmations");
                }
                drain = Some(d);
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                warn!(outstanding, "drain timeout: some accepted transactions were never confirmed");
                return Ok(Tracked { confirmed_at, blocks, drained: false });
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// Fetches an announced block, retrying briefly: a head may be announced a moment before every
/// API serves its body.
async fn fetch_block(http: &HttpClient, number: u64) -> anyhow::Result<rpc::BlockHashes> {
    let mut last_error = None;
    for _ in 0..FETCH_ATTEMPTS {
        match rpc::block_hashes(http, number).await {
            Ok(Some(block)) if block.number.to::<u64>() == number => return Ok(block),
            Ok(Some(block)) => {
                bail!("asked for block {number}, got block {}", block.number)
            }
            Ok(None) => last_error = Some(anyhow::anyhow!("block {number} not found")),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(FETCH_RETRY).await;
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("block {number} not found")))
        .with_context(|| format!("eth_getBlockByNumber({number})"))
}
