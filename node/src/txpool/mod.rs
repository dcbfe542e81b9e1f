//! The transaction pool: admission, ordering and limits.
//!
//! Admission runs the checks in two groups. Stateless checks need only the bytes: size, EIP-2718
//! decoding, EIP-155 chain id, signature (the sender is recovered here, once, with libsecp256k1),
//! intrinsic gas and the block gas limit. Stateful checks need the chain: the sender's permission
//! when permissions are enabled (see [`crate::executor::permissions`]; checked before taking the
//! pool's lock), the nonce against the sender's committed nonce, duplicates, replacement, and the
//! pool's capacity. An admitted
//! transaction is written to the storage journal before its hash is returned, so a node killed at
//! any moment still holds every transaction it acknowledged.
//!
//! Ordering: a transaction is *ready* once every lower nonce of its sender is committed or ready.
//! Ready transactions are handed to block production in the order they became ready, which keeps
//! each sender's nonces in order and serves senders first come, first served.

mod error;
mod pool;

pub use error::{PoolError, PoolErrorKind};
pub use pool::{TxPool, intrinsic_gas};
