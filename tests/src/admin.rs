//! The chain's administrator reconfiguring a running [`Cluster`]: consensus switches through the
//! system config contract, consensus and observer nodes through the node registry.
//!
//! Each change is one transaction signed with the genesis admin key, sent through a chosen node
//! (alloy fills nonce, gas and fees), and waited for until that node has its receipt; a revert is
//! an error carrying the contract's reason.

use std::time::Duration;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, B256, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use anyhow::{Context, bail};
use bcos_sdk::{
    config::ConsensusMode,
    types::system::{NODE_REGISTRY_ADDRESS, SYSTEM_CONFIG_ADDRESS},
};

use crate::{Cluster, checks::REQUEST_TIMEOUT, node_registry::INodeRegistry, system_config::ISystemConfig, wait_for};

/// How long an administrator's transaction may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at scheduling a switch whose transaction committed at or past the chosen height.
const SCHEDULE_ATTEMPTS: usize = 3;
/// The system config's answer to an `enableNumber` that is not in the future.
const TOO_LATE: &str = "is not after the current block";

/// An administrator's transaction that committed but reverted.
#[derive(Debug)]
struct Reverted {
    block: u64,
    reason: String,
}

impl std::fmt::Display for Reverted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reverted in block {}: {}", self.block, self.reason)
    }
}

impl Cluster {
    /// Sends `call` to `to` as the administrator through node `via` and waits for its receipt
    /// there. The outer error is a transaction not sent or not committed in time.
    async fn admin_call(
        &self,
        via: usize,
        to: Address,
        call: impl SolCall,
    ) -> anyhow::Result<Result<TransactionReceipt, Reverted>> {
        let signer = PrivateKeySigner::from_bytes(&self.admin_key()?.secret().into()).context("admin key")?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_http(self.endpoints(via)?.http.parse()?);
        let request = TransactionRequest::default().with_to(to).with_input(call.abi_encode());
        let pending = tokio::time::timeout(REQUEST_TIMEOUT, provider.send_transaction(request))
            .await
            .context("no answer")?
            .context("sending")?;
        let hash = *pending.tx_hash();
        let receipt = wait_for(&format!("receipt of {hash} on node {via}"), COMMIT_TIMEOUT, || async {
            let got = tokio::time::timeout(REQUEST_TIMEOUT, provider.get_transaction_receipt(hash)).await;
            Ok(got.ok().and_then(Result::ok).flatten())
        })
        .await?;
        if !receipt.status() {
            let raw: serde_json::Value =
                provider.raw_request("eth_getTransactionReceipt".into(), (hash,)).await.context("raw receipt")?;
            let reason = raw.get("revertReason").and_then(|r| r.as_str()).unwrap_or("no reason").to_owned();
            return Ok(Err(Reverted { block: receipt.block_number.unwrap_or_default(), reason }));
        }
        Ok(Ok(receipt))
    }

    /// Schedules a switch to `mode`, `ahead` blocks past node `via`'s head, as the administrator;
    /// returns the switch height (the first block the new engine decides). When the transaction
    /// commits too late for that height, schedules again from the new head.
    pub async fn schedule_consensus(&self, via: usize, mode: ConsensusMode, ahead: u64) -> anyhow::Result<u64> {
        let what = format!("scheduling {} through node {via}", mode.as_str());
        for _ in 0..SCHEDULE_ATTEMPTS {
            let at = self.height(via).await? + ahead;
            let call = ISystemConfig::setValueByKeyAtCall {
                key: "consensus_mode".into(),
                value: mode.as_str().into(),
                enableNumber: U256::from(at),
            };
            match self.admin_call(via, SYSTEM_CONFIG_ADDRESS, call).await.context(what.clone())? {
                Ok(_) => return Ok(at),
                Err(reverted) if reverted.reason.contains(TOO_LATE) => continue,
                Err(reverted) => bail!("{what}: {reverted}"),
            }
        }
        bail!("{what}: committed too late for {SCHEDULE_ATTEMPTS} attempts of {ahead} blocks ahead")
    }

    /// Makes node `node` a consensus node through the registry, as the administrator sending
    /// through node `via`; returns the block that made the change (in force from the next one).
    pub async fn add_consensus_node(&self, via: usize, node: usize) -> anyhow::Result<u64> {
        let call = INodeRegistry::addConsensusNodeCall { nodeId: self.node_id(node) };
        self.registry_change(via, call, &format!("adding node {node} as a consensus node")).await
    }

    /// Makes node `node` an observer through the registry; see [`Cluster::add_consensus_node`].
    pub async fn add_observer_node(&self, via: usize, node: usize) -> anyhow::Result<u64> {
        let call = INodeRegistry::addObserverNodeCall { nodeId: self.node_id(node) };
        self.registry_change(via, call, &format!("adding node {node} as an observer")).await
    }

    /// Removes node `node` from the chain through the registry; see
    /// [`Cluster::add_consensus_node`].
    pub async fn remove_node(&self, via: usize, node: usize) -> anyhow::Result<u64> {
        let call = INodeRegistry::removeNodeCall { nodeId: self.node_id(node) };
        self.registry_change(via, call, &format!("removing node {node}")).await
    }

    async fn registry_change(&self, via: usize, call: impl SolCall, what: &str) -> anyhow::Result<u64> {
        let receipt = match self.admin_call(via, NODE_REGISTRY_ADDRESS, call).await.context(what.to_owned())? {
            Ok(receipt) => receipt,
            Err(reverted) => bail!("{what}: {reverted}"),
        };
        receipt.block_number.with_context(|| format!("{what}: receipt without a block"))
    }

    /// The consensus and the observer nodes in node `i`'s latest state of the registry.
    pub async fn registry(&self, i: usize) -> anyhow::Result<(Vec<B256>, Vec<B256>)> {
        let provider = self.provider(i)?;
        let registry = INodeRegistry::new(NODE_REGISTRY_ADDRESS, &provider);
        let consensus = tokio::time::timeout(REQUEST_TIMEOUT, registry.consensusNodes().call()).await??;
        let observers = tokio::time::timeout(REQUEST_TIMEOUT, registry.observerNodes().call()).await??;
        Ok((consensus, observers))
    }
}
