//! bcos-consensus: the chain's consensus engines as pure state machines.
//!
//! An [`Engine`] has no sockets, threads or clock. The driver in the node feeds it messages from
//! peers ([`Engine::step`]), the time ([`Engine::tick`]) and the results of the work it asked for
//! (a block it should propose, [`Engine::proposal_built`]; a peer's proposal it should re-execute,
//! [`Engine::proposal_checked`]), and takes a [`Ready`] out: messages to send, work to do, and at
//! most one block to commit with its [`QuorumCertificate`](bcos_sdk::types::QuorumCertificate).
//! Tests run engines on a simulated network; production runs the same machines over libp2p.

mod engine;
pub mod pbft;
pub mod raft;
#[cfg(any(test, feature = "test-utils"))]
pub mod sim;
mod validators;

pub use engine::{BuildRequest, Commit, Engine, EngineConfig, Proposal, Ready, StepError, Target};
pub use validators::{NodeId, QcError, Validators, VerifiedQc};
