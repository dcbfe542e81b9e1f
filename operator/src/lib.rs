//! bcos-operator: turns `ConsortiumChain` and `Member` resources into running chains.
//!
//! The controllers arrive with the operator issue; this crate exists so the workspace layout that
//! other parts rely on is in place.
