//! Block production and agreement.
//!
//! This build runs a chain whose consensus node set has exactly one member: [`solo::SoloSealer`]
//! proposes, executes, signs and commits blocks on its own, on the schedule the system config sets.
//! Its certificate is a real one-vote quorum certificate, so blocks it commits verify under the
//! same rule multi-node engines use (a quorum of the consensus node set in force at that height).

pub mod driver;
#[cfg(test)]
mod driver_tests;
pub mod proposals;
pub mod solo;
mod wire;
