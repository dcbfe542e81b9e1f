//! bcos-sdk: the chain's public contract, shared by the node, the operator and user applications.
//!
//! Data flow as seen from here: a client signs an Ethereum transaction ([`types::tx`]); a node
//! recovers its sender once into a [`types::RecoveredTx`], orders it into a [`types::Block`] whose
//! [`types::BlockHeader`] commits to the transactions, receipts and state write-set, and seals it
//! with a [`types::QuorumCertificate`] signed by node keys ([`crypto::NodeKey`]). Nodes read their
//! configuration from [`config`] (`genesis.yaml`, `node.yaml`) and serve the gRPC API in [`proto`]
//! that [`client`] speaks.

pub mod client;
pub mod config;
pub mod crypto;
pub mod governance;
pub mod pki;
pub mod types;

/// Generated gRPC types and services (`proto/bcos.proto`).
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod proto {
    tonic::include_proto!("bcos.v1");
}

/// The software version every node and tool of this build reports.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
