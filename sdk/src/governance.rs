//! Governing a chain through a node's gRPC API: committee proposals (which run once enough
//! members approve), direct system-contract transactions (a chain operator adding observers), and
//! read-only calls of the system contracts.
//!
//! Every request is bounded by [`REQUEST_TIMEOUT`] and every transaction is waited for until its
//! receipt is committed or [`COMMIT_TIMEOUT`] passes, so a caller never hangs on a stuck node.

use std::time::Duration;

use alloy_consensus::TxEip1559;
use alloy_primitives::{Address, B256, TxKind, U256};
use alloy_sol_types::{SolCall, SolEvent};

use crate::{
    client::{ClientError, NodeClient},
    crypto::AccountKey,
    proto,
    types::system::{GOVERNANCE_ADDRESS, IGovernance},
};

/// Gas of a governance transaction: system contract calls cost far less, and the chain charges
/// no gas price, so a generous limit costs nothing.
const GAS_LIMIT: u64 = 1_000_000;
/// How long one request to the node may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a transaction may take to be committed.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the receipt is asked for while waiting.
const RECEIPT_POLL: Duration = Duration::from_millis(200);

/// A governance request that did not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GovernanceError {
    /// The node did not answer in time.
    #[error("{what} ({endpoint}): no answer in {timeout:?}")]
    Timeout {
        /// What was asked.
        what: &'static str,
        /// The node's gRPC endpoint.
        endpoint: String,
        /// How long it was given.
        timeout: Duration,
    },
    /// The node refused or could not be reached.
    #[error("{what} ({endpoint}): {source}")]
    Client {
        /// What was asked.
        what: &'static str,
        /// The node's gRPC endpoint.
        endpoint: String,
        /// The client's error.
        source: ClientError,
    },
    /// The transaction was not committed in time.
    #[error("transaction {0} was not committed within {COMMIT_TIMEOUT:?}")]
    NotCommitted(B256),
    /// The transaction reverted.
    #[error("transaction {hash} reverted in block {block}: {reason}")]
    Reverted {
        /// The transaction.
        hash: B256,
        /// Its block.
        block: u64,
        /// The contract's reason.
        reason: String,
    },
    /// A read-only call reverted.
    #[error("call of {to} reverted: {reason}")]
    CallReverted {
        /// The contract called.
        to: Address,
        /// The contract's reason.
        reason: String,
    },
    /// The contract answered with bytes its ABI does not allow.
    #[error("malformed answer from {0}")]
    Malformed(Address),
}

/// Where a proposal stands after the transaction that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Its call ran, in this block.
    Executed {
        /// The proposal.
        id: U256,
        /// The block it ran in.
        block: u64,
    },
    /// It waits for other members' approvals until `expires_at_block`.
    Pending {
        /// The proposal.
        id: U256,
        /// The last block it can be approved in.
        expires_at_block: u64,
    },
    /// Its call reverted, for this reason.
    Failed {
        /// The proposal.
        id: U256,
        /// The target's reason.
        reason: String,
    },
}

/// One account talking to the chain through one node.
#[derive(Debug)]
pub struct Governor {
    client: NodeClient,
    endpoint: String,
    key: AccountKey,
}

impl Governor {
    /// Connects to the node at `endpoint` (gRPC) to act as `key`.
    pub async fn connect(endpoint: &str, key: AccountKey) -> Result<Self, GovernanceError> {
        let endpoint = endpoint.to_owned();
        let client = bounded(&endpoint, "connecting", NodeClient::connect(endpoint.clone())).await?;
        Ok(Self { client, endpoint, key })
    }

    /// The acting account.
    pub fn address(&self) -> Address {
        self.key.address()
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<proto::NodeStatus, GovernanceError> {
        bounded(&self.endpoint, "reading the status", self.client.status()).await
    }

    /// Runs a read-only call of `to` and decodes its answer.
    pub async fn view<C: SolCall>(&mut self, to: Address, call: &C) -> Result<C::Return, GovernanceError> {
        let request = proto::CallRequest {
            from: self.key.address().to_vec(),
            to: to.to_vec(),
            data: call.abi_encode(),
            gas: 0,
            value: Vec::new(),
        };
        let response = bounded(&self.endpoint, "calling a contract", self.client.call(request)).await?;
        if !response.success {
            return Err(GovernanceError::CallReverted { to, reason: response.revert_reason });
        }
        C::abi_decode_returns(&response.output).map_err(|_| GovernanceError::Malformed(to))
    }

    /// Sends `call` to `to` as a transaction of the acting account and waits for its receipt; a
    /// revert is an error carrying the contract's reason.
    pub async fn transact<C: SolCall>(&mut self, to: Address, call: &C) -> Result<proto::Receipt, GovernanceError> {
        let status = self.status().await?;
        let nonce = bounded(&self.endpoint, "reading the account's nonce", self.client.account(self.key.address()))
            .await?
            .nonce;
        let raw = self.key.sign_transaction(TxEip1559 {
            chain_id: status.chain_id,
            nonce,
            gas_limit: GAS_LIMIT,
            to: TxKind::Call(to),
            input: call.abi_encode().into(),
            ..Default::default()
        });
        let hash = bounded(&self.endpoint, "sending the transaction", self.client.send_raw_transaction(raw)).await?;
        let receipt = self.wait_for_receipt(hash).await?;
        if !receipt.success {
            let reason = decode_revert(&receipt.revert_output).unwrap_or_else(|| "no reason given".to_owned());
            return Err(GovernanceError::Reverted { hash, block: receipt.block_number, reason });
        }
        Ok(receipt)
    }

    /// Proposes that the governance contract call `target` with `call`, open for votes for
    /// `lifetime` blocks; with the acting account's approval alone reaching the threshold, the
    /// call runs in the same transaction.
    pub async fn propose<C: SolCall>(
        &mut self,
        target: Address,
        call: &C,
        lifetime: u64,
    ) -> Result<ProposalOutcome, GovernanceError> {
        let height = self.status().await?.height;
        let propose = IGovernance::proposeCall {
            target,
            data: call.abi_encode().into(),
            expiresAtBlock: height.saturating_add(lifetime),
        };
        let receipt = self.transact(GOVERNANCE_ADDRESS, &propose).await?;
        let id = governance_events::<IGovernance::ProposalCreated>(&receipt)
            .next()
            .ok_or(GovernanceError::Malformed(GOVERNANCE_ADDRESS))?
            .id;
        if governance_events::<IGovernance::ProposalExecuted>(&receipt).any(|executed| executed.id == id) {
            return Ok(ProposalOutcome::Executed { id, block: receipt.block_number });
        }
        if let Some(failed) = governance_events::<IGovernance::ProposalFailed>(&receipt).find(|failed| failed.id == id)
        {
            return Ok(ProposalOutcome::Failed { id, reason: failed.reason });
        }
        Ok(ProposalOutcome::Pending { id, expires_at_block: propose.expiresAtBlock })
    }

    /// Polls for the receipt of `hash` until it is committed or [`COMMIT_TIMEOUT`] passes.
    async fn wait_for_receipt(&mut self, hash: B256) -> Result<proto::Receipt, GovernanceError> {
        let deadline = tokio::time::Instant::now() + COMMIT_TIMEOUT;
        loop {
            match tokio::time::timeout(REQUEST_TIMEOUT, self.client.receipt(hash)).await {
                Ok(Ok(receipt)) => return Ok(receipt),
                // Not committed yet; a slow answer is retried like one.
                Ok(Err(ClientError::Status(status))) if status.code() == tonic::Code::NotFound => {}
                Err(_) => {}
                Ok(Err(source)) => {
                    return Err(GovernanceError::Client {
                        what: "reading a receipt",
                        endpoint: self.endpoint.clone(),
                        source,
                    });
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GovernanceError::NotCommitted(hash));
            }
            tokio::time::sleep(RECEIPT_POLL).await;
        }
    }
}

/// Runs one request to the node at `endpoint`, bounded by [`REQUEST_TIMEOUT`].
async fn bounded<T>(
    endpoint: &str,
    what: &'static str,
    call: impl Future<Output = Result<T, ClientError>>,
) -> Result<T, GovernanceError> {
    match tokio::time::timeout(REQUEST_TIMEOUT, call).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(source)) => Err(GovernanceError::Client { what, endpoint: endpoint.to_owned(), source }),
        Err(_) => Err(GovernanceError::Timeout { what, endpoint: endpoint.to_owned(), timeout: REQUEST_TIMEOUT }),
    }
}

/// The events of type `E` the governance contract logged in `receipt`; its other events do not
/// decode as `E` and are skipped.
fn governance_events<E: SolEvent>(receipt: &proto::Receipt) -> impl Iterator<Item = E> + '_ {
    receipt.logs.iter().filter(|log| log.address.as_slice() == GOVERNANCE_ADDRESS.as_slice()).filter_map(|log| {
        let topics: Option<Vec<B256>> = log.topics.iter().map(|t| B256::try_from(t.as_slice()).ok()).collect();
        E::decode_raw_log(topics?, &log.data).ok()
    })
}

/// The reason in a revert's output: a Solidity `Error(string)` or a panic code.
pub fn decode_revert(output: &[u8]) -> Option<String> {
    use alloy_sol_types::{Panic, Revert, SolError};
    if let Ok(revert) = Revert::abi_decode(output) {
        return Some(revert.reason);
    }
    Panic::abi_decode(output).ok().map(|panic| panic.to_string())
}
