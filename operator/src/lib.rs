//! bcos-operator: turns `ConsortiumChain` and `Member` resources into running chains.
//!
//! [`crd`] defines the resources; [`plan`] computes the objects they should have; [`rollout`] plans version upgrades node by node; [`identity`]
//! keeps keys and certificates in Secrets; [`nodes`] talks to running nodes; [`controller`]
//! reconciles; [`run`] is the process (leader election via [`leader`], [`metrics`], endpoints).

pub mod conditions;
pub mod controller;
pub mod crd;
pub mod crdgen;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod nodes;
pub mod plan;
pub mod rollout;
pub mod run;
