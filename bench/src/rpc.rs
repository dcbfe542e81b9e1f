//! JSON-RPC plumbing shared by setup, load and tracking: client construction, the few wire types
//! the benchmark reads, and typed helpers over the Ethereum methods it calls.

use std::time::Duration;

use alloy_primitives::{Address, B256, Bytes, U64};
use anyhow::{Context, bail};
use jsonrpsee_core::{client::ClientT, params::BatchRequestBuilder, rpc_params, traits::ToRpcParams};
use jsonrpsee_http_client::{HttpClient, HttpClientBuilder};
use jsonrpsee_ws_client::{WsClient, WsClientBuilder};
use serde::Deserialize;
use serde_json::value::RawValue;

/// Largest JSON-RPC request or response either client accepts (a block's hash list, a batch).
const MAX_MESSAGE_BYTES: u32 = 256 * 1024 * 1024;
/// How long one request or batch may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Subscription notifications buffered per subscription before the client drops it as lagging.
const SUBSCRIPTION_BUFFER: usize = 16 * 1024;
/// Interval between receipt polls.
const RECEIPT_POLL: Duration = Duration::from_millis(100);

/// Builds the HTTP JSON-RPC client. It keeps a pool of keep-alive connections, one per request
/// in flight, so concurrency is bounded by the callers.
pub(crate) fn http_client(url: &str) -> anyhow::Result<HttpClient> {
    HttpClientBuilder::default()
        .max_request_size(MAX_MESSAGE_BYTES)
        .max_response_size(MAX_MESSAGE_BYTES)
        .request_timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build(url)
        .with_context(|| format!("invalid JSON-RPC HTTP endpoint {url} (only http:// is supported)"))
}

/// Connects the WebSocket JSON-RPC client.
pub(crate) async fn ws_client(url: &str) -> anyhow::Result<WsClient> {
    WsClientBuilder::default()
        .max_request_size(MAX_MESSAGE_BYTES)
        .max_response_size(MAX_MESSAGE_BYTES)
        .request_timeout(REQUEST_TIMEOUT)
        .connection_timeout(CONNECT_TIMEOUT)
        .max_buffer_capacity_per_subscription(SUBSCRIPTION_BUFFER)
        .build(url)
        .await
        .with_context(|| format!("cannot connect to the JSON-RPC WebSocket endpoint {url}"))
}

/// Derives the WebSocket URL from the HTTP one: same host and port, `ws://` scheme.
pub(crate) fn ws_url_from_http(http: &str) -> anyhow::Result<String> {
    if let Some(rest) = http.strip_prefix("http://") {
        Ok(format!("ws://{rest}"))
    } else if http.starts_with("https://") {
        bail!("{http}: TLS endpoints are not supported; use http:// and ws://")
    } else {
        bail!("{http}: the RPC URL must start with http://")
    }
}

/// A readable error from a JSON-RPC client error: the endpoint's message and code for call
/// errors (whose `Debug`-like `Display` would otherwise repeat in the source chain).
pub(crate) fn rpc_error(error: jsonrpsee_core::client::Error) -> anyhow::Error {
    match error {
        jsonrpsee_core::client::Error::Call(e) => {
            anyhow::anyhow!("{} (JSON-RPC error {})", e.message(), e.code())
        }
        other => anyhow::anyhow!("{other}"),
    }
}

/// Parameters serialized ahead of time (`["0x…"]`), so sending costs no encoding.
#[derive(Debug)]
pub(crate) struct RawParams(pub(crate) Box<RawValue>);

impl RawParams {
    /// The params of `eth_sendRawTransaction` for these encoded transaction bytes.
    pub(crate) fn send_raw(raw: &[u8]) -> Result<Self, serde_json::Error> {
        RawValue::from_string(format!("[\"0x{}\"]", hex::encode(raw))).map(Self)
    }
}

impl ToRpcParams for RawParams {
    fn to_rpc_params(self) -> Result<Option<Box<RawValue>>, serde_json::Error> {
        Ok(Some(self.0))
    }
}

/// The fields of a transaction receipt the benchmark reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Receipt {
    /// 1 for success, 0 for revert (post-Byzantium receipts).
    pub(crate) status: Option<U64>,
    /// The created contract, for deployments.
    pub(crate) contract_address: Option<Address>,
    /// The including block.
    pub(crate) block_number: Option<U64>,
}

impl Receipt {
    /// Whether the transaction succeeded.
    pub(crate) fn succeeded(&self) -> bool {
        self.status == Some(U64::from(1))
    }
}

/// A `newHeads` notification; only the number is used.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Head {
    /// The block number.
    pub(crate) number: U64,
}

/// A block as returned by `eth_getBlockByNumber(n, false)`: transaction hashes only.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct BlockHashes {
    /// The block number.
    pub(crate) number: U64,
    /// The hashes of its transactions.
    pub(crate) transactions: Vec<B256>,
}

/// `eth_chainId`.
pub(crate) async fn chain_id(client: &HttpClient) -> anyhow::Result<u64> {
    let id: U64 = client.request("eth_chainId", rpc_params![]).await.map_err(rpc_error)?;
    Ok(id.to())
}

/// `eth_blockNumber`.
pub(crate) async fn block_number(client: &impl ClientT) -> anyhow::Result<u64> {
    let n: U64 = client.request("eth_blockNumber", rpc_params![]).await.map_err(rpc_error)?;
    Ok(n.to())
}

/// `eth_getTransactionCount(address, "pending")`: the next nonce to use.
pub(crate) async fn pending_nonce(client: &HttpClient, address: Address) -> anyhow::Result<u64> {
    let n: U64 = client.request("eth_getTransactionCount", rpc_params![address, "pending"]).await.map_err(rpc_error)?;
    Ok(n.to())
}

/// `eth_getCode(address, "latest")`.
pub(crate) async fn code(client: &HttpClient, address: Address) -> anyhow::Result<Bytes> {
    client.request("eth_getCode", rpc_params![address, "latest"]).await.map_err(rpc_error)
}

/// `eth_sendRawTransaction` of one transaction; returns the hash the endpoint reports.
pub(crate) async fn send_raw(client: &HttpClient, raw: &[u8]) -> anyhow::Result<B256> {
    client.request("eth_sendRawTransaction", RawParams::send_raw(raw)?).await.map_err(rpc_error)
}

/// Sends `eth_sendRawTransaction` for every entry in one JSON-RPC batch. Returns one result per
/// entry, in order: the reported hash or the endpoint's error message. A failure of the whole
/// request (transport, timeout, malformed response) is an `Err`.
pub(crate) async fn send_raw_batch(
    client: &HttpClient,
    params: Vec<RawParams>,
) -> Result<Vec<Result<B256, String>>, jsonrpsee_core::client::Error> {
    let count = params.len();
    let mut batch = BatchRequestBuilder::new();
    for p in params {
        batch.insert("eth_sendRawTransaction", p)?;
    }
    let response = client.batch_request::<B256>(batch).await?;
    let mut results: Vec<Result<B256, String>> =
        response.into_iter().map(|entry| entry.map_err(|e| e.message().to_owned())).collect();
    // A server that answers fewer entries than it was sent leaves the rest unanswered.
    results.resize_with(count, || Err("no response for this batch entry".to_owned()));
    Ok(results)
}

/// `eth_getTransactionReceipt`, `None` while the transaction is not yet included.
pub(crate) async fn receipt(client: &HttpClient, hash: B256) -> anyhow::Result<Option<Receipt>> {
    client.request("eth_getTransactionReceipt", rpc_params![hash]).await.map_err(rpc_error)
}

/// Polls for a receipt until it appears or `timeout` passes.
pub(crate) async fn wait_receipt(client: &HttpClient, hash: B256, timeout: Duration) -> anyhow::Result<Receipt> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(r) = receipt(client, hash).await? {
            return Ok(r);
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("transaction {hash} not included within {} s", timeout.as_secs());
        }
        tokio::time::sleep(RECEIPT_POLL).await;
    }
}

/// `eth_getBlockByNumber(number, false)`, `None` if the endpoint does not have it (yet).
pub(crate) async fn block_hashes(client: &impl ClientT, number: u64) -> anyhow::Result<Option<BlockHashes>> {
    client.request("eth_getBlockByNumber", rpc_params![U64::from(number), false]).await.map_err(rpc_error)
}

/// `eth_call` against the latest state, for each `(to, data)` pair, in batches of `batch`.
pub(crate) async fn call_many(
    client: &HttpClient,
    calls: &[(Address, Bytes)],
    batch: usize,
) -> anyhow::Result<Vec<Bytes>> {
    let mut out = Vec::with_capacity(calls.len());
    for chunk in calls.chunks(batch.max(1)) {
        let mut request = BatchRequestBuilder::new();
        for (to, data) in chunk {
            let call = serde_json::json!({ "to": to, "data": data });
            request.insert("eth_call", rpc_params![call, "latest"])?;
        }
        let response = client.batch_request::<Bytes>(request).await.map_err(rpc_error)?;
        if response.len() != chunk.len() {
            bail!("eth_call batch: {} answers for {} calls", response.len(), chunk.len());
        }
        for entry in response {
            out.push(entry.map_err(|e| anyhow::anyhow!("eth_call failed: {}", e.message()))?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ws_url_keeps_host_and_port() {
        assert_eq!(ws_url_from_http("http://127.0.0.1:8545").expect("http"), "ws://127.0.0.1:8545");
        assert_eq!(ws_url_from_http("http://node:1/").expect("path"), "ws://node:1/");
        assert!(ws_url_from_http("https://node:1").is_err());
        assert!(ws_url_from_http("node:1").is_err());
    }

    #[test]
    fn raw_params_are_a_one_element_hex_array() {
        let p = RawParams::send_raw(&[0x02, 0xab]).expect("valid json");
        assert_eq!(p.0.get(), r#"["0x02ab"]"#);
        let parsed: Vec<Bytes> = serde_json::from_str(p.0.get()).expect("json");
        assert_eq!(parsed, vec![Bytes::from(vec![0x02, 0xab])]);
    }
}
