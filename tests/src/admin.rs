//! The chain's committee governing a running [`Cluster`]: consensus switches through the system
//! config contract, consensus and observer nodes through the node registry, roles through the
//! permissions contract, all by proposals and votes of the governance contract; and reading the
//! governance audit log.
//!
//! Each proposal and vote is one transaction signed with a committee member's key, sent through a
//! chosen node (alloy fills nonce, gas and fees), and waited for until that node has its receipt;
//! a reverted transaction is an error carrying the contract's reason. [`Cluster::govern`] makes a
//! change the way a committee does: member 0 proposes and members 1, 2, ... approve until the
//! threshold is reached (with a threshold of 1 the proposal runs at once).

use std::time::Duration;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, B256, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::SolCall,
};
use anyhow::{Context, bail, ensure};
use bcos_sdk::{
    config::ConsensusMode,
    crypto::AccountKey,
    types::system::{GOVERNANCE_ADDRESS, NODE_REGISTRY_ADDRESS, PERMISSIONS_ADDRESS, Role, SYSTEM_CONFIG_ADDRESS},
};

use crate::{
    Cluster, checks::REQUEST_TIMEOUT, governance::IGovernance, node_registry::INodeRegistry, permissions::IPermissions,
    system_config::ISystemConfig, wait_for,
};

/// How long a committee transaction may take to commit.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30);
/// Attempts at scheduling a switch whose transaction committed at or past the chosen height.
const SCHEDULE_ATTEMPTS: usize = 3;
/// The system config's answer to an `enableNumber` that is not in the future.
const TOO_LATE: &str = "is not after the current block";
/// Blocks a proposal stays open for votes: ample for a test's votes, even on a slow machine.
const PROPOSAL_LIFETIME: u64 = 10_000;

/// Where a proposal stands after a committee transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Waiting for more approvals.
    Pending,
    /// Its call ran.
    Executed,
    /// Its call reverted, for this reason.
    Failed(String),
    /// The threshold is out of reach.
    Rejected,
}

/// A committed proposal or vote.
#[derive(Debug, Clone)]
pub struct Governed {
    /// The proposal.
    pub id: U256,
    /// The block the transaction committed in.
    pub block: u64,
    /// The proposal's state after it.
    pub decision: Decision,
}

impl Governed {
    /// The block of an executed proposal; an error naming `what` for any other outcome.
    pub fn executed(&self, what: &str) -> anyhow::Result<u64> {
        ensure!(
            self.decision == Decision::Executed,
            "{what}: proposal {} is {:?} after block {}",
            self.id,
            self.decision,
            self.block
        );
        Ok(self.block)
    }
}

/// The decision a receipt's governance events record for proposal `id`.
fn decision(receipt: &TransactionReceipt, id: U256) -> Decision {
    let logs = receipt.inner.logs().iter().filter(|log| log.address() == GOVERNANCE_ADDRESS);
    for log in logs {
        if let Ok(executed) = log.log_decode::<IGovernance::ProposalExecuted>()
            && executed.inner.id == id
        {
            return Decision::Executed;
        }
        if let Ok(failed) = log.log_decode::<IGovernance::ProposalFailed>()
            && failed.inner.id == id
        {
            return Decision::Failed(failed.inner.reason.clone());
        }
        if let Ok(rejected) = log.log_decode::<IGovernance::ProposalRejected>()
            && rejected.inner.id == id
        {
            return Decision::Rejected;
        }
    }
    Decision::Pending
}

impl Cluster {
    /// Sends `call` to `to` signed with `key` through node `via` and waits for its receipt there.
    /// A transaction not sent, not committed in time, or reverted is an error (with the reason).
    pub async fn send_call(
        &self,
        via: usize,
        key: &AccountKey,
        to: Address,
        call: impl SolCall,
    ) -> anyhow::Result<TransactionReceipt> {
        let signer = PrivateKeySigner::from_bytes(&key.secret().into()).context("signing key")?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect_client(crate::rpc_client(self.endpoints(via)?.http.parse()?));
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
            let reason = raw.get("revertReason").and_then(|r| r.as_str()).unwrap_or("no reason");
            bail!("{hash} reverted in block {}: {reason}", receipt.block_number.unwrap_or_default());
        }
        Ok(receipt)
    }

    /// Committee member `member` proposes, through node `via`, that the governance contract
    /// calls `target` with `call`.
    pub async fn propose(
        &self,
        via: usize,
        member: usize,
        target: Address,
        call: impl SolCall,
    ) -> anyhow::Result<Governed> {
        let head = self.height(via).await?;
        let propose = IGovernance::proposeCall {
            target,
            data: call.abi_encode().into(),
            expiresAtBlock: head + PROPOSAL_LIFETIME,
        };
        let key = self.committee_key(member)?;
        let receipt = self.send_call(via, &key, GOVERNANCE_ADDRESS, propose).await?;
        let created = receipt
            .decoded_log::<IGovernance::ProposalCreated>()
            .context("the proposal's receipt has no ProposalCreated event")?;
        let id = created.data.id;
        Ok(Governed { id, block: receipt.block_number.unwrap_or_default(), decision: decision(&receipt, id) })
    }

    /// Committee member `member` votes on proposal `id` through node `via`.
    pub async fn vote(&self, via: usize, member: usize, id: U256, approve: bool) -> anyhow::Result<Governed> {
        let key = self.committee_key(member)?;
        let receipt = self.send_call(via, &key, GOVERNANCE_ADDRESS, IGovernance::voteCall { id, approve }).await?;
        Ok(Governed { id, block: receipt.block_number.unwrap_or_default(), decision: decision(&receipt, id) })
    }

    /// Makes the governance contract call `target` with `call`: member 0 proposes through node
    /// `via`, and members 1, 2, ... approve until the proposal is decided.
    pub async fn govern(&self, via: usize, target: Address, call: impl SolCall) -> anyhow::Result<Governed> {
        let mut governed = self.propose(via, 0, target, call).await?;
        let mut member = 1;
        while governed.decision == Decision::Pending && member < self.spec().committee {
            governed = self.vote(via, member, governed.id, true).await?;
            member += 1;
        }
        Ok(governed)
    }

    /// Schedules a switch to `mode`, `ahead` blocks past node `via`'s head, by the committee;
    /// returns the switch height (the first block the new engine decides). When the proposal
    /// runs too late for that height, schedules again from the new head.
    pub async fn schedule_consensus(&self, via: usize, mode: ConsensusMode, ahead: u64) -> anyhow::Result<u64> {
        let what = format!("scheduling {} through node {via}", mode.as_str());
        for _ in 0..SCHEDULE_ATTEMPTS {
            let at = self.height(via).await? + ahead;
            let call = ISystemConfig::setValueByKeyAtCall {
                key: "consensus_mode".into(),
                value: mode.as_str().into(),
                enableNumber: U256::from(at),
            };
            let governed = self.govern(via, SYSTEM_CONFIG_ADDRESS, call).await.context(what.clone())?;
            match governed.decision {
                Decision::Executed => return Ok(at),
                Decision::Failed(reason) if reason.contains(TOO_LATE) => continue,
                other => bail!("{what}: proposal {} is {other:?} after block {}", governed.id, governed.block),
            }
        }
        bail!("{what}: committed too late for {SCHEDULE_ATTEMPTS} attempts of {ahead} blocks ahead")
    }

    /// Makes node `node` a consensus node through the registry, by the committee sending through
    /// node `via`; returns the block that made the change (in force from the next one).
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
        self.govern(via, NODE_REGISTRY_ADDRESS, call).await.context(what.to_owned())?.executed(what)
    }

    /// Grants `role` to `account` by the committee, through node `via`; returns the block.
    pub async fn grant_role(&self, via: usize, account: Address, role: Role) -> anyhow::Result<u64> {
        let what = format!("granting {role} to {account}");
        let call = IPermissions::grantRoleCall { account, role: role.as_str().into() };
        self.govern(via, PERMISSIONS_ADDRESS, call).await.context(what.clone())?.executed(&what)
    }

    /// Whether `account` holds `role` in node `i`'s latest state.
    pub async fn has_role(&self, i: usize, account: Address, role: Role) -> anyhow::Result<bool> {
        let provider = self.provider(i)?;
        let permissions = IPermissions::new(PERMISSIONS_ADDRESS, &provider);
        Ok(tokio::time::timeout(REQUEST_TIMEOUT, permissions.hasRole(account, role.as_str().into()).call()).await??)
    }

    /// The whole governance audit log as `reader` reads it from node `i`; an error (with the
    /// contract's reason) when `reader` may not read it.
    pub async fn audit_log(&self, i: usize, reader: Address) -> anyhow::Result<Vec<IGovernance::AuditEntry>> {
        let provider = self.provider(i)?;
        let governance = IGovernance::new(GOVERNANCE_ADDRESS, &provider);
        let length = tokio::time::timeout(REQUEST_TIMEOUT, governance.auditLogLength().from(reader).call()).await??;
        let mut entries = Vec::new();
        // The contract answers at most 100 entries a call.
        while U256::from(entries.len()) < length {
            let call = governance.auditLog(U256::from(entries.len()), U256::from(100)).from(reader);
            let page = tokio::time::timeout(REQUEST_TIMEOUT, call.call()).await??;
            ensure!(!page.is_empty(), "the audit log ended before its length {length}");
            entries.extend(page);
        }
        Ok(entries)
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
