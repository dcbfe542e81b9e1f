//! bcos-node: one node of a BCOS chain.
//!
//! The data path: a transaction enters at [`rpc`] (JSON-RPC or gRPC), is admitted by [`txpool`]
//! (its sender recovered once), ordered into a block by [`consensus`], executed by [`executor`]
//! (revm), persisted by [`storage`] (RocksDB, one batch per block) through [`chain`], and served
//! back by [`rpc`]. [`sync`] brings a lagging node up to date, verifying every certificate and
//! re-executing every block. [`network`] carries consensus messages, transaction gossip and block sync
//! between nodes over libp2p. [`metrics`] exposes Prometheus metrics and health probes; [`cli`]
//! and [`service`] assemble a running node. [`version`] says what this build supports: the
//! versions a node reports and states to its peers, and the highest chain compatibility version
//! it executes, beyond which [`chain`] applies no blocks.

pub mod chain;
pub mod cli;
pub mod consensus;
pub mod executor;
pub mod metrics;
pub mod network;
pub mod rpc;
pub mod service;
pub mod storage;
pub mod sync;
#[cfg(test)]
mod test_utils;
pub mod txpool;
pub mod version;
