//! Checks over a [`Cluster`]'s chain through JSON-RPC: heights, progress and stalls, block
//! proposers, probe transfers, quorum certificates, and that every node holds the same chain;
//! through each node's Prometheus endpoint, which consensus engine it runs; and each node's
//! status, over gRPC and JSON-RPC.
//!
//! Every request has a time limit, so a paused node fails a check instead of hanging it.

use std::time::{Duration, Instant};

use alloy::{
    consensus::TxEip1559,
    primitives::{Address, B256, Bytes, TxKind, U64, U256},
    providers::Provider,
    rpc::types::TransactionReceipt,
};
use anyhow::{Context, bail, ensure};
use bcos_sdk::{
    crypto::{AccountKey, verify_node_signature},
    governance::Governor,
    proto,
    types::QuorumCertificate,
};

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

/// A block's quorum certificate as a node reports it (`bcos_getQuorumCertificate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// The certified block's hash.
    pub block_hash: B256,
    /// Its height.
    pub number: u64,
    /// PBFT view or Raft term the votes were cast in.
    pub round: u64,
    /// Voters' node ids with their signatures, in the certificate's order.
    pub votes: Vec<(B256, Bytes)>,
}

impl Certificate {
    /// The voters' node ids.
    pub fn voters(&self) -> Vec<B256> {
        self.votes.iter().map(|(id, _)| *id).collect()
    }

    /// Whether `node` voted.
    pub fn has_voter(&self, node: &B256) -> bool {
        self.votes.iter().any(|(id, _)| id == node)
    }

    /// Checks that the certificate is for `block_hash`, every signature verifies against the
    /// voter's node id, nobody voted twice, and at least `quorum` voters, all from `members`.
    pub fn verify(&self, block_hash: B256, members: &[B256], quorum: usize) -> anyhow::Result<()> {
        let number = self.number;
        ensure!(self.block_hash == block_hash, "certificate of block {number} is for {}", self.block_hash);
        let message = QuorumCertificate::signing_message(self.block_hash, number, self.round);
        let mut seen = std::collections::HashSet::new();
        for (id, signature) in &self.votes {
            ensure!(seen.insert(*id), "{id} voted twice for block {number}");
            ensure!(members.contains(id), "{id} voted for block {number} but is not a consensus node");
            ensure!(verify_node_signature(id, &message, signature), "bad signature of {id} on block {number}");
        }
        ensure!(self.votes.len() >= quorum, "block {number} has {} votes, below {quorum}", self.votes.len());
        Ok(())
    }
}

/// What a node's Prometheus endpoint says about its consensus engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineMetrics {
    /// The engine running (`bcos_consensus_engine{mode} == 1`): `pbft`, `raft` or `observer`.
    pub engine: Option<String>,
    /// First height the running engine decided (`bcos_consensus_engine_since_height`).
    pub since_height: u64,
    /// Engine switches since the node started (`bcos_consensus_switches_total`).
    pub switches: u64,
    /// Committed height (`bcos_block_height`).
    pub height: u64,
}

impl EngineMetrics {
    /// Reads the consensus metrics out of a Prometheus text exposition.
    pub fn parse(text: &str) -> Self {
        let mut metrics = Self { engine: None, since_height: 0, switches: 0, height: 0 };
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else { continue };
            let Ok(value) = value.parse::<f64>() else { continue };
            // Gauges and counters of heights and switches are whole numbers.
            let whole = value as u64;
            if let Some(mode) = name.strip_prefix("bcos_consensus_engine{mode=\"").and_then(|m| m.strip_suffix("\"}")) {
                if value == 1.0 {
                    metrics.engine = Some(mode.to_owned());
                }
                continue;
            }
            match name {
                "bcos_consensus_engine_since_height" => metrics.since_height = whole,
                "bcos_consensus_switches_total" => metrics.switches = whole,
                "bcos_block_height" => metrics.height = whole,
                _ => {}
            }
        }
        metrics
    }
}

/// PBFT's quorum among `n` consensus nodes: `n - f` with `f = (n - 1) / 3`.
pub fn bft_quorum(n: usize) -> usize {
    n - (n - 1) / 3
}

/// The JSON-RPC error code and message with which `provider` refuses the raw transaction `raw`;
/// an error if it accepts it.
pub async fn rejection(provider: &impl Provider, raw: &Bytes) -> anyhow::Result<(i64, String)> {
    let sent = tokio::time::timeout(REQUEST_TIMEOUT, provider.send_raw_transaction(raw)).await;
    match sent.context("sending a raw transaction: no answer")? {
        Ok(pending) => bail!("transaction {} was accepted", pending.tx_hash()),
        Err(e) => {
            let payload = e.as_error_resp().with_context(|| format!("not an error response: {e}"))?;
            Ok((payload.code, payload.message.to_string()))
        }
    }
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

    /// Block `number`'s quorum certificate as node `i` stores it, if it has the block.
    pub async fn certificate(&self, i: usize, number: u64) -> anyhow::Result<Option<Certificate>> {
        let provider = self.provider(i)?;
        let what = format!("certificate of block {number} on node {i}");
        let request =
            provider.raw_request::<_, serde_json::Value>("bcos_getQuorumCertificate".into(), (format!("{number:#x}"),));
        let qc = limited(&what, request).await?;
        if qc.is_null() {
            return Ok(None);
        }
        let field = |name: &str| qc.get(name).cloned().with_context(|| format!("{what}: no {name} in {qc}"));
        let mut votes = Vec::new();
        for vote in field("votes")?.as_array().with_context(|| format!("{what}: votes are no list"))? {
            let id = vote.get("nodeId").cloned().context("vote without nodeId")?;
            let signature = vote.get("signature").cloned().context("vote without signature")?;
            votes.push((serde_json::from_value(id)?, serde_json::from_value(signature)?));
        }
        Ok(Some(Certificate {
            block_hash: serde_json::from_value(field("blockHash")?)?,
            number: serde_json::from_value::<U64>(field("number")?)?.to(),
            round: serde_json::from_value::<U64>(field("round")?)?.to(),
            votes,
        }))
    }

    /// Checks the certificates of blocks `from..=to` on node `i`: each is for the block node `i`
    /// holds at that height and verifies with at least `quorum` votes of `members` (see
    /// [`Certificate::verify`]). Returns them.
    pub async fn assert_certificates(
        &self,
        i: usize,
        from: u64,
        to: u64,
        members: &[B256],
        quorum: usize,
    ) -> anyhow::Result<Vec<Certificate>> {
        let mut certificates = Vec::new();
        for number in from..=to {
            let block = self.block(i, number).await?.with_context(|| format!("node {i} has no block {number}"))?;
            let qc = self
                .certificate(i, number)
                .await?
                .with_context(|| format!("node {i} has no certificate of block {number}"))?;
            qc.verify(block.hash, members, quorum).with_context(|| format!("on node {i}"))?;
            certificates.push(qc);
        }
        Ok(certificates)
    }

    /// Waits until the certificate of some block above `after`, on some node of `on`, carries a
    /// vote of node `voter`; returns that block's height.
    pub async fn wait_vote(&self, on: &[usize], voter: usize, after: u64, timeout: Duration) -> anyhow::Result<u64> {
        let id = self.node_id(voter);
        let deadline = Instant::now() + timeout;
        let mut checked = vec![after; on.len()];
        loop {
            for (k, &i) in on.iter().enumerate() {
                let Ok(head) = self.height(i).await else { continue };
                while checked[k] < head {
                    let number = checked[k] + 1;
                    let Ok(Some(qc)) = self.certificate(i, number).await else { break };
                    if qc.has_voter(&id) {
                        return Ok(number);
                    }
                    checked[k] = number;
                }
            }
            ensure!(
                Instant::now() < deadline,
                "no vote of node {voter} on blocks {after}..={checked:?} of nodes {on:?} within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Node `i`'s status over gRPC (`GetStatus`), read as the operator reads it: through the
    /// SDK's [`Governor`] (here acting as committee member 0).
    pub async fn grpc_status(&self, i: usize) -> anyhow::Result<proto::NodeStatus> {
        let what = format!("gRPC status of node {i}");
        let mut governor = limited(&what, Governor::connect(&self.endpoints(i)?.grpc, self.committee_key(0)?)).await?;
        limited(&what, governor.status()).await
    }

    /// Node `i`'s status over JSON-RPC (`bcos_nodeStatus`).
    pub async fn rpc_status(&self, i: usize) -> anyhow::Result<serde_json::Value> {
        let provider = self.provider(i)?;
        limited(&format!("JSON-RPC status of node {i}"), provider.raw_request("bcos_nodeStatus".into(), ())).await
    }

    /// Node `i`'s consensus metrics.
    pub async fn engine_metrics(&self, i: usize) -> anyhow::Result<EngineMetrics> {
        Ok(EngineMetrics::parse(&self.metrics_text(i).await?))
    }

    /// Node `i`'s Prometheus exposition.
    async fn metrics_text(&self, i: usize) -> anyhow::Result<String> {
        let url = format!("{}/metrics", self.endpoints(i)?.metrics);
        let what = format!("metrics of node {i}");
        let response = limited(&what, crate::http_client().get(&url).send()).await?;
        limited(&what, response.text()).await
    }

    /// The value of one sample of node `i`'s metrics, named as the exposition prints it (for
    /// example `bcos_network_refused_connections_total{reason="foreign_ca"}`); 0 when absent, as
    /// a counter that never counted is.
    pub async fn metric(&self, i: usize, sample: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text(i).await?;
        let value = text
            .lines()
            .filter_map(|line| line.rsplit_once(' '))
            .find(|(name, _)| *name == sample)
            .map_or(Ok(0.0), |(_, value)| value.parse::<f64>())
            .with_context(|| format!("metrics of node {i}: {sample} is not a number"))?;
        Ok(value)
    }

    /// Waits until every node of `nodes` answers its readiness probe with 200.
    pub async fn wait_ready(&self, nodes: &[usize], timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("nodes {nodes:?} ready"), timeout, || async {
            for &i in nodes {
                let url = format!("{}/readyz", self.endpoints(i)?.metrics);
                let response =
                    limited(&format!("readiness of node {i}"), crate::http_client().get(&url).send()).await?;
                if !response.status().is_success() {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        })
        .await
    }

    /// Waits until every node of `nodes` runs the engine `name` (`pbft`, `raft` or `observer`);
    /// returns their metrics then, in order.
    pub async fn wait_engine(
        &self,
        nodes: &[usize],
        name: &str,
        timeout: Duration,
    ) -> anyhow::Result<Vec<EngineMetrics>> {
        let waited = wait_for(&format!("nodes {nodes:?} running {name}"), timeout, || async {
            let all = futures::future::join_all(nodes.iter().map(|&i| self.engine_metrics(i))).await;
            let all: Vec<EngineMetrics> = all.into_iter().filter_map(Result::ok).collect();
            let done = all.len() == nodes.len() && all.iter().all(|m| m.engine.as_deref() == Some(name));
            Ok(done.then_some(all))
        })
        .await;
        match waited {
            Ok(all) => Ok(all),
            Err(e) => {
                let mut now = Vec::new();
                for &i in nodes {
                    now.push(format!("node {i}: {:?}", self.engine_metrics(i).await));
                }
                Err(e.context(format!("engines now: {}", now.join(", "))))
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_metrics_are_read_from_the_exposition() {
        let text = "# HELP bcos_consensus_engine The consensus engine running\n\
                    # TYPE bcos_consensus_engine gauge\n\
                    bcos_consensus_engine{mode=\"observer\"} 0\n\
                    bcos_consensus_engine{mode=\"pbft\"} 0\n\
                    bcos_consensus_engine{mode=\"raft\"} 1\n\
                    bcos_consensus_engine_since_height 13\n\
                    bcos_consensus_switches_total 1\n\
                    bcos_block_height 21\n\
                    bcos_block_height_other 99\n";
        let metrics = EngineMetrics::parse(text);
        assert_eq!(metrics, EngineMetrics { engine: Some("raft".into()), since_height: 13, switches: 1, height: 21 });
        assert_eq!(EngineMetrics::parse("").engine, None);
    }

    #[test]
    fn a_certificate_verifies_only_with_good_signatures_of_members() {
        let keys: Vec<bcos_sdk::crypto::NodeKey> = (0..3).map(|_| bcos_sdk::crypto::NodeKey::generate()).collect();
        let members: Vec<B256> = keys.iter().map(bcos_sdk::crypto::NodeKey::node_id).collect();
        let hash = B256::repeat_byte(7);
        let message = QuorumCertificate::signing_message(hash, 5, 1);
        let votes = keys.iter().map(|key| (key.node_id(), key.sign(&message))).collect();
        let qc = Certificate { block_hash: hash, number: 5, round: 1, votes };
        qc.verify(hash, &members, 3).expect("valid");
        assert!(qc.verify(B256::repeat_byte(8), &members, 3).is_err(), "another block");
        assert!(qc.verify(hash, &members, 4).is_err(), "below the quorum");
        assert!(qc.verify(hash, &members[..2], 2).is_err(), "a voter outside the members");
        let mut forged = qc.clone();
        forged.round = 2;
        assert!(forged.verify(hash, &members, 3).is_err(), "signatures of another round");
        let mut twice = qc.clone();
        twice.votes.push(qc.votes[0].clone());
        assert!(twice.verify(hash, &members, 3).is_err(), "a voter twice");
    }
}
