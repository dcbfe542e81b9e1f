//! gRPC service (tonic) over [`super::NodeApi`].
//!
//! [`GrpcService`] implements `bcos.v1.Node` (`sdk/proto/bcos.proto`). Each call decodes and checks
//! its request (hash, address and value lengths), answers from the chain, the pool or the state
//! store through [`NodeApi`], and maps every failure to a precise [`tonic::Code`]: malformed input
//! is `INVALID_ARGUMENT`, unknown blocks, transactions and receipts are `NOT_FOUND`, pool refusals
//! get the code of their cause (see [`pool_status`]), and node failures are `INTERNAL` (or
//! `DATA_LOSS` for a corrupt record). Nothing a client sends can panic the service.
//!
//! `SubscribeBlocks` streams the header of every block [`crate::chain::Chain::commit`] publishes.
//! A subscriber too slow for the chain's event buffer skips to the newest blocks instead of being
//! dropped; the stream ends when the client goes away or the server shuts down.
//!
//! `GetAccount` reads the latest committed state, like `Call`; an account never written answers
//! as nonce 0, balance 0 and the hash of empty code.
//!
//! Every call is counted in [`crate::metrics::RpcMetrics`] with `api="grpc"` and the gRPC method
//! name: calls, error answers and latency.

use std::{future::Future, pin::Pin, sync::Arc};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, KECCAK256_EMPTY, U256};

use bcos_sdk::{
    proto::{self, get_block_request::Id, node_server::NodeServer},
    types::{BlockHeader, QuorumCertificate, StoredReceipt},
};
use futures::Stream;
use tokio::sync::{broadcast, watch};
use tokio_stream::{StreamExt as _, wrappers::TcpListenerStream};
use tonic::{Request, Response, Status};

use super::NodeApi;
use crate::{
    chain::{ChainError, CommittedBlock},
    executor::{CallError, CallOutcome, CallRequest, decode_revert},
    storage::{AccountState, BlockReader, StateReader, StorageError, StoredTx, TxLocation},
    txpool::{PoolError, PoolErrorKind},
};

/// The `api` label of gRPC metrics.
const API_LABEL: &str = "grpc";

/// Tracing target of this module.
const TARGET: &str = "grpc";

/// Length of a hash field.
const HASH_LEN: usize = 32;

/// Length of an address field.
const ADDRESS_LEN: usize = 20;

/// Longest big-endian call value.
const MAX_VALUE_LEN: usize = 32;

/// The stream of headers `SubscribeBlocks` answers with.
pub type HeaderStream = Pin<Box<dyn Stream<Item = Result<proto::BlockHeader, Status>> + Send + 'static>>;

/// The `bcos.v1.Node` gRPC service.
pub struct GrpcService {
    api: Arc<NodeApi>,
    /// Turns true when the server shuts down, ending every block subscription.
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for GrpcService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcService").field("node_id", &self.api.node_id).finish_non_exhaustive()
    }
}

impl GrpcService {
    /// A service answering from `api`.
    pub fn new(api: Arc<NodeApi>) -> Self {
        let (shutdown, _) = watch::channel(false);
        Self { api, shutdown }
    }

    /// The tonic server for this service, ready for `Server::add_service`.
    ///
    /// Block subscriptions of a server built this way end only when their client goes away or the
    /// chain stops; [`serve`] also ends them on shutdown, so graceful shutdown is not held up.
    pub fn into_server(self) -> NodeServer<Self> {
        NodeServer::new(self)
    }

    /// Runs one call: counts it, times it, and counts an error answer.
    async fn observe<T, F>(&self, method: &'static str, work: F) -> Result<Response<T>, Status>
    where
        F: Future<Output = Result<T, Status>>,
    {
        let labels = [API_LABEL, method];
        let metrics = &self.api.metrics;
        metrics.calls.with_label_values(&labels).inc();
        let timer = metrics.latency.with_label_values(&labels).start_timer();
        let result = work.await;
        timer.observe_duration();
        if let Err(status) = &result {
            metrics.errors.with_label_values(&labels).inc();
            tracing::debug!(target: TARGET, method, code = ?status.code(), message = status.message(), "call failed");
        }
        result.map(Response::new)
    }

    fn send_transaction(
        &self,
        request: proto::SendTransactionRequest,
    ) -> Result<proto::SendTransactionResponse, Status> {
        let hash = self.api.pool.submit(&request.raw).map_err(pool_status)?;
        Ok(proto::SendTransactionResponse { hash: hash.to_vec() })
    }

    async fn call(&self, request: proto::CallRequest) -> Result<proto::CallResponse, Status> {
        let request = parse_call(request)?;
        let api = self.api.clone();
        let outcome = tokio::task::spawn_blocking(move || api.call(&request))
            .await
            .map_err(|e| Status::internal(format!("call task failed: {e}")))?
            .map_err(call_status)?;
        Ok(call_response(outcome))
    }

    fn get_block(&self, request: proto::GetBlockRequest) -> Result<proto::Block, Status> {
        let store = self.api.chain.store();
        let number = match request.id {
            None => return Err(Status::invalid_argument("block id is required: number, hash or latest")),
            Some(Id::Number(number)) => number,
            Some(Id::Hash(hash)) => {
                let hash = parse_hash(&hash, "hash")?;
                store
                    .block_number(&hash)
                    .map_err(storage_status)?
                    .ok_or_else(|| Status::not_found(format!("block {hash} not found")))?
            }
            Some(Id::Latest(true)) => store.head_number(),
            Some(Id::Latest(false)) => return Err(Status::invalid_argument("latest must be true when set")),
        };
        // Blocks above the head are not committed yet (or are being written right now).
        if number > store.head_number() {
            return Err(Status::not_found(format!("block {number} not found")));
        }
        let header = store.header(number).map_err(storage_status)?.ok_or_else(|| block_not_found(number))?;
        let transactions =
            store.transactions(number).map_err(storage_status)?.ok_or_else(|| block_not_found(number))?;
        let qc = store.quorum_certificate(number).map_err(storage_status)?;
        Ok(proto::Block {
            header: Some(header_to_proto(&header, header.hash(), transactions.len())),
            transactions: transactions.iter().map(|tx| tx.envelope.encoded_2718()).collect(),
            qc: qc.as_ref().map(qc_to_proto),
        })
    }

    /// Where a committed transaction is, and the hash of its block.
    fn locate(&self, hash: &B256) -> Result<(TxLocation, B256), Status> {
        let store = self.api.chain.store();
        let location = store
            .transaction_location(hash)
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found(format!("transaction {hash} not found")))?;
        let header = store.header(location.block_number).map_err(storage_status)?.ok_or_else(|| {
            Status::data_loss(format!("transaction {hash} is indexed in missing block {}", location.block_number))
        })?;
        Ok((location, header.hash()))
    }

    fn get_transaction(&self, request: proto::HashRequest) -> Result<proto::Transaction, Status> {
        let hash = parse_hash(&request.hash, "hash")?;
        let (location, block_hash) = self.locate(&hash)?;
        let tx = self
            .api
            .chain
            .store()
            .transaction_at(location)
            .map_err(storage_status)?
            .ok_or_else(|| Status::data_loss(format!("transaction {hash} is indexed but its body is missing")))?;
        Ok(transaction_to_proto(&tx, location, block_hash))
    }

    fn get_receipt(&self, request: proto::HashRequest) -> Result<proto::Receipt, Status> {
        let hash = parse_hash(&request.hash, "hash")?;
        let (location, block_hash) = self.locate(&hash)?;
        let receipt =
            self.api.chain.store().receipt_at(location).map_err(storage_status)?.ok_or_else(|| {
                Status::data_loss(format!("transaction {hash} is indexed but its receipt is missing"))
            })?;
        Ok(receipt_to_proto(hash, location, block_hash, &receipt))
    }

    fn subscribe_blocks(&self) -> HeaderStream {
        let subscription = Subscription { blocks: self.api.chain.subscribe(), shutdown: self.shutdown.subscribe() };
        Box::pin(futures::stream::unfold(subscription, Subscription::next))
    }

    fn get_status(&self) -> Result<proto::NodeStatus, Status> {
        let status = self.api.status().map_err(chain_status)?;
        Ok(proto::NodeStatus {
            version: status.version,
            protocol_version: status.protocol_version,
            chain_id: status.chain_id,
            genesis_hash: status.genesis_hash.to_vec(),
            height: status.height,
            head_hash: status.head_hash.to_vec(),
            consensus_mode: status.consensus_mode,
            compatibility_version: status.compatibility_version,
            node_id: status.node_id.to_vec(),
            peers: status.peers,
            syncing: status.syncing,
            txpool_size: status.txpool_size,
            leading: status.leading,
            max_compatibility_version: status.max_compatibility_version,
            halted: status.halted.unwrap_or_default(),
            peer_versions: status
                .peer_versions
                .into_iter()
                .map(|peer| proto::PeerVersion {
                    node_id: peer.node_id.to_vec(),
                    version: peer.version.unwrap_or_default(),
                    protocol_version: peer.protocol_version.unwrap_or_default(),
                })
                .collect(),
        })
    }

    fn get_account(&self, request: proto::AccountRequest) -> Result<proto::Account, Status> {
        let address = parse_address(&request.address, "address")?;
        let account = self.api.chain.store().account(&address).map_err(storage_status)?.unwrap_or(AccountState {
            nonce: 0,
            balance: U256::ZERO,
            code_hash: KECCAK256_EMPTY,
        });
        Ok(proto::Account {
            nonce: account.nonce,
            balance: account.balance.to_be_bytes::<32>().to_vec(),
            code_hash: account.code_hash.to_vec(),
        })
    }
}

#[tonic::async_trait]
impl proto::node_server::Node for GrpcService {
    async fn send_transaction(
        &self,
        request: Request<proto::SendTransactionRequest>,
    ) -> Result<Response<proto::SendTransactionResponse>, Status> {
        self.observe("SendTransaction", async { self.send_transaction(request.into_inner()) }).await
    }

    async fn call(&self, request: Request<proto::CallRequest>) -> Result<Response<proto::CallResponse>, Status> {
        self.observe("Call", self.call(request.into_inner())).await
    }

    async fn get_block(&self, request: Request<proto::GetBlockRequest>) -> Result<Response<proto::Block>, Status> {
        self.observe("GetBlock", async { self.get_block(request.into_inner()) }).await
    }

    async fn get_transaction(
        &self,
        request: Request<proto::HashRequest>,
    ) -> Result<Response<proto::Transaction>, Status> {
        self.observe("GetTransaction", async { self.get_transaction(request.into_inner()) }).await
    }

    async fn get_receipt(&self, request: Request<proto::HashRequest>) -> Result<Response<proto::Receipt>, Status> {
        self.observe("GetReceipt", async { self.get_receipt(request.into_inner()) }).await
    }

    type SubscribeBlocksStream = HeaderStream;

    async fn subscribe_blocks(
        &self,
        _request: Request<proto::SubscribeBlocksRequest>,
    ) -> Result<Response<Self::SubscribeBlocksStream>, Status> {
        self.observe("SubscribeBlocks", async { Ok(self.subscribe_blocks()) }).await
    }

    async fn get_status(&self, _request: Request<proto::StatusRequest>) -> Result<Response<proto::NodeStatus>, Status> {
        self.observe("GetStatus", async { self.get_status() }).await
    }

    async fn get_account(&self, request: Request<proto::AccountRequest>) -> Result<Response<proto::Account>, Status> {
        self.observe("GetAccount", async { self.get_account(request.into_inner()) }).await
    }
}

/// Serves the gRPC API on `listener` until `shutdown` completes. Block subscriptions end when
/// shutdown begins, so in-flight unary calls finish and the server returns promptly.
pub async fn serve(
    listener: tokio::net::TcpListener,
    api: Arc<NodeApi>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = GrpcService::new(api);
    let streams = service.shutdown.clone();
    let signal = async move {
        shutdown.await;
        streams.send_replace(true);
    };
    // `Server::tcp_nodelay` does not apply to an external listener: set it per connection, so
    // small responses are not held back by Nagle's algorithm.
    let incoming = TcpListenerStream::new(listener).map(|connection| {
        if let Ok(stream) = &connection
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(target: TARGET, error = %e, "cannot set TCP_NODELAY");
        }
        connection
    });
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(incoming, signal)
        .await
}

/// One client's block subscription.
struct Subscription {
    blocks: broadcast::Receiver<Arc<CommittedBlock>>,
    shutdown: watch::Receiver<bool>,
}

impl Subscription {
    /// The next committed header; `None` ends the stream (server shutdown or chain gone).
    async fn next(mut self) -> Option<(Result<proto::BlockHeader, Status>, Self)> {
        loop {
            let received = tokio::select! {
                biased;
                // Also completes when the service is dropped, which ends the stream too.
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                received = self.blocks.recv() => received,
            };
            match received {
                Ok(block) => {
                    let header = header_to_proto(&block.header, block.hash, block.transactions.len());
                    return Some((Ok(header), self));
                }
                Err(broadcast::error::RecvError::Lagged(skipped)) => {
                    tracing::warn!(target: TARGET, skipped, "block subscriber lagging; skipping to the newest block");
                    self.blocks = self.blocks.resubscribe();
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

/// A 32-byte hash field.
fn parse_hash(bytes: &[u8], field: &str) -> Result<B256, Status> {
    B256::try_from(bytes)
        .map_err(|_| Status::invalid_argument(format!("{field} must be {HASH_LEN} bytes, got {}", bytes.len())))
}

/// A 20-byte address field.
fn parse_address(bytes: &[u8], field: &str) -> Result<Address, Status> {
    Address::try_from(bytes)
        .map_err(|_| Status::invalid_argument(format!("{field} must be {ADDRESS_LEN} bytes, got {}", bytes.len())))
}

/// An address field that may be empty.
fn parse_optional_address(bytes: &[u8], field: &str) -> Result<Option<Address>, Status> {
    if bytes.is_empty() { Ok(None) } else { parse_address(bytes, field).map(Some) }
}

/// Checks and converts a call request. An empty `from` is the zero address; an empty `to`
/// simulates a contract creation; `gas` 0 means the block gas limit.
fn parse_call(request: proto::CallRequest) -> Result<CallRequest, Status> {
    if request.value.len() > MAX_VALUE_LEN {
        return Err(Status::invalid_argument(format!(
            "value must be at most {MAX_VALUE_LEN} bytes, got {}",
            request.value.len()
        )));
    }
    Ok(CallRequest {
        from: parse_optional_address(&request.from, "from")?,
        to: parse_optional_address(&request.to, "to")?,
        data: request.data.into(),
        value: U256::from_be_slice(&request.value),
        gas: (request.gas != 0).then_some(request.gas),
    })
}

fn call_response(outcome: CallOutcome) -> proto::CallResponse {
    let revert_reason = if outcome.success { String::new() } else { revert_reason(&outcome) };
    proto::CallResponse {
        success: outcome.success,
        output: outcome.output.to_vec(),
        gas_used: outcome.gas_used,
        revert_reason,
    }
}

/// Why a call failed: the string of an ABI `Error(string)` revert, a Solidity panic, or a halt;
/// empty for a revert without a decodable reason.
fn revert_reason(outcome: &CallOutcome) -> String {
    if outcome.halted {
        return "execution halted (out of gas or invalid operation)".to_owned();
    }
    decode_revert(&outcome.output).unwrap_or_default()
}

fn header_to_proto(header: &BlockHeader, hash: B256, transaction_count: usize) -> proto::BlockHeader {
    proto::BlockHeader {
        hash: hash.to_vec(),
        parent_hash: header.parent_hash.to_vec(),
        number: header.number,
        timestamp_ms: header.timestamp_ms,
        proposer: header.proposer.to_vec(),
        transactions_root: header.transactions_root.to_vec(),
        receipts_root: header.receipts_root.to_vec(),
        state_root: header.state_root.to_vec(),
        gas_used: header.gas_used,
        gas_limit: header.gas_limit,
        transaction_count: u32::try_from(transaction_count).unwrap_or(u32::MAX),
    }
}

fn qc_to_proto(qc: &QuorumCertificate) -> proto::QuorumCertificate {
    proto::QuorumCertificate {
        round: qc.round,
        votes: qc
            .votes
            .iter()
            .map(|vote| proto::Vote { node_id: vote.node_id.to_vec(), signature: vote.signature.to_vec() })
            .collect(),
    }
}

fn transaction_to_proto(tx: &StoredTx, location: TxLocation, block_hash: B256) -> proto::Transaction {
    proto::Transaction {
        hash: tx.hash().to_vec(),
        raw: tx.envelope.encoded_2718(),
        from: tx.sender.to_vec(),
        block_number: location.block_number,
        block_hash: block_hash.to_vec(),
        index: location.index,
    }
}

fn receipt_to_proto(hash: B256, location: TxLocation, block_hash: B256, receipt: &StoredReceipt) -> proto::Receipt {
    proto::Receipt {
        transaction_hash: hash.to_vec(),
        block_number: location.block_number,
        block_hash: block_hash.to_vec(),
        index: location.index,
        success: receipt.success,
        gas_used: receipt.gas_used,
        cumulative_gas_used: receipt.cumulative_gas_used,
        contract_address: receipt.created_contract().map(|a| a.to_vec()).unwrap_or_default(),
        revert_output: receipt.revert_output.to_vec(),
        logs: receipt
            .logs
            .iter()
            .map(|log| proto::Log {
                address: log.address.to_vec(),
                topics: log.topics.iter().map(|t| t.to_vec()).collect(),
                data: log.data.to_vec(),
            })
            .collect(),
    }
}

fn block_not_found(number: u64) -> Status {
    Status::not_found(format!("block {number} not found"))
}

/// The status of a pool refusal, carrying the pool's message.
///
/// - malformed, oversized or unpayable-by-construction transactions: `INVALID_ARGUMENT`;
/// - the same transaction is pending already: `ALREADY_EXISTS`;
/// - the nonce does not fit the sender's state, or a replacement pays too little:
///   `FAILED_PRECONDITION`;
/// - the pool or the sender's share of it is full: `RESOURCE_EXHAUSTED`;
/// - the sender lacks the role the transaction needs: `PERMISSION_DENIED`;
/// - the node could not journal the transaction: `INTERNAL`.
fn pool_status(error: PoolError) -> Status {
    let message = error.to_string();
    match error.kind {
        PoolErrorKind::Invalid(_)
        | PoolErrorKind::Oversized { .. }
        | PoolErrorKind::ExceedsBlockGasLimit { .. }
        | PoolErrorKind::IntrinsicGasTooLow { .. } => Status::invalid_argument(message),
        PoolErrorKind::AlreadyKnown => Status::already_exists(message),
        PoolErrorKind::NonceTooLow { .. }
        | PoolErrorKind::NonceTooHigh { .. }
        | PoolErrorKind::ReplacementUnderpriced => Status::failed_precondition(message),
        PoolErrorKind::PoolFull | PoolErrorKind::SenderLimit(_) => Status::resource_exhausted(message),
        PoolErrorKind::PermissionDenied(_) => Status::permission_denied(message),
        PoolErrorKind::Storage(_) => Status::internal(message),
    }
}

/// A storage failure: `DATA_LOSS` for a corrupt record, `INTERNAL` otherwise.
fn storage_status(error: StorageError) -> Status {
    match error {
        StorageError::Corrupt { .. } => Status::data_loss(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

fn chain_status(error: ChainError) -> Status {
    match error {
        ChainError::Storage(e) => storage_status(e),
        ChainError::MissingHead(_) => Status::data_loss(error.to_string()),
        other => Status::internal(other.to_string()),
    }
}

/// An invalid call (for example gas below the intrinsic cost) is the client's; anything else is
/// the node's.
fn call_status(error: CallError) -> Status {
    match error {
        CallError::Invalid(message) => Status::invalid_argument(message),
        CallError::Execution(e) => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use alloy_consensus::TxEip1559;
    use alloy_primitives::{Bytes, TxKind, keccak256};
    use alloy_sol_types::{Panic, Revert, SolError};
    use bcos_sdk::{
        client::{ClientError, NodeClient},
        crypto::{AccountKey, NodeKey},
        proto::node_client::NodeClient as RawClient,
        types::TxError,
    };
    use prometheus::Registry;
    use tempfile::TempDir;
    use tokio::{sync::oneshot, task::JoinHandle};
    use tonic::Code;

    use super::*;
    use crate::{executor::PermissionDenied, test_utils::solo_api};

    const CHAIN_ID: u64 = 4_242;

    /// A node on a fresh chain, serving gRPC on a loopback port.
    struct TestNode {
        _dir: TempDir,
        key: NodeKey,
        api: Arc<NodeApi>,
        endpoint: String,
        stop: Option<oneshot::Sender<()>>,
        server: JoinHandle<Result<(), tonic::transport::Error>>,
    }

    impl TestNode {
        async fn start() -> Self {
            let key = NodeKey::generate();
            let (dir, api) = solo_api(CHAIN_ID, &key, &Registry::new());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let endpoint = format!("http://{}", listener.local_addr().expect("local addr"));
            let (stop, stopped) = oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, api.clone(), async move {
                let _ = stopped.await;
            }));
            Self { _dir: dir, key, api, endpoint, stop: Some(stop), server }
        }

        async fn client(&self) -> NodeClient {
            NodeClient::connect(self.endpoint.clone()).await.expect("connect")
        }

        async fn raw_client(&self) -> RawClient<tonic::transport::Channel> {
            RawClient::connect(self.endpoint.clone()).await.expect("connect")
        }

        /// Seals and commits one block from the ready transactions, as the solo sealer does.
        fn commit_block(&self) -> Arc<CommittedBlock> {
            crate::consensus::solo::seal_one(&self.api.chain, &self.api.pool, &self.key, 100).expect("seal a block")
        }

        fn count(&self, method: &str) -> (u64, u64) {
            let labels = [API_LABEL, method];
            let metrics = &self.api.metrics;
            (metrics.calls.with_label_values(&labels).get(), metrics.errors.with_label_values(&labels).get())
        }

        /// Shuts the server down and waits for it to return.
        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            tokio::time::timeout(Duration::from_secs(10), &mut self.server)
                .await
                .expect("server stops in time")
                .expect("server task")
                .expect("server ran");
        }
    }

    fn transfer(key: &AccountKey, nonce: u64) -> Bytes {
        key.sign_transaction(TxEip1559 {
            chain_id: CHAIN_ID,
            nonce,
            gas_limit: 21_000,
            to: TxKind::Call(Address::repeat_byte(0x11)),
            ..Default::default()
        })
    }

    fn code_of(result: Result<impl std::fmt::Debug, ClientError>) -> Code {
        match result {
            Err(ClientError::Status(status)) => status.code(),
            other => panic!("expected an error status, got {other:?}"),
        }
    }

    fn raw_code<T: std::fmt::Debug>(result: Result<T, Status>) -> Code {
        match result {
            Err(status) => status.code(),
            Ok(value) => panic!("expected an error status, got {value:?}"),
        }
    }

    /// Init code that reverts with `payload` (at most 255 bytes).
    fn reverting_init_code(payload: &[u8]) -> Vec<u8> {
        let len = u8::try_from(payload.len()).expect("short payload");
        // PUSH1 len, PUSH1 12, PUSH1 0, CODECOPY, PUSH1 len, PUSH1 0, REVERT, then the payload.
        let mut code = vec![0x60, len, 0x60, 12, 0x60, 0, 0x39, 0x60, len, 0x60, 0, 0xfd];
        code.extend_from_slice(payload);
        code
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_the_node_api_end_to_end() {
        let node = TestNode::start().await;
        let mut client = node.client().await;
        let mut raw = node.raw_client().await;

        let status = client.status().await.expect("status");
        assert_eq!(status.height, 0);
        assert_eq!(status.chain_id, CHAIN_ID);
        assert_eq!(status.genesis_hash, node.api.chain.genesis_hash().to_vec());
        assert_eq!(status.head_hash, status.genesis_hash);
        assert_eq!(status.node_id, node.key.node_id().to_vec());
        assert_eq!(status.protocol_version, crate::version::PROTOCOL_VERSION);
        assert_eq!(status.max_compatibility_version, crate::version::MAX_COMPATIBILITY_VERSION);
        assert_eq!((status.halted.as_str(), status.peers, status.peer_versions.len()), ("", 0, 0));
        assert_eq!(status.consensus_mode, "pbft");

        let genesis = client.block_by_number(0).await.expect("genesis block");
        assert!(genesis.qc.is_none() && genesis.transactions.is_empty());
        assert_eq!(genesis.header.as_ref().map(|h| h.hash.clone()), Some(status.genesis_hash.clone()));

        let mut headers = client.subscribe_blocks().await.expect("subscribe");

        let account = AccountKey::generate();
        let tx = transfer(&account, 0);
        let hash = client.send_raw_transaction(tx.clone()).await.expect("admitted");
        assert_eq!(hash, keccak256(&tx));
        assert_eq!(code_of(client.send_raw_transaction(tx.clone()).await), Code::AlreadyExists);
        assert_eq!(
            code_of(client.send_raw_transaction(Bytes::from_static(&[0x02, 0xff, 0x00])).await),
            Code::InvalidArgument
        );
        assert_eq!(code_of(client.send_raw_transaction(Bytes::new()).await), Code::InvalidArgument);
        assert_eq!(code_of(client.send_raw_transaction(transfer(&account, 5_000)).await), Code::FailedPrecondition);
        assert_eq!(client.status().await.expect("status").txpool_size, 1);

        assert_eq!(code_of(client.block_by_number(1).await), Code::NotFound);
        assert_eq!(code_of(client.block_by_number(u64::MAX).await), Code::NotFound);
        assert_eq!(code_of(client.receipt(hash).await), Code::NotFound);
        let short = proto::HashRequest { hash: vec![0; 31] };
        assert_eq!(raw_code(raw.get_receipt(short.clone()).await), Code::InvalidArgument);
        assert_eq!(raw_code(raw.get_transaction(short).await), Code::InvalidArgument);
        assert_eq!(raw_code(raw.get_block(proto::GetBlockRequest { id: None }).await), Code::InvalidArgument);
        let unknown = proto::GetBlockRequest { id: Some(Id::Hash(vec![7; 32])) };
        assert_eq!(raw_code(raw.get_block(unknown).await), Code::NotFound);

        let committed = node.commit_block();
        assert_eq!(committed.header.number, 1);
        assert_eq!(committed.transactions.len(), 1);

        let streamed = tokio::time::timeout(Duration::from_secs(10), headers.message())
            .await
            .expect("header in time")
            .expect("stream ok")
            .expect("stream open");
        assert_eq!(streamed.number, 1);
        assert_eq!(streamed.hash, committed.hash.to_vec());
        assert_eq!(streamed.transaction_count, 1);
        assert_eq!(streamed.parent_hash, status.genesis_hash);

        let receipt = client.receipt(hash).await.expect("receipt");
        assert!(receipt.success);
        assert_eq!(receipt.transaction_hash, hash.to_vec());
        assert_eq!((receipt.block_number, receipt.index), (1, 0));
        assert_eq!(receipt.block_hash, committed.hash.to_vec());
        assert_eq!(receipt.gas_used, 21_000);
        assert_eq!(receipt.cumulative_gas_used, 21_000);
        assert!(receipt.contract_address.is_empty());

        let request = proto::HashRequest { hash: hash.to_vec() };
        let transaction = raw.get_transaction(request).await.expect("transaction").into_inner();
        assert_eq!(transaction.raw, tx.to_vec());
        assert_eq!(transaction.from, account.address().to_vec());
        assert_eq!((transaction.block_number, transaction.index), (1, 0));
        assert_eq!(transaction.block_hash, committed.hash.to_vec());

        let block = client.block_by_number(1).await.expect("block 1");
        assert_eq!(block.transactions, vec![tx.to_vec()]);
        let header = block.header.expect("header");
        assert_eq!((header.number, header.transaction_count, header.gas_used), (1, 1, 21_000));
        assert_eq!(header.hash, committed.hash.to_vec());
        let qc = block.qc.expect("qc");
        assert_eq!(qc.round, 0);
        assert_eq!(qc.votes.len(), 1);
        assert_eq!(qc.votes[0].node_id, node.key.node_id().to_vec());

        let by_hash = proto::GetBlockRequest { id: Some(Id::Hash(committed.hash.to_vec())) };
        let by_hash = raw.get_block(by_hash).await.expect("block by hash").into_inner();
        assert_eq!(by_hash.header.map(|h| h.number), Some(1));
        let latest = proto::GetBlockRequest { id: Some(Id::Latest(true)) };
        let latest = raw.get_block(latest).await.expect("latest block").into_inner();
        assert_eq!(latest.header.map(|h| h.number), Some(1));
        let status = client.status().await.expect("status");
        assert_eq!((status.height, status.txpool_size), (1, 0));
        assert_eq!(code_of(client.send_raw_transaction(tx).await), Code::FailedPrecondition);

        // Calls: a plain account answers with empty output; a reverting creation gives its reason.
        let call = proto::CallRequest { to: vec![0x11; 20], ..Default::default() };
        let answer = client.call(call).await.expect("call");
        assert!(answer.success && answer.output.is_empty() && answer.revert_reason.is_empty());
        let payload = Revert::from("not today").abi_encode();
        let create = proto::CallRequest { data: reverting_init_code(&payload), ..Default::default() };
        let answer = client.call(create).await.expect("reverting call");
        assert!(!answer.success);
        assert_eq!(answer.output, payload);
        assert_eq!(answer.revert_reason, "not today");
        let bad_to = proto::CallRequest { to: vec![0x11; 19], ..Default::default() };
        assert_eq!(code_of(client.call(bad_to).await), Code::InvalidArgument);
        let bad_from = proto::CallRequest { from: vec![0x11; 21], to: vec![0x11; 20], ..Default::default() };
        assert_eq!(code_of(client.call(bad_from).await), Code::InvalidArgument);
        let big_value = proto::CallRequest { to: vec![0x11; 20], value: vec![1; 33], ..Default::default() };
        assert_eq!(code_of(client.call(big_value).await), Code::InvalidArgument);

        assert_eq!(node.count("GetStatus"), (3, 0));
        assert_eq!(node.count("SendTransaction"), (6, 5));
        assert_eq!(node.count("SubscribeBlocks"), (1, 0));
        assert_eq!(node.count("Call").1, 3);

        // Shutdown ends the open subscription instead of waiting for it.
        node.stop().await;
        let end = tokio::time::timeout(Duration::from_secs(10), headers.message()).await.expect("stream ends in time");
        assert!(matches!(end, Ok(None) | Err(_)), "stream still open: {end:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_accounts_from_the_latest_state() {
        let node = TestNode::start().await;
        let mut client = node.client().await;
        let mut raw = node.raw_client().await;
        let sender = AccountKey::generate();

        let unknown = client.account(sender.address()).await.expect("unknown account");
        assert_eq!(unknown.nonce, 0);
        assert_eq!(unknown.balance, vec![0; 32]);
        assert_eq!(unknown.code_hash, KECCAK256_EMPTY.to_vec());
        // A system contract is an account with code, written in genesis.
        let governance = client.account(bcos_sdk::types::system::GOVERNANCE_ADDRESS).await.expect("governance");
        assert_eq!(governance.nonce, 1);
        assert_ne!(governance.code_hash, KECCAK256_EMPTY.to_vec());

        // Pending transactions do not count: the nonce moves when the block commits.
        client.send_raw_transaction(transfer(&sender, 0)).await.expect("admitted");
        assert_eq!(client.account(sender.address()).await.expect("account").nonce, 0);
        node.commit_block();
        assert_eq!(client.account(sender.address()).await.expect("account").nonce, 1);

        for address in [vec![], vec![0x11; 19], vec![0x11; 21]] {
            assert_eq!(raw_code(raw.get_account(proto::AccountRequest { address }).await), Code::InvalidArgument);
        }
        assert_eq!(node.count("GetAccount"), (7, 3));
        node.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lagging_subscriber_skips_ahead() {
        let node = TestNode::start().await;
        let service = GrpcService::new(node.api.clone());
        let mut stream = service.subscribe_blocks();
        // Overflow the chain's event buffer before the subscriber reads anything.
        let mut last = None;
        for _ in 0..300 {
            last = Some(node.commit_block());
        }
        let last = last.expect("committed");
        let next = tokio::time::timeout(Duration::from_millis(200), futures::StreamExt::next(&mut stream)).await;
        assert!(next.is_err(), "a lagging subscriber resumes with the next new block, got {next:?}");
        let newest = node.commit_block();
        assert_eq!(newest.header.number, last.header.number + 1);
        let header = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut stream))
            .await
            .expect("header in time")
            .expect("stream open")
            .expect("header");
        assert_eq!(header.number, newest.header.number);
        service.shutdown.send_replace(true);
        assert!(futures::StreamExt::next(&mut stream).await.is_none());
        node.stop().await;
    }

    #[test]
    fn pool_errors_map_to_precise_codes() {
        let cases = [
            (PoolErrorKind::Invalid(TxError::Malformed("bad".into())), Code::InvalidArgument),
            (PoolErrorKind::Invalid(TxError::WrongChainId { expected: 1, got: 2 }), Code::InvalidArgument),
            (PoolErrorKind::Oversized { size: 10, limit: 5 }, Code::InvalidArgument),
            (PoolErrorKind::ExceedsBlockGasLimit { gas: 10, limit: 5 }, Code::InvalidArgument),
            (PoolErrorKind::IntrinsicGasTooLow { gas: 1, intrinsic: 21_000 }, Code::InvalidArgument),
            (PoolErrorKind::AlreadyKnown, Code::AlreadyExists),
            (PoolErrorKind::NonceTooLow { expected: 2, got: 1 }, Code::FailedPrecondition),
            (PoolErrorKind::NonceTooHigh { expected: 2, got: 9_999, max_gap: 1_000 }, Code::FailedPrecondition),
            (PoolErrorKind::ReplacementUnderpriced, Code::FailedPrecondition),
            (PoolErrorKind::PoolFull, Code::ResourceExhausted),
            (PoolErrorKind::SenderLimit(16), Code::ResourceExhausted),
            (PermissionDenied::NoDeploy(Address::ZERO).into(), Code::PermissionDenied),
            (PermissionDenied::NoTransact(Address::ZERO).into(), Code::PermissionDenied),
            (PoolErrorKind::Storage("disk".into()), Code::Internal),
        ];
        for (kind, code) in cases {
            let message = kind.to_string();
            let status = pool_status(PoolError { hash: None, kind });
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn call_requests_are_checked() {
        let ok =
            proto::CallRequest { from: vec![], to: vec![0x22; 20], data: vec![1, 2], gas: 0, value: vec![0x01, 0x00] };
        let parsed = parse_call(ok).expect("valid");
        assert_eq!(parsed.from, None);
        assert_eq!(parsed.to, Some(Address::repeat_byte(0x22)));
        assert_eq!(parsed.value, U256::from(256));
        assert_eq!(parsed.gas, None);
        let max = proto::CallRequest { value: vec![0xff; 32], gas: 7, ..Default::default() };
        let parsed = parse_call(max).expect("32-byte value");
        assert_eq!((parsed.value, parsed.gas, parsed.to), (U256::MAX, Some(7), None));
        for bad in [
            proto::CallRequest { from: vec![1; 19], ..Default::default() },
            proto::CallRequest { to: vec![1; 32], ..Default::default() },
            proto::CallRequest { value: vec![0; 33], ..Default::default() },
        ] {
            assert_eq!(raw_code(parse_call(bad)), Code::InvalidArgument);
        }
        assert_eq!(raw_code(parse_hash(&[0; 33], "hash")), Code::InvalidArgument);
        assert_eq!(parse_hash(&[9; 32], "hash").ok(), Some(B256::repeat_byte(9)));
    }

    #[test]
    fn revert_reasons_are_decoded() {
        let outcome =
            |output: Vec<u8>, halted: bool| CallOutcome { success: false, output: output.into(), gas_used: 1, halted };
        assert_eq!(revert_reason(&outcome(Revert::from("nope").abi_encode(), false)), "nope");
        let panic = Panic::from(U256::from(0x11)).abi_encode();
        assert!(revert_reason(&outcome(panic, false)).contains("overflow"));
        assert_eq!(revert_reason(&outcome(vec![1, 2, 3], false)), "");
        assert_eq!(revert_reason(&outcome(vec![], false)), "");
        assert!(revert_reason(&outcome(vec![], true)).contains("halted"));
        let success = call_response(CallOutcome {
            success: true,
            output: Revert::from("x").abi_encode().into(),
            gas_used: 5,
            halted: false,
        });
        assert!(success.revert_reason.is_empty());
    }
}
