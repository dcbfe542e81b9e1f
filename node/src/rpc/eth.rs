//! Ethereum JSON-RPC over HTTP and WebSocket (one port), plus `bcos_*` methods.
//!
//! Answers follow what ethers.js, web3.py and alloy expect: hex quantities, `null` for unknown
//! blocks and transactions, code 3 with the revert data for reverted calls, and the geth wording
//! for transaction rejections (clients classify errors by it). Every pool rejection also has its
//! own code (see [`codes`]). State queries are served from the latest state: the node keeps flat
//! state, so a block tag older than the head is refused with a clear error instead of a wrong
//! answer.
//!
//! `bcos_resolveContract(name, account)` and `bcos_contractVersions(name)` show the contract
//! versions registry ([`crate::executor::versions`]) from the latest state: where an account's
//! calls of a name's alias go, and the name's release. Both answer `null` for a name not
//! registered, and an error while the chain's compatibility version keeps the registry off.

use std::{sync::Arc, time::Instant};

use alloy_consensus::{
    EMPTY_OMMER_ROOT_HASH, Receipt, ReceiptEnvelope, ReceiptWithBloom, Transaction as _, TxType, transaction::Recovered,
};
use alloy_eips::{BlockId, BlockNumberOrTag};
use alloy_primitives::{Address, B64, B256, Bloom, Bytes, TxKind, U64, U256};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, FeeHistory, Filter, FilterBlockOption, Header, Log, Transaction, TransactionReceipt,
    TransactionRequest,
};
use bcos_sdk::{
    config::RpcConfig,
    types::{BlockHeader, StoredReceipt},
};
use jsonrpsee::{
    PendingSubscriptionSink, RpcModule, SubscriptionMessage,
    server::{BatchRequestConfig, Server, ServerConfig, ServerHandle},
    types::{ErrorObjectOwned, Params},
};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use super::{
    NodeApi,
    filters::{FilterKind, Filters, MAX_FILTERS},
    tls::TlsServer,
};
use crate::{
    chain::CommittedBlock,
    executor::{
        CallError, CallOutcome, CallRequest, Feature, PermissionDenied, decode_revert,
        versions::{self, Release, Resolved},
    },
    storage::{BlockReader, StateReader, StoredTx, TxLocation},
    txpool::{PoolError, PoolErrorKind},
};

/// JSON-RPC error codes. Pool rejections each have their own code; their messages keep the
/// wording of geth so existing clients recognise them.
pub mod codes {
    /// Parameters could not be parsed (JSON-RPC standard).
    pub const INVALID_PARAMS: i32 = -32602;
    /// Internal error (JSON-RPC standard).
    pub const INTERNAL: i32 = -32603;
    /// Execution reverted; `data` holds the revert output (as geth).
    pub const EXECUTION_REVERTED: i32 = 3;
    /// Generic server error: unknown block, historical state, out-of-gas call.
    pub const SERVER: i32 = -32000;
    /// A query over more blocks or results than allowed (EIP-1474 "limit exceeded").
    pub const LIMIT_EXCEEDED: i32 = -32005;
    /// The transaction bytes are not a valid EIP-2718 transaction.
    pub const TX_MALFORMED: i32 = -32001;
    /// Blob or set-code transaction.
    pub const TX_UNSUPPORTED_TYPE: i32 = -32002;
    /// Legacy transaction without EIP-155 chain id.
    pub const TX_NOT_REPLAY_PROTECTED: i32 = -32003;
    /// Signed for another chain.
    pub const TX_WRONG_CHAIN_ID: i32 = -32004;
    /// Bad signature.
    pub const TX_INVALID_SIGNATURE: i32 = -32006;
    /// Larger than the pool accepts.
    pub const TX_OVERSIZED: i32 = -32007;
    /// Already pending.
    pub const TX_ALREADY_KNOWN: i32 = -32008;
    /// Nonce already used.
    pub const TX_NONCE_TOO_LOW: i32 = -32009;
    /// Nonce too far ahead.
    pub const TX_NONCE_TOO_HIGH: i32 = -32010;
    /// Same nonce pending, not enough fee bump.
    pub const TX_REPLACEMENT_UNDERPRICED: i32 = -32011;
    /// Pool full.
    pub const TX_POOL_FULL: i32 = -32012;
    /// Sender has too many pending transactions.
    pub const TX_SENDER_LIMIT: i32 = -32013;
    /// Gas limit above the block gas limit.
    pub const TX_EXCEEDS_BLOCK_GAS_LIMIT: i32 = -32014;
    /// Gas limit below the intrinsic cost.
    pub const TX_INTRINSIC_GAS_TOO_LOW: i32 = -32015;
    /// A contract creation from an account without the `deployer` role (permissions enabled).
    pub const TX_NO_DEPLOY_PERMISSION: i32 = -32016;
    /// Another transaction from an account without the `transactor` role (permissions enabled).
    pub const TX_NO_TRANSACT_PERMISSION: i32 = -32017;
}

/// Most blocks one `eth_getLogs` may scan.
pub const MAX_LOG_BLOCK_RANGE: u64 = 10_000;
/// Most logs one `eth_getLogs` may return.
pub const MAX_LOG_RESULTS: usize = 10_000;
/// Most blocks one `eth_feeHistory` may cover.
const MAX_FEE_HISTORY_BLOCKS: u64 = 1024;
/// Steps of the `eth_estimateGas` binary search (enough for any u64 range within 1 gas).
const ESTIMATE_MAX_STEPS: u32 = 64;

/// A JSON-RPC error answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Parameters were invalid.
    #[error("invalid params: {0}")]
    InvalidParams(String),
    /// The pool refused a transaction.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A call reverted.
    #[error("execution reverted{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    Reverted {
        /// Decoded reason, when the revert data is an `Error(string)` or a panic.
        reason: Option<String>,
        /// Raw revert data.
        data: Bytes,
    },
    /// A request the node cannot serve (unknown block, historical state, failed call).
    #[error("{0}")]
    Server(String),
    /// The request asks for too much.
    #[error("{0}")]
    LimitExceeded(String),
    /// The node failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl RpcError {
    fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

fn pool_code(kind: &PoolErrorKind) -> i32 {
    use bcos_sdk::types::TxError;
    match kind {
        PoolErrorKind::Invalid(TxError::Malformed(_)) => codes::TX_MALFORMED,
        PoolErrorKind::Invalid(TxError::UnsupportedType(_)) => codes::TX_UNSUPPORTED_TYPE,
        PoolErrorKind::Invalid(TxError::NotReplayProtected) => codes::TX_NOT_REPLAY_PROTECTED,
        PoolErrorKind::Invalid(TxError::WrongChainId { .. }) => codes::TX_WRONG_CHAIN_ID,
        PoolErrorKind::Invalid(_) => codes::TX_INVALID_SIGNATURE,
        PoolErrorKind::Oversized { .. } => codes::TX_OVERSIZED,
        PoolErrorKind::AlreadyKnown => codes::TX_ALREADY_KNOWN,
        PoolErrorKind::NonceTooLow { .. } => codes::TX_NONCE_TOO_LOW,
        PoolErrorKind::NonceTooHigh { .. } => codes::TX_NONCE_TOO_HIGH,
        PoolErrorKind::ReplacementUnderpriced => codes::TX_REPLACEMENT_UNDERPRICED,
        PoolErrorKind::PoolFull => codes::TX_POOL_FULL,
        PoolErrorKind::SenderLimit(_) => codes::TX_SENDER_LIMIT,
        PoolErrorKind::ExceedsBlockGasLimit { .. } => codes::TX_EXCEEDS_BLOCK_GAS_LIMIT,
        PoolErrorKind::IntrinsicGasTooLow { .. } => codes::TX_INTRINSIC_GAS_TOO_LOW,
        PoolErrorKind::PermissionDenied(PermissionDenied::NoDeploy(_)) => codes::TX_NO_DEPLOY_PERMISSION,
        PoolErrorKind::PermissionDenied(PermissionDenied::NoTransact(_)) => codes::TX_NO_TRANSACT_PERMISSION,
        PoolErrorKind::Storage(_) => codes::INTERNAL,
    }
}

impl From<RpcError> for ErrorObjectOwned {
    fn from(error: RpcError) -> Self {
        let message = error.to_string();
        match error {
            RpcError::InvalidParams(_) => ErrorObjectOwned::owned(codes::INVALID_PARAMS, message, None::<()>),
            RpcError::Pool(e) => ErrorObjectOwned::owned(pool_code(&e.kind), message, e.hash),
            RpcError::Reverted { data, .. } => ErrorObjectOwned::owned(codes::EXECUTION_REVERTED, message, Some(data)),
            RpcError::Server(_) => ErrorObjectOwned::owned(codes::SERVER, message, None::<()>),
            RpcError::LimitExceeded(_) => ErrorObjectOwned::owned(codes::LIMIT_EXCEEDED, message, None::<()>),
            RpcError::Internal(_) => ErrorObjectOwned::owned(codes::INTERNAL, message, None::<()>),
        }
    }
}

type RpcResult<T> = Result<T, RpcError>;

/// The context every method runs with.
#[derive(Clone)]
pub struct EthApi {
    api: Arc<NodeApi>,
    filters: Arc<Filters>,
}

/// Starts the JSON-RPC server (HTTP and WebSocket on one port; HTTPS and WSS with `tls`).
pub async fn start(
    config: &RpcConfig,
    api: Arc<NodeApi>,
    tls: Option<TlsServer>,
) -> std::io::Result<(ServerHandle, std::net::SocketAddr)> {
    let server_config = ServerConfig::builder()
        .max_request_body_size(config.max_request_bytes)
        .max_response_body_size(u32::MAX / 2)
        .max_connections(config.max_connections)
        .set_batch_request_config(BatchRequestConfig::Limit(config.max_batch))
        .build();
    let module = module(EthApi { api, filters: Arc::default() }).map_err(std::io::Error::other)?;
    if let Some(tls) = tls {
        let listener = crate::metrics::bind(config.listen).await?;
        let address = listener.local_addr()?;
        return Ok((super::tls::spawn(listener, tls, server_config, module.into(), config.max_connections), address));
    }
    let server = Server::builder()
        .set_config(server_config)
        .build(config.listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", config.listen)))?;
    let address = server.local_addr()?;
    Ok((server.start(module), address))
}

/// Registers a method that answers quickly and inline.
fn method<T: Serialize + Clone + 'static>(
    module: &mut RpcModule<EthApi>,
    name: &'static str,
    handler: fn(&EthApi, Params<'_>) -> RpcResult<T>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_method(name, move |params, ctx, _| ctx.measured(name, || handler(ctx, params)))?;
    Ok(())
}

/// Registers a method that may run long (execution, scans) on the blocking pool.
fn blocking_method<T: Serialize + Clone + Send + 'static>(
    module: &mut RpcModule<EthApi>,
    name: &'static str,
    handler: fn(&EthApi, Params<'_>) -> RpcResult<T>,
) -> Result<(), jsonrpsee::core::RegisterMethodError> {
    module.register_blocking_method(name, move |params, ctx, _| ctx.measured(name, || handler(&ctx, params)))?;
    Ok(())
}

fn module(api: EthApi) -> Result<RpcModule<EthApi>, jsonrpsee::core::RegisterMethodError> {
    let mut m = RpcModule::new(api);
    method(&mut m, "web3_clientVersion", |ctx, _| Ok(format!("bcos-node/v{}/rust", ctx.api.version.software())))?;
    method(&mut m, "net_version", |ctx, _| Ok(ctx.api.chain.chain_id().to_string()))?;
    method(&mut m, "net_listening", |_, _| Ok(true))?;
    method(&mut m, "net_peerCount", |ctx, _| {
        Ok(U64::from(ctx.api.network.get().map_or(0, |network| network.connected_peers().len())))
    })?;
    method(&mut m, "eth_chainId", |ctx, _| Ok(U64::from(ctx.api.chain.chain_id())))?;
    method(&mut m, "eth_syncing", |_, _| Ok(false))?;
    method(&mut m, "eth_accounts", |_, _| Ok(Vec::<Address>::new()))?;
    method(&mut m, "eth_blockNumber", |ctx, _| Ok(U64::from(ctx.head_number())))?;
    method(&mut m, "eth_gasPrice", |_, _| Ok(U256::ZERO))?;
    method(&mut m, "eth_maxPriorityFeePerGas", |_, _| Ok(U256::ZERO))?;
    method(&mut m, "eth_feeHistory", EthApi::fee_history)?;
    method(&mut m, "eth_getBalance", |ctx, p| ctx.account_field(p, |a| a.map_or(U256::ZERO, |a| a.balance)))?;
    method(&mut m, "eth_getTransactionCount", EthApi::transaction_count)?;
    method(&mut m, "eth_getCode", EthApi::code)?;
    method(&mut m, "eth_getStorageAt", EthApi::storage_at)?;
    method(&mut m, "eth_sendRawTransaction", EthApi::send_raw_transaction)?;
    method(&mut m, "eth_getTransactionByHash", EthApi::transaction_by_hash)?;
    method(&mut m, "eth_getTransactionReceipt", EthApi::transaction_receipt)?;
    method(&mut m, "eth_getBlockByNumber", EthApi::block_by_number)?;
    method(&mut m, "eth_getBlockByHash", EthApi::block_by_hash)?;
    method(&mut m, "eth_getBlockTransactionCountByNumber", EthApi::block_tx_count_by_number)?;
    method(&mut m, "eth_getBlockTransactionCountByHash", EthApi::block_tx_count_by_hash)?;
    blocking_method(&mut m, "eth_call", EthApi::call)?;
    blocking_method(&mut m, "eth_estimateGas", EthApi::estimate_gas)?;
    blocking_method(&mut m, "eth_getLogs", EthApi::logs)?;
    method(&mut m, "eth_newFilter", |ctx, p| {
        let (filter,): (Filter,) = parse(p)?;
        ctx.new_filter(FilterKind::Logs(Box::new(filter)))
    })?;
    method(&mut m, "eth_newBlockFilter", |ctx, _| ctx.new_filter(FilterKind::Blocks))?;
    blocking_method(&mut m, "eth_getFilterChanges", EthApi::filter_changes)?;
    blocking_method(&mut m, "eth_getFilterLogs", EthApi::filter_logs)?;
    method(&mut m, "eth_uninstallFilter", |ctx, p| {
        let (id,): (U256,) = parse(p)?;
        Ok(ctx.filters.uninstall(id))
    })?;
    method(&mut m, "bcos_nodeStatus", |ctx, _| ctx.api.status().map_err(RpcError::internal))?;
    method(&mut m, "bcos_systemConfig", |ctx, _| Ok(ctx.api.chain.system_config()))?;
    method(&mut m, "bcos_getQuorumCertificate", EthApi::quorum_certificate)?;
    method(&mut m, "bcos_pendingTransactionCount", |ctx, _| Ok(U64::from(ctx.api.pool.len())))?;
    method(&mut m, "bcos_resolveContract", EthApi::resolve_contract)?;
    method(&mut m, "bcos_contractVersions", EthApi::contract_versions)?;
    m.register_subscription(
        "eth_subscribe",
        "eth_subscription",
        "eth_unsubscribe",
        |params, sink, ctx, _| async move {
            ctx.subscribe(params, sink).await;
        },
    )?;
    Ok(m)
}

/// What `eth_getFilterChanges` returns: block hashes or logs, by the filter's kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
enum FilterChanges {
    Hashes(Vec<B256>),
    Logs(Vec<Log>),
}

fn filter_not_found() -> RpcError {
    RpcError::Server("filter not found".into())
}

/// What `eth_subscribe` can follow.
enum Subscription {
    NewHeads,
    Logs(Box<Filter>),
}

impl EthApi {
    fn measured<T>(&self, method: &'static str, f: impl FnOnce() -> RpcResult<T>) -> Result<T, ErrorObjectOwned> {
        let metrics = &self.api.metrics;
        let labels = ["jsonrpc", method];
        metrics.calls.with_label_values(&labels).inc();
        let started = Instant::now();
        let result = f();
        metrics.latency.with_label_values(&labels).observe(started.elapsed().as_secs_f64());
        result.map_err(|e| {
            metrics.errors.with_label_values(&labels).inc();
            e.into()
        })
    }

    fn store(&self) -> &crate::storage::RocksStore {
        self.api.chain.store()
    }

    fn head_number(&self) -> u64 {
        self.store().head_number()
    }

    /// Resolves a block tag or number to a committed height, `None` if beyond the head.
    fn resolve_number(&self, tag: BlockNumberOrTag) -> Option<u64> {
        let head = self.head_number();
        match tag {
            BlockNumberOrTag::Latest
            | BlockNumberOrTag::Pending
            | BlockNumberOrTag::Safe
            | BlockNumberOrTag::Finalized => Some(head),
            BlockNumberOrTag::Earliest => Some(0),
            BlockNumberOrTag::Number(n) => (n <= head).then_some(n),
        }
    }

    /// Checks that a state query targets the latest state, the only one a flat store holds.
    fn require_latest_state(&self, block: Option<BlockId>) -> RpcResult<()> {
        let head = self.head_number();
        let number = match block.unwrap_or_default() {
            BlockId::Number(tag) => self.resolve_number(tag),
            BlockId::Hash(hash) => self.store().block_number(&hash.block_hash).map_err(RpcError::internal)?,
        };
        match number {
            Some(n) if n == head => Ok(()),
            Some(n) => Err(RpcError::Server(format!(
                "historical state is not available: block {n} is older than the head {head} (this node keeps only the latest state)"
            ))),
            None => Err(RpcError::Server("header not found".into())),
        }
    }

    fn account_field<T>(
        &self,
        params: Params<'_>,
        field: impl FnOnce(Option<crate::storage::AccountState>) -> T,
    ) -> RpcResult<T> {
        let (address, block): (Address, Option<BlockId>) = parse(params)?;
        self.require_latest_state(block)?;
        Ok(field(self.store().account(&address).map_err(RpcError::internal)?))
    }

    fn transaction_count(&self, params: Params<'_>) -> RpcResult<U64> {
        let (address, block): (Address, Option<BlockId>) = parse(params)?;
        if matches!(block, Some(BlockId::Number(BlockNumberOrTag::Pending))) {
            return self.api.pool.pending_nonce(&address).map(U64::from).map_err(RpcError::Pool);
        }
        self.require_latest_state(block)?;
        Ok(U64::from(self.store().account(&address).map_err(RpcError::internal)?.map_or(0, |a| a.nonce)))
    }

    fn code(&self, params: Params<'_>) -> RpcResult<Bytes> {
        let (address, block): (Address, Option<BlockId>) = parse(params)?;
        self.require_latest_state(block)?;
        let Some(account) = self.store().account(&address).map_err(RpcError::internal)? else {
            return Ok(Bytes::new());
        };
        Ok(self.store().code(&account.code_hash).map_err(RpcError::internal)?.unwrap_or_default())
    }

    fn storage_at(&self, params: Params<'_>) -> RpcResult<B256> {
        let (address, slot, block): (Address, U256, Option<BlockId>) = parse(params)?;
        self.require_latest_state(block)?;
        Ok(B256::from(self.store().storage(&address, &slot).map_err(RpcError::internal)?.to_be_bytes()))
    }

    fn send_raw_transaction(&self, params: Params<'_>) -> RpcResult<B256> {
        let (raw,): (Bytes,) = parse(params)?;
        Ok(self.api.pool.submit(&raw)?)
    }

    fn call_request(&self, request: TransactionRequest) -> RpcResult<CallRequest> {
        let data = request.input.input().cloned().unwrap_or_default();
        let to = match request.to {
            Some(TxKind::Call(address)) => Some(address),
            Some(TxKind::Create) | None => None,
        };
        Ok(CallRequest { from: request.from, to, data, value: request.value.unwrap_or_default(), gas: request.gas })
    }

    fn run_call(&self, request: &CallRequest) -> RpcResult<CallOutcome> {
        self.api.call(request).map_err(|e| match e {
            CallError::Invalid(reason) => RpcError::Server(reason),
            CallError::Execution(e) => RpcError::internal(e),
        })
    }

    fn call(&self, params: Params<'_>) -> RpcResult<Bytes> {
        let (request, block): (TransactionRequest, Option<BlockId>) = parse(params)?;
        self.require_latest_state(block)?;
        let outcome = self.run_call(&self.call_request(request)?)?;
        outcome_result(outcome)
    }

    fn estimate_gas(&self, params: Params<'_>) -> RpcResult<U64> {
        let (request, block): (TransactionRequest, Option<BlockId>) = parse(params)?;
        self.require_latest_state(block)?;
        let mut call = self.call_request(request)?;
        let cap = call.gas.unwrap_or(u64::MAX).min(self.api.chain.system_config().block_gas_limit);
        call.gas = Some(cap);
        let first = self.run_call(&call)?;
        let used = first.gas_used;
        outcome_result(first)?;
        // Gas used is a lower bound: refunds and the 63/64 rule can make a call need more.
        let mut low = used.saturating_sub(1);
        let mut high = cap;
        for _ in 0..ESTIMATE_MAX_STEPS {
            if high - low <= 1 {
                break;
            }
            let mid = low + (high - low) / 2;
            call.gas = Some(mid);
            let outcome = self.run_call(&call)?;
            if outcome.success { high = mid } else { low = mid }
        }
        Ok(U64::from(high))
    }

    fn fee_history(&self, params: Params<'_>) -> RpcResult<FeeHistory> {
        let (count, newest, percentiles): (U64, BlockNumberOrTag, Option<Vec<f64>>) = parse(params)?;
        let newest = self.resolve_number(newest).ok_or_else(|| RpcError::Server("header not found".into()))?;
        let count = count.to::<u64>().clamp(1, MAX_FEE_HISTORY_BLOCKS).min(newest + 1);
        let oldest = newest + 1 - count;
        let mut gas_used_ratio = Vec::new();
        for number in oldest..=newest {
            let header = self.header(number)?.ok_or_else(|| RpcError::Server("header not found".into()))?;
            gas_used_ratio.push(header.gas_used as f64 / header.gas_limit.max(1) as f64);
        }
        let rewards = percentiles.map(|p| vec![vec![0u128; p.len()]; count as usize]);
        Ok(FeeHistory {
            base_fee_per_gas: vec![0; count as usize + 1],
            gas_used_ratio,
            base_fee_per_blob_gas: vec![0; count as usize + 1],
            blob_gas_used_ratio: vec![0.0; count as usize],
            oldest_block: oldest,
            reward: rewards,
        })
    }

    fn header(&self, number: u64) -> RpcResult<Option<BlockHeader>> {
        self.store().header(number).map_err(RpcError::internal)
    }

    fn transaction_by_hash(&self, params: Params<'_>) -> RpcResult<Option<Transaction>> {
        let (hash,): (B256,) = parse(params)?;
        if let Some(location) = self.store().transaction_location(&hash).map_err(RpcError::internal)? {
            let Some(tx) = self.store().transaction_at(location).map_err(RpcError::internal)? else { return Ok(None) };
            let Some(header) = self.header(location.block_number)? else { return Ok(None) };
            return Ok(Some(rpc_transaction(tx, &header, header.hash(), location.index)));
        }
        Ok(self.api.pool.get(&hash).map(|tx| Transaction {
            inner: Recovered::new_unchecked(tx.envelope().clone(), tx.sender()),
            block_hash: None,
            block_number: None,
            transaction_index: None,
            effective_gas_price: None,
            block_timestamp: None,
        }))
    }

    fn transaction_receipt(&self, params: Params<'_>) -> RpcResult<Option<Value>> {
        let (hash,): (B256,) = parse(params)?;
        let store = self.store();
        let Some(location) = store.transaction_location(&hash).map_err(RpcError::internal)? else { return Ok(None) };
        let (Some(tx), Some(receipt), Some(header)) = (
            store.transaction_at(location).map_err(RpcError::internal)?,
            store.receipt_at(location).map_err(RpcError::internal)?,
            self.header(location.block_number)?,
        ) else {
            return Ok(None);
        };
        let mut first_log_index = 0u64;
        for index in 0..location.index {
            let earlier = TxLocation { block_number: location.block_number, index };
            if let Some(r) = store.receipt_at(earlier).map_err(RpcError::internal)? {
                first_log_index += r.logs.len() as u64;
            }
        }
        let rpc = rpc_receipt(&tx, &receipt, &header, header.hash(), location.index, first_log_index);
        let mut value = serde_json::to_value(rpc).map_err(RpcError::internal)?;
        if let (Some(object), Some(reason)) = (value.as_object_mut(), decode_revert(&receipt.revert_output)) {
            object.insert("revertReason".into(), Value::String(reason));
        }
        Ok(Some(value))
    }

    fn block(&self, number: u64, full: bool) -> RpcResult<Option<Block>> {
        let Some(header) = self.header(number)? else { return Ok(None) };
        let hash = header.hash();
        let txs = self.store().transactions(number).map_err(RpcError::internal)?.unwrap_or_default();
        let transactions = if full {
            BlockTransactions::Full(
                txs.into_iter().enumerate().map(|(i, tx)| rpc_transaction(tx, &header, hash, i as u32)).collect(),
            )
        } else {
            BlockTransactions::Hashes(txs.iter().map(StoredTx::hash).collect())
        };
        Ok(Some(Block { header: rpc_header(&header, hash), uncles: vec![], transactions, withdrawals: None }))
    }

    fn block_by_number(&self, params: Params<'_>) -> RpcResult<Option<Block>> {
        let (tag, full): (BlockNumberOrTag, Option<bool>) = parse(params)?;
        match self.resolve_number(tag) {
            Some(number) => self.block(number, full.unwrap_or(false)),
            None => Ok(None),
        }
    }

    fn block_by_hash(&self, params: Params<'_>) -> RpcResult<Option<Block>> {
        let (hash, full): (B256, Option<bool>) = parse(params)?;
        match self.store().block_number(&hash).map_err(RpcError::internal)? {
            Some(number) => self.block(number, full.unwrap_or(false)),
            None => Ok(None),
        }
    }

    fn block_tx_count(&self, number: Option<u64>) -> RpcResult<Option<U64>> {
        let Some(number) = number else { return Ok(None) };
        let txs = self.store().transactions(number).map_err(RpcError::internal)?;
        Ok(txs.map(|t| U64::from(t.len())))
    }

    fn block_tx_count_by_number(&self, params: Params<'_>) -> RpcResult<Option<U64>> {
        let (tag,): (BlockNumberOrTag,) = parse(params)?;
        self.block_tx_count(self.resolve_number(tag))
    }

    fn block_tx_count_by_hash(&self, params: Params<'_>) -> RpcResult<Option<U64>> {
        let (hash,): (B256,) = parse(params)?;
        self.block_tx_count(self.store().block_number(&hash).map_err(RpcError::internal)?)
    }

    fn quorum_certificate(&self, params: Params<'_>) -> RpcResult<Option<Value>> {
        let (tag,): (BlockNumberOrTag,) = parse(params)?;
        let Some(number) = self.resolve_number(tag) else { return Ok(None) };
        let Some(qc) = self.store().quorum_certificate(number).map_err(RpcError::internal)? else { return Ok(None) };
        let votes: Vec<Value> =
            qc.votes.iter().map(|v| serde_json::json!({ "nodeId": v.node_id, "signature": v.signature })).collect();
        Ok(Some(serde_json::json!({
            "blockHash": qc.block_hash, "number": U64::from(qc.number), "round": U64::from(qc.round), "votes": votes,
        })))
    }

    /// Refuses a malformed contract name, and any name while contract routing is off.
    fn require_routing(&self, name: &str) -> RpcResult<()> {
        versions::check_name(name).map_err(RpcError::InvalidParams)?;
        let version = self.api.chain.system_config().compatibility_version;
        let feature = Feature::ContractRouting;
        if !feature.enabled(version) {
            return Err(RpcError::Server(format!(
                "contract routing needs compatibility_version {} or later; the chain runs {version}",
                feature.since()
            )));
        }
        Ok(())
    }

    fn resolve_contract(&self, params: Params<'_>) -> RpcResult<Option<Resolved>> {
        let (name, account): (String, Address) = parse(params)?;
        self.require_routing(&name)?;
        versions::resolve(&self.store().state_snapshot(), &name, account).map_err(RpcError::internal)
    }

    fn contract_versions(&self, params: Params<'_>) -> RpcResult<Option<Release>> {
        let (name,): (String,) = parse(params)?;
        self.require_routing(&name)?;
        versions::read_release(&self.store().state_snapshot(), &name).map_err(RpcError::internal)
    }

    fn logs(&self, params: Params<'_>) -> RpcResult<Vec<Log>> {
        let (filter,): (Filter,) = parse(params)?;
        let (from, to) = self.log_range(&filter)?;
        self.logs_between(&filter, from, to)
    }

    /// The blocks a log filter covers, resolved against the current head.
    fn log_range(&self, filter: &Filter) -> RpcResult<(u64, u64)> {
        let head = self.head_number();
        match filter.block_option {
            FilterBlockOption::AtBlockHash(hash) => {
                let number = self
                    .store()
                    .block_number(&hash)
                    .map_err(RpcError::internal)?
                    .ok_or_else(|| RpcError::Server("unknown block".into()))?;
                Ok((number, number))
            }
            FilterBlockOption::Range { from_block, to_block } => {
                let from = from_block.map_or(Some(head), |t| self.resolve_number(t)).unwrap_or(head + 1);
                let to = to_block.map_or(Some(head), |t| self.resolve_number(t)).unwrap_or(head);
                Ok((from, to))
            }
        }
    }

    fn logs_between(&self, filter: &Filter, from: u64, to: u64) -> RpcResult<Vec<Log>> {
        if from > to {
            return Ok(vec![]);
        }
        if to - from >= MAX_LOG_BLOCK_RANGE {
            return Err(RpcError::LimitExceeded(format!("query exceeds max block range {MAX_LOG_BLOCK_RANGE}")));
        }
        let mut logs = Vec::new();
        for number in from..=to {
            let Some(header) = self.header(number)? else { break };
            if !filter.matches_bloom(header.logs_bloom) {
                continue;
            }
            let block = self.block_logs(&header)?;
            logs.extend(block.into_iter().filter(|log| filter.matches(&log.inner)));
            if logs.len() > MAX_LOG_RESULTS {
                return Err(RpcError::LimitExceeded(format!("query returned more than {MAX_LOG_RESULTS} results")));
            }
        }
        Ok(logs)
    }

    fn new_filter(&self, kind: FilterKind) -> RpcResult<U256> {
        self.filters
            .install(kind, self.head_number())
            .ok_or_else(|| RpcError::LimitExceeded(format!("too many filters (at most {MAX_FILTERS})")))
    }

    fn filter_changes(&self, params: Params<'_>) -> RpcResult<FilterChanges> {
        let (id,): (U256,) = parse(params)?;
        let pending = self.filters.poll(id, self.head_number()).ok_or_else(filter_not_found)?;
        match pending.kind {
            FilterKind::Blocks => {
                let mut hashes = Vec::new();
                for number in pending.from..=pending.to {
                    let Some(header) = self.header(number)? else { break };
                    hashes.push(header.hash());
                }
                Ok(FilterChanges::Hashes(hashes))
            }
            FilterKind::Logs(filter) => {
                let (first, last) = self.log_range(&filter)?;
                let (from, to) = (pending.from.max(first), pending.to.min(last));
                Ok(FilterChanges::Logs(self.logs_between(&filter, from, to)?))
            }
        }
    }

    fn filter_logs(&self, params: Params<'_>) -> RpcResult<Vec<Log>> {
        let (id,): (U256,) = parse(params)?;
        match self.filters.kind(id).ok_or_else(filter_not_found)? {
            FilterKind::Logs(filter) => {
                let (from, to) = self.log_range(&filter)?;
                self.logs_between(&filter, from, to)
            }
            FilterKind::Blocks => Err(RpcError::InvalidParams("filter is not a log filter".into())),
        }
    }

    /// Every log of a block with its position.
    fn block_logs(&self, header: &BlockHeader) -> RpcResult<Vec<Log>> {
        let store = self.store();
        let receipts = store.receipts(header.number).map_err(RpcError::internal)?.unwrap_or_default();
        let txs = store.transactions(header.number).map_err(RpcError::internal)?.unwrap_or_default();
        Ok(logs_of_block(header, header.hash(), &txs, &receipts))
    }

    async fn subscribe(self: Arc<Self>, params: Params<'static>, pending: PendingSubscriptionSink) {
        let kind = match parse_subscription(params) {
            Ok(kind) => kind,
            Err(e) => {
                pending.reject(ErrorObjectOwned::from(e)).await;
                return;
            }
        };
        let mut blocks = self.api.chain.subscribe();
        let Ok(sink) = pending.accept().await else { return };
        loop {
            tokio::select! {
                _ = sink.closed() => return,
                received = blocks.recv() => {
                    let block: Arc<CommittedBlock> = match received {
                        Ok(block) => block,
                        Err(RecvError::Lagged(skipped)) => {
                            tracing::warn!(target: "rpc", skipped, "subscriber fell behind; skipping blocks");
                            continue;
                        }
                        Err(RecvError::Closed) => return,
                    };
                    let messages: Vec<Box<serde_json::value::RawValue>> = match &kind {
                        Subscription::NewHeads => to_raw(&rpc_header(&block.header, block.hash)).into_iter().collect(),
                        Subscription::Logs(filter) => logs_of_block(&block.header, block.hash, &block.transactions, &block.receipts)
                            .into_iter()
                            .filter(|log| filter.matches(&log.inner))
                            .filter_map(|log| to_raw(&log))
                            .collect(),
                    };
                    for message in messages {
                        if sink.send(SubscriptionMessage::from(message)).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }
    }
}

fn to_raw<T: Serialize>(value: &T) -> Option<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(value).ok()
}

fn parse_subscription(params: Params<'static>) -> RpcResult<Subscription> {
    let mut sequence = params.sequence();
    let kind: String = sequence.next().map_err(|e| RpcError::InvalidParams(e.to_string()))?;
    match kind.as_str() {
        "newHeads" => Ok(Subscription::NewHeads),
        "logs" => {
            let filter: Option<Filter> =
                sequence.optional_next().map_err(|e| RpcError::InvalidParams(e.to_string()))?;
            Ok(Subscription::Logs(Box::new(filter.unwrap_or_default())))
        }
        other => Err(RpcError::InvalidParams(format!("unsupported subscription {other:?}; expected newHeads or logs"))),
    }
}

fn parse<T: serde::de::DeserializeOwned>(params: Params<'_>) -> RpcResult<T> {
    params.parse().map_err(|e| RpcError::InvalidParams(e.message().to_owned()))
}

fn outcome_result(outcome: CallOutcome) -> RpcResult<Bytes> {
    if outcome.success {
        Ok(outcome.output)
    } else if outcome.halted {
        Err(RpcError::Server(format!("execution halted (out of gas or invalid opcode) after {} gas", outcome.gas_used)))
    } else {
        Err(RpcError::Reverted { reason: decode_revert(&outcome.output), data: outcome.output })
    }
}

/// The Ethereum form of a header. The hash is this chain's header hash; the proposer's node id
/// goes in `extraData`.
fn rpc_header(header: &BlockHeader, hash: B256) -> Header {
    let inner = alloy_consensus::Header {
        parent_hash: header.parent_hash,
        ommers_hash: EMPTY_OMMER_ROOT_HASH,
        beneficiary: Address::ZERO,
        state_root: header.state_root,
        transactions_root: header.transactions_root,
        receipts_root: header.receipts_root,
        logs_bloom: header.logs_bloom,
        difficulty: U256::ZERO,
        number: header.number,
        gas_limit: header.gas_limit,
        gas_used: header.gas_used,
        timestamp: header.timestamp_secs(),
        extra_data: Bytes::copy_from_slice(header.proposer.as_slice()),
        mix_hash: B256::ZERO,
        nonce: B64::ZERO,
        base_fee_per_gas: Some(0),
        ..Default::default()
    };
    Header { hash, inner, total_difficulty: Some(U256::ZERO), size: None }
}

fn rpc_transaction(tx: StoredTx, header: &BlockHeader, block_hash: B256, index: u32) -> Transaction {
    let effective_gas_price = tx.envelope.effective_gas_price(Some(0));
    Transaction {
        inner: Recovered::new_unchecked(tx.envelope, tx.sender),
        block_hash: Some(block_hash),
        block_number: Some(header.number),
        transaction_index: Some(u64::from(index)),
        effective_gas_price: Some(effective_gas_price),
        block_timestamp: Some(header.timestamp_secs()),
    }
}

fn rpc_log(
    log: &bcos_sdk::types::StoredLog,
    header: &BlockHeader,
    block_hash: B256,
    tx_hash: B256,
    tx_index: u32,
    log_index: u64,
) -> Log {
    Log {
        inner: log.to_log(),
        block_hash: Some(block_hash),
        block_number: Some(header.number),
        block_timestamp: Some(header.timestamp_secs()),
        transaction_hash: Some(tx_hash),
        transaction_index: Some(u64::from(tx_index)),
        log_index: Some(log_index),
        removed: false,
    }
}

fn logs_of_block(header: &BlockHeader, block_hash: B256, txs: &[StoredTx], receipts: &[StoredReceipt]) -> Vec<Log> {
    let mut log_index = 0u64;
    let mut logs = Vec::new();
    for (tx_index, (tx, receipt)) in txs.iter().zip(receipts).enumerate() {
        for log in &receipt.logs {
            logs.push(rpc_log(log, header, block_hash, tx.hash(), tx_index as u32, log_index));
            log_index += 1;
        }
    }
    logs
}

fn rpc_receipt(
    tx: &StoredTx,
    receipt: &StoredReceipt,
    header: &BlockHeader,
    block_hash: B256,
    index: u32,
    first_log_index: u64,
) -> TransactionReceipt {
    let tx_hash = tx.hash();
    let logs: Vec<Log> = receipt
        .logs
        .iter()
        .enumerate()
        .map(|(i, log)| rpc_log(log, header, block_hash, tx_hash, index, first_log_index + i as u64))
        .collect();
    let mut bloom = Bloom::ZERO;
    for log in &receipt.logs {
        bloom.accrue_log(&log.to_log());
    }
    let with_bloom = ReceiptWithBloom {
        receipt: Receipt { status: receipt.success.into(), cumulative_gas_used: receipt.cumulative_gas_used, logs },
        logs_bloom: bloom,
    };
    let inner = match TxType::try_from(receipt.tx_type).unwrap_or(TxType::Legacy) {
        TxType::Legacy => ReceiptEnvelope::Legacy(with_bloom),
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(with_bloom),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(with_bloom),
        TxType::Eip4844 => ReceiptEnvelope::Eip4844(with_bloom),
        TxType::Eip7702 => ReceiptEnvelope::Eip7702(with_bloom),
    };
    TransactionReceipt {
        inner,
        transaction_hash: tx_hash,
        transaction_index: Some(u64::from(index)),
        block_hash: Some(block_hash),
        block_number: Some(header.number),
        gas_used: receipt.gas_used,
        effective_gas_price: tx.envelope.effective_gas_price(Some(0)),
        blob_gas_used: None,
        blob_gas_price: None,
        from: tx.sender,
        to: tx.envelope.to(),
        contract_address: receipt.created_contract(),
    }
}
