//! Block production and agreement.
//!
//! A chain whose consensus node set has exactly one member and no peers runs
//! [`solo::SoloSealer`]: it proposes, executes, signs and commits blocks on its own, on the
//! schedule the system config sets, with a real one-vote quorum certificate. Every other chain runs
//! [`driver::Driver`] over libp2p with the [`switch::ConsensusEngine`] the system config names
//! (PBFT or Raft); [`proposals`] builds and re-executes the blocks both put up for agreement.
//! Certificates of every kind verify under one rule: a quorum of the consensus node set in force
//! at that height.

#[cfg(test)]
mod admission_tests;
#[cfg(test)]
mod byzantine_tests;
pub mod driver;
#[cfg(test)]
mod driver_tests;
pub mod proposals;
pub mod solo;
pub mod switch;
mod wire;
