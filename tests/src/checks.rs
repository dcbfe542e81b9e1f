//! Checks over a [`Cluster`]'s chain through JSON-RPC: heights, progress and stalls, block
//! proposers, probe transfers, and that every node holds the same chain.
//!
//! Every request has a time limit, so a paused node fails a check instead of hanging it.

use std::time::{Duration, Instant};

use alloy::{
    consensus::TxEip1559,
    primitives::{Address, B256, TxKind, U256},
    providers::Provider,
    rpc::types::TransactionReceipt,
};
use anyhow::{Context, bail, ensure};
use bcos_sdk::crypto::AccountKey;

use crate::{Cluster, cluster::CHAIN_ID, wait_for};

/// Time limit of one JSON-RPC request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The funded account that [`Cluster::probe_transfer`] sends from (the load uses the first ones).
const PROBE_ACCOUNT: usize = 7;

/// One block as every node must report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    /// Height.
    pub number: u64,
    /// Header hash.
    pub hash: B256,
    /// Parent hash.
    pub parent_hash: B256,
    /// The state commitment after the block.
    pub state_root: B256,
    /// Node id of the proposer (the header's `extraData`).
    pub proposer: B256,
    /// Hashes of the block's transactions, in order.
    pub transactions: Vec<B256>,
}

async fn limited<T, E>(what: &str, future: impl IntoFuture<Output = Result<T, E>>) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    match tokio::time::timeout(REQUEST_TIMEOUT, future).await {
        Ok(result) => result.with_context(|| what.to_owned()),
        Err(_) => bail!("{what}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}

impl Cluster {
    /// Node `i`'s height (`eth_blockNumber`).
    pub async fn height(&self, i: usize) -> anyhow::Result<u64> {
        let provider = self.provider(i)?;
        limited(&format!("height of node {i}"), provider.get_block_number()).await
    }

    /// The heights of `nodes`, in order.
    pub async fn heights(&self, nodes: &[usize]) -> anyhow::Result<Vec<u64>> {
        futures::future::try_join_all(nodes.iter().map(|&i| self.height(i))).await
    }

    /// Waits until every node of `nodes` is at height `at_least` or above.
    pub async fn wait_height(&self, nodes: &[usize], at_least: u64, timeout: Duration) -> anyhow::Result<()> {
        let waited = wait_for(&format!("nodes {nodes:?} at height {at_least}"), timeout, || async {
            // A node that is still starting or catching up may not answer yet: keep polling.
            let heights = self.heights(nodes).await.unwrap_or_default();
            Ok((heights.len() == nodes.len() && heights.iter().all(|&h| h >= at_least)).then_some(()))
        })
        .await;
        match waited {
            Ok(()) => Ok(()),
            Err(e) => Err(e.context(format!("heights now: {}", self.describe_heights(nodes).await))),
        }
    }

    /// Waits until `nodes` all committed `blocks` more blocks than the highest of them has now,
    /// and returns the height reached.
    pub async fn wait_progress(&self, nodes: &[usize], blocks: u64, timeout: Duration) -> anyhow::Result<u64> {
        let start = self.heights(nodes).await?.into_iter().max().unwrap_or_default();
        self.wait_height(nodes, start + blocks, timeout).await?;
        Ok(start + blocks)
    }

    /// Waits until the heights of `nodes` settle (no change for `quiet`), then asserts they stay
    /// where they are for `hold`; returns that height (the highest of them). This is how a test
    /// shows a chain without a quorum stops: a block already under way when the quorum went may
    /// still commit, but nothing after it.
    pub async fn assert_stalled(&self, nodes: &[usize], quiet: Duration, hold: Duration) -> anyhow::Result<u64> {
        let settle_deadline = Instant::now() + quiet * 4;
        let mut last = self.heights(nodes).await?;
        let mut since = Instant::now();
        while since.elapsed() < quiet {
            ensure!(Instant::now() < settle_deadline, "nodes {nodes:?} kept committing: heights {last:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let now = self.heights(nodes).await?;
            if now != last {
                last = now;
                since = Instant::now();
            }
        }
        let held = Instant::now();
        while held.elapsed() < hold {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.heights(nodes).await?;
            ensure!(now == last, "nodes {nodes:?} advanced from {last:?} to {now:?} without a quorum");
        }
        Ok(last.into_iter().max().unwrap_or_default())
    }

    /// Block `number` as node `i` reports it, if it has it.
    pub async fn block(&self, i: usize, number: u64) -> anyhow::Result<Option<BlockSummary>> {
        let provider = self.provider(i)?;
        let what = format!("block {number} of node {i}");
        let Some(block) = limited(&what, provider.get_block_by_number(number.into())).await? else {
            return Ok(None);
        };
        let header = &block.header;
        let proposer = B256::try_from(header.extra_data.as_ref()).unwrap_or_default();
        Ok(Some(BlockSummary {
            number: header.number,
            hash: header.hash,
            parent_hash: header.parent_hash,
            state_root: header.state_root,
            proposer,
            transactions: block.transactions.hashes().collect(),
        }))
    }

    /// The index of the node that proposed block `number`, as node `i` reports it.
    pub async fn proposer(&self, i: usize, number: u64) -> anyhow::Result<usize> {
        let block = self.block(i, number).await?.with_context(|| format!("node {i} has no block {number}"))?;
        self.index_of(&block.proposer).with_context(|| format!("block {number} names no node: {}", block.proposer))
    }

    /// The proposer of node `i`'s latest block, with that height.
    pub async fn latest_proposer(&self, i: usize) -> anyhow::Result<(usize, u64)> {
        let height = self.height(i).await?;
        Ok((self.proposer(i, height).await?, height))
    }

    /// Checks that every node of `nodes` has the same blocks 1..=`up_to`: the same hash, the same
    /// state root (the state commitment), each linked to the one before, proposed by a consensus
    /// node. Waits up to `catch_up` for nodes still below `up_to`. Returns the blocks.
    pub async fn assert_same_chain(
        &self,
        nodes: &[usize],
        up_to: u64,
        catch_up: Duration,
    ) -> anyhow::Result<Vec<BlockSummary>> {
        ensure!(!nodes.is_empty(), "no nodes to compare");
        self.wait_height(nodes, up_to, catch_up).await?;
        let chains = futures::future::try_join_all(nodes.iter().map(|&i| async move {
            let mut blocks = Vec::new();
            for number in 0..=up_to {
                blocks.push(self.block(i, number).await?.with_context(|| format!("node {i} lost block {number}"))?);
            }
            anyhow::Ok(blocks)
        }))
        .await?;
        let reference = &chains[0];
        for (number, block) in reference.iter().enumerate().skip(1) {
            ensure!(
                block.parent_hash == reference[number - 1].hash,
                "block {number} does not extend block {}",
                number - 1
            );
            ensure!(self.index_of(&block.proposer).is_some(), "block {number} proposed by unknown {}", block.proposer);
        }
        for (&i, chain) in nodes.iter().zip(&chains).skip(1) {
            for (mine, theirs) in chain.iter().zip(reference) {
                ensure!(
                    mine == theirs,
                    "fork at height {}: node {} has {:?}, node {i} has {:?}",
                    mine.number,
                    nodes[0],
                    theirs,
                    mine
                );
            }
        }
        Ok(chains.into_iter().next().unwrap_or_default())
    }

    /// Sends a native transfer from a funded account through node `via` and waits until every
    /// node of `confirm_on` has its receipt; returns the receipt from the first of them.
    pub async fn probe_transfer(
        &self,
        via: usize,
        confirm_on: &[usize],
        timeout: Duration,
    ) -> anyhow::Result<TransactionReceipt> {
        let key = self.funded_accounts().into_iter().nth(PROBE_ACCOUNT).context("no probe account")?;
        // Probes run one at a time and each waits for its receipt, so the committed count is next.
        let provider = self.provider(via)?;
        let nonce = limited("probe nonce", provider.get_transaction_count(key.address())).await?;
        let hash = self.send_transfer(via, &key, nonce).await?;
        self.wait_receipt(confirm_on, hash, timeout).await
    }

    /// Sends a native transfer of 1 wei from `key` with `nonce` through node `via`; returns its
    /// hash once the node accepted it.
    pub async fn send_transfer(&self, via: usize, key: &AccountKey, nonce: u64) -> anyhow::Result<B256> {
        let raw = key.sign_transaction(TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(0xEE)),
            value: U256::from(1),
            ..Default::default()
        });
        let provider = self.provider(via)?;
        Ok(*limited(&format!("transfer via node {via}"), provider.send_raw_transaction(&raw)).await?.tx_hash())
    }

    /// Waits until every node of `nodes` has a successful receipt of `hash`; returns the receipt
    /// from the first of them.
    pub async fn wait_receipt(
        &self,
        nodes: &[usize],
        hash: B256,
        timeout: Duration,
    ) -> anyhow::Result<TransactionReceipt> {
        let mut receipt = None;
        for &i in nodes {
            let provider = self.provider(i)?;
            let got = wait_for(&format!("receipt of {hash} on node {i}"), timeout, || async {
                let got = tokio::time::timeout(REQUEST_TIMEOUT, provider.get_transaction_receipt(hash)).await;
                Ok(got.ok().and_then(Result::ok).flatten())
            })
            .await?;
            ensure!(got.status(), "{hash} failed on node {i}");
            receipt.get_or_insert(got);
        }
        receipt.context("no node to wait on")
    }

    /// The heights of `nodes` as far as they answer, for error messages.
    pub async fn describe_heights(&self, nodes: &[usize]) -> String {
        let mut out = Vec::new();
        for &i in nodes {
            out.push(match self.height(i).await {
                Ok(h) => format!("node {i}: {h}"),
                Err(e) => format!("node {i}: {e:#}"),
            });
        }
        out.join(", ")
    }
}
