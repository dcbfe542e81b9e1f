//! gRPC client for the node's native API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bcos_sdk::client::ClientError> {
//! let mut client = bcos_sdk::client::NodeClient::connect("http://127.0.0.1:50051").await?;
//! let status = client.status().await?;
//! println!("height {}", status.height);
//! # Ok(()) }
//! ```

use alloy_primitives::{Address, B256, Bytes};
use tonic::transport::Channel;

use crate::proto::{self, node_client::NodeClient as RawClient};

/// A failed call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint could not be reached.
    #[error("cannot connect: {0}")]
    Connect(#[from] tonic::transport::Error),
    /// The node answered with an error status.
    #[error("{}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// The node answered with bytes that are not what the API promises.
    #[error("malformed response: {0}")]
    Malformed(&'static str),
}

/// A client of one node's gRPC API.
#[derive(Debug, Clone)]
pub struct NodeClient {
    inner: RawClient<Channel>,
}

impl NodeClient {
    /// Connects to `endpoint` (for example `http://127.0.0.1:50051`).
    pub async fn connect(endpoint: impl Into<String>) -> Result<Self, ClientError> {
        let channel = Channel::from_shared(endpoint.into())
            .map_err(|_| ClientError::Malformed("invalid endpoint URI"))?
            .connect()
            .await?;
        Ok(Self { inner: RawClient::new(channel) })
    }

    /// The node's status.
    pub async fn status(&mut self) -> Result<proto::NodeStatus, ClientError> {
        Ok(self.inner.get_status(proto::StatusRequest {}).await?.into_inner())
    }

    /// An account in the node's latest state (nonce 0 and balance 0 for one never written).
    pub async fn account(&mut self, address: Address) -> Result<proto::Account, ClientError> {
        let request = proto::AccountRequest { address: address.to_vec() };
        Ok(self.inner.get_account(request).await?.into_inner())
    }

    /// Submits a signed transaction; returns its hash once the node's pool admitted it.
    pub async fn send_raw_transaction(&mut self, raw: Bytes) -> Result<B256, ClientError> {
        let response = self.inner.send_transaction(proto::SendTransactionRequest { raw: raw.to_vec() }).await?;
        let hash = response.into_inner().hash;
        B256::try_from(hash.as_slice()).map_err(|_| ClientError::Malformed("transaction hash is not 32 bytes"))
    }

    /// A block by number.
    pub async fn block_by_number(&mut self, number: u64) -> Result<proto::Block, ClientError> {
        let request = proto::GetBlockRequest { id: Some(proto::get_block_request::Id::Number(number)) };
        Ok(self.inner.get_block(request).await?.into_inner())
    }

    /// A receipt by transaction hash.
    pub async fn receipt(&mut self, hash: B256) -> Result<proto::Receipt, ClientError> {
        Ok(self.inner.get_receipt(proto::HashRequest { hash: hash.to_vec() }).await?.into_inner())
    }

    /// Executes a read-only call.
    pub async fn call(&mut self, request: proto::CallRequest) -> Result<proto::CallResponse, ClientError> {
        Ok(self.inner.call(request).await?.into_inner())
    }

    /// A stream of every header committed from now on.
    pub async fn subscribe_blocks(&mut self) -> Result<tonic::Streaming<proto::BlockHeader>, ClientError> {
        Ok(self.inner.subscribe_blocks(proto::SubscribeBlocksRequest {}).await?.into_inner())
    }
}
