//! bcos-consensus: the chain's consensus engines as pure state machines.
//!
//! An [`Engine`] has no sockets, threads or clock. The driver in the node feeds it messages from
//! peers ([`Engine::step`]), the time ([`Engine::tick`]) and the results of the work it asked for
//! (a block it should propose, [`Engine::proposal_built`]; a peer's proposal it should re-execute,
//! [`Engine::proposal_checked`]), and takes a [`Ready`] out: messages to send, work to do, and at
//! most one block to commit with its [`QuorumCertificate`](bcos_sdk::types::QuorumCertificate).
//! Tests run engines on a simulated network; production runs the same machines over libp2p.
//!
//! What an engine must not forget across a restart (votes, terms, locked blocks) comes out as
//! [`Ready::persist`]: the driver stores those bytes before sending the `Ready`'s messages and
//! hands them to [`Engine::restore`] when the node starts again. The bytes are one byte naming
//! the engine, one format-version byte, and one RLP record; decoding is bounded
//! ([`MAX_DURABLE_BYTES`]) and fails with a [`RestoreError`], never a panic. What each engine
//! keeps, and when it writes it, is in the "Durable state" sections of [`pbft`] and [`raft`].

mod durable;
mod engine;
pub mod pbft;
pub mod raft;
#[cfg(any(test, feature = "test-utils"))]
pub mod sim;
mod validators;

pub use durable::MAX_DURABLE_BYTES;
pub use engine::{
    BuildRequest, Commit, Engine, EngineConfig, EngineKind, Proposal, Ready, RestoreError, StepError, Target,
};
pub use validators::{NodeId, QcError, Validators, VerifiedQc};
