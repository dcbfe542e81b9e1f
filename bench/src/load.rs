//! The load: every transfer is signed before the clock starts, then an open-loop pacer releases
//! one batch every `batch / rate` seconds to at most `connections` concurrent JSON-RPC batch
//! requests. The pacer never waits for confirmations; it waits only when every connection is
//! busy, and then falls behind its schedule, which the report shows as lag and achieved rate.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_primitives::{Address, B256, TxKind, U256, keccak256};
use alloy_sol_types::SolCall;
use anyhow::Context;
use bcos_sdk::crypto::AccountKey;
use jsonrpsee_http_client::HttpClient;
use rayon::prelude::*;
use tokio::sync::{Semaphore, mpsc};
use tracing::{debug, info, warn};

use crate::{
    abi::IERC20,
    report::Rejections,
    rpc::{self, RawParams},
    setup::{Fees, TRANSFER_GAS},
};

/// How often the pacer logs progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// Transactions signed ahead of the run.
#[derive(Debug)]
pub(crate) struct Presigned {
    /// The hash of every transaction, in send order.
    pub(crate) hashes: Arc<[B256]>,
    /// The `eth_sendRawTransaction` params of every transaction, grouped into send batches.
    pub(crate) batches: Vec<Vec<RawParams>>,
}

/// Who sends transaction `index` and with which nonce: round-robin over the senders, so every
/// sender's nonces are consecutive from 0 and spread evenly over the run.
pub(crate) fn assignment(index: usize, senders: usize) -> (usize, u64) {
    let senders = senders.max(1);
    (index % senders, (index / senders) as u64)
}

/// Signs `total` transfers of 1 base unit of `token` to random recipients, in parallel.
pub(crate) fn presign(
    senders: &[AccountKey],
    token: Address,
    chain_id: u64,
    fees: Fees,
    total: usize,
    batch: usize,
) -> anyhow::Result<Presigned> {
    anyhow::ensure!(!senders.is_empty(), "no sender accounts");
    let signed = (0..total)
        .into_par_iter()
        .map(|index| {
            let (sender, nonce) = assignment(index, senders.len());
            let to = Address::from(rand::random::<[u8; 20]>());
            let input = IERC20::transferCall { to, amount: U256::from(1u8) }.abi_encode();
            let tx = fees.tx(chain_id, nonce, TRANSFER_GAS, TxKind::Call(token), U256::ZERO, input.into());
            let raw = senders[sender].sign_transaction(tx);
            Ok((keccak256(&raw), RawParams::send_raw(&raw)?))
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()
        .context("encoding transactions")?;

    let batch = batch.max(1);
    let mut hashes = Vec::with_capacity(total);
    let mut batches = Vec::with_capacity(total.div_ceil(batch));
    let mut current = Vec::with_capacity(batch);
    for (hash, params) in signed {
        hashes.push(hash);
        current.push(params);
        if current.len() == batch {
            batches.push(std::mem::replace(&mut current, Vec::with_capacity(batch)));
        }
    }
    if !current.is_empty() {
        batches.push(current);
    }
    Ok(Presigned { hashes: hashes.into(), batches })
}

/// The pacer's timetable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Offered transactions per second.
    pub(crate) rate: u64,
    /// Transactions per batch.
    pub(crate) batch: usize,
}

impl Schedule {
    /// When batch `k` is due, relative to the start: `k * batch / rate` seconds, exactly.
    pub(crate) fn offset(&self, k: usize) -> Duration {
        let nanos = k as u128 * self.batch as u128 * 1_000_000_000 / u128::from(self.rate.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// The spacing of batches.
    pub(crate) fn interval(&self) -> Duration {
        self.offset(1)
    }
}

/// What sending did.
#[derive(Debug)]
pub(crate) struct Sent {
    /// When each batch's request started (`None`: never sent).
    pub(crate) batch_sent_at: Vec<Option<Instant>>,
    /// Per transaction: whether the endpoint accepted it.
    pub(crate) accepted: Vec<bool>,
    /// Why transactions were refused.
    pub(crate) rejections: Rejections,
    /// The furthest any batch went out behind its schedule.
    pub(crate) max_lag: Duration,
    /// Accepted transactions whose reported hash differed from the locally computed one.
    pub(crate) hash_mismatches: u64,
}

/// One finished batch request.
struct BatchDone {
    index: usize,
    results: Result<Vec<Result<B256, String>>, String>,
}

/// Sends the batches on `schedule` from `start`, with at most `connections` requests in flight.
pub(crate) async fn send(
    client: HttpClient,
    batches: Vec<Vec<RawParams>>,
    hashes: Arc<[B256]>,
    schedule: Schedule,
    start: Instant,
    connections: usize,
) -> anyhow::Result<Sent> {
    let mut sent = Sent {
        batch_sent_at: vec![None; batches.len()],
        accepted: vec![false; hashes.len()],
        rejections: Rejections::default(),
        max_lag: Duration::ZERO,
        hash_mismatches: 0,
    };
    let permits = Arc::new(Semaphore::new(connections.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<BatchDone>();
    let mut next_progress = start + PROGRESS_EVERY;
    let total_batches = batches.len();

    for (index, params) in batches.into_iter().enumerate() {
        let due = start + schedule.offset(index);
        tokio::time::sleep_until(due.into()).await;
        let permit = permits.clone().acquire_owned().await.context("sender pool closed")?;
        let now = Instant::now();
        let lag = now.saturating_duration_since(due);
        sent.max_lag = sent.max_lag.max(lag);
        if let Some(slot) = sent.batch_sent_at.get_mut(index) {
            *slot = Some(now);
        }
        let client = client.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let results = rpc::send_raw_batch(&client, params).await.map_err(|e| e.to_string());
            drop(permit);
            // The receiver outlives every sender task; a failed send means the run was abandoned.
            let _ = done_tx.send(BatchDone { index, results });
        });

        while let Ok(done) = done_rx.try_recv() {
            absorb(&mut sent, &hashes, schedule.batch, done);
        }
        if now >= next_progress {
            next_progress += PROGRESS_EVERY;
            info!(
                batches = index + 1,
                of = total_batches,
                accepted = sent.accepted.iter().filter(|a| **a).count(),
                rejected = sent.rejections.total(),
                lag_ms = lag.as_millis() as u64,
                "sending"
            );
        }
    }
    drop(done_tx);
    while let Some(done) = done_rx.recv().await {
        absorb(&mut sent, &hashes, schedule.batch, done);
    }
    if sent.hash_mismatches > 0 {
        warn!(count = sent.hash_mismatches, "the endpoint reported unexpected transaction hashes");
    }
    Ok(sent)
}

/// Records one batch's per-transaction results.
fn absorb(sent: &mut Sent, hashes: &[B256], batch: usize, done: BatchDone) {
    let first = done.index * batch;
    let count = batch.min(hashes.len().saturating_sub(first));
    match done.results {
        Ok(results) => {
            for (offset, result) in results.into_iter().take(count).enumerate() {
                let tx = first + offset;
                match result {
                    Ok(reported) => {
                        if let Some(slot) = sent.accepted.get_mut(tx) {
                            *slot = true;
                        }
                        if hashes.get(tx) != Some(&reported) {
                            debug!(tx, %reported, "endpoint reported a different hash");
                            sent.hash_mismatches += 1;
                        }
                    }
                    Err(reason) => sent.rejections.record(&reason),
                }
            }
        }
        Err(error) => {
            let reason = format!("batch request failed: {error}");
            for _ in 0..count {
                sent.rejections.record(&reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_is_round_robin_with_consecutive_nonces() {
        let got: Vec<_> = (0..7).map(|i| assignment(i, 3)).collect();
        assert_eq!(got, vec![(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 2)]);
    }

    #[test]
    fn schedule_is_exact_without_drift() {
        let s = Schedule { rate: 3000, batch: 100 };
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.interval(), Duration::from_nanos(33_333_333));
        // 30 batches of 100 at 3000/s take exactly one second: no accumulated rounding.
        assert_eq!(s.offset(30), Duration::from_secs(1));
        assert_eq!(s.offset(90_000), Duration::from_secs(3000));
    }

    #[test]
    fn presign_batches_and_hashes_every_transaction() {
        let senders: Vec<_> = (0..3).map(|_| AccountKey::generate()).collect();
        let fees = Fees { max_fee_per_gas: 0, max_priority_fee_per_gas: 0 };
        let p = presign(&senders, Address::repeat_byte(7), 5, fees, 10, 4).expect("signs");
        assert_eq!(p.hashes.len(), 10);
        assert_eq!(p.batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
        let distinct: std::collections::HashSet<_> = p.hashes.iter().collect();
        assert_eq!(distinct.len(), 10);

        // The fourth transaction is the first sender's second one, and its hash is its keccak.
        let raw: Vec<alloy_primitives::Bytes> = serde_json::from_str(p.batches[0][3].0.get()).expect("params");
        assert_eq!(keccak256(&raw[0]), p.hashes[3]);
        let tx = bcos_sdk::types::RecoveredTx::decode_and_recover(&raw[0], 5).expect("valid");
        assert_eq!(tx.sender(), senders[0].address());
    }

    #[test]
    fn absorb_counts_accepted_and_groups_rejections() {
        let hashes: Vec<B256> = (0..5u8).map(B256::repeat_byte).collect();
        let mut sent = Sent {
            batch_sent_at: vec![None; 3],
            accepted: vec![false; 5],
            rejections: Rejections::default(),
            max_lag: Duration::ZERO,
            hash_mismatches: 0,
        };
        let ok = |b: u8| Ok(B256::repeat_byte(b));
        absorb(&mut sent, &hashes, 2, BatchDone { index: 0, results: Ok(vec![ok(0), Err("nonce too low: 3".into())]) });
        absorb(&mut sent, &hashes, 2, BatchDone { index: 1, results: Err("timeout".into()) });
        absorb(&mut sent, &hashes, 2, BatchDone { index: 2, results: Ok(vec![ok(9)]) });
        assert_eq!(sent.accepted, vec![true, false, false, false, true]);
        assert_eq!(sent.hash_mismatches, 1);
        assert_eq!(sent.rejections.total(), 3);
    }
}
