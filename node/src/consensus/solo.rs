//! The single-node sealer.

use std::{sync::Arc, time::Duration};

use bcos_sdk::crypto::NodeKey;
use tokio::{sync::watch, time::Instant};

use crate::{
    chain::{Chain, ChainError, CommittedBlock, sign_commit},
    consensus::proposals::build,
    txpool::TxPool,
};

/// Seals a block every `blockIntervalMs` while transactions are ready, or at once when a block's
/// worth (`maxTxsPerBlock`) is ready. Empty blocks are not produced.
pub struct SoloSealer {
    chain: Arc<Chain>,
    pool: Arc<TxPool>,
    key: NodeKey,
}

impl SoloSealer {
    /// A sealer signing with `key`.
    pub fn new(chain: Arc<Chain>, pool: Arc<TxPool>, key: NodeKey) -> Self {
        Self { chain, pool, key }
    }

    /// Runs until `shutdown` turns true. A storage or execution failure stops the sealer and is
    /// returned: the node must not go on committing on top of state it could not write. Once the
    /// chain needs a newer build ([`Chain::incompatibility`]) it seals no more blocks, and the
    /// node keeps serving what it has until shut down.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) -> Result<(), ChainError> {
        let mut last_block = Instant::now();
        loop {
            if let Some(incompatible) = self.chain.incompatibility() {
                tracing::warn!(target: "consensus", %incompatible, "sealing stopped");
                // An error means the node is going away: equally the end.
                let _ = shutdown.wait_for(|stop| *stop).await;
                return Ok(());
            }
            let config = self.chain.system_config();
            let interval = Duration::from_millis(config.block_interval_ms);
            let full = self.pool.ready_len() as u64 >= config.max_txs_per_block;
            let due = last_block + interval;
            if !full {
                let woken = self.pool.ready_changed();
                tokio::select! {
                    _ = shutdown.changed() => return Ok(()),
                    _ = woken => continue,
                    _ = tokio::time::sleep_until(due), if self.pool.ready_len() > 0 => {}
                }
                if *shutdown.borrow() {
                    return Ok(());
                }
            }
            if self.pool.ready_len() == 0 {
                continue;
            }
            let max = usize::try_from(config.max_txs_per_block).unwrap_or(usize::MAX);
            let chain = self.chain.clone();
            let pool = self.pool.clone();
            let key = self.key.clone();
            // The interval runs from the start of one block to the start of the next, so a busy
            // chain still seals every `blockIntervalMs` while sealing takes less than that.
            last_block = Instant::now();
            tokio::task::spawn_blocking(move || seal_one(&chain, &pool, &key, max).map(drop)).await.map_err(
                |e| ChainError::Execution(crate::executor::ExecutionError::Evm(format!("sealer task: {e}"))),
            )??;
        }
    }
}

/// Builds, executes, signs and commits one block from up to `max` ready transactions.
pub fn seal_one(chain: &Chain, pool: &TxPool, key: &NodeKey, max: usize) -> Result<Arc<CommittedBlock>, ChainError> {
    let built = build(chain, pool, key.node_id(), max)?;
    let header = built.proposal.header;
    let qc = sign_commit(key, header.hash(), header.number, 0);
    let committed = chain.commit(header, built.executed, qc, pool)?;
    tracing::debug!(target: "consensus", number = committed.header.number, txs = committed.transactions.len(), "sealed block");
    Ok(committed)
}
