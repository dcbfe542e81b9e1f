//! Pool errors.

use alloy_primitives::B256;
use bcos_sdk::types::TxError;

use crate::executor::PermissionDenied;

/// Why the pool refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PoolErrorKind {
    /// The bytes do not decode, the chain id is wrong, or the signature is invalid.
    #[error(transparent)]
    Invalid(#[from] TxError),
    /// The encoded transaction is larger than the pool accepts.
    #[error("oversized data: transaction is {size} bytes, limit is {limit}")]
    Oversized {
        /// Encoded size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The same transaction is already pending.
    #[error("already known")]
    AlreadyKnown,
    /// The nonce was already used by a committed transaction.
    #[error("nonce too low: next nonce {expected}, tx nonce {got}")]
    NonceTooLow {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The nonce is too far beyond the sender's next nonce to be queued.
    #[error("nonce too high: next nonce {expected}, tx nonce {got}, at most {max_gap} ahead")]
    NonceTooHigh {
        /// The sender's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
        /// Allowed distance.
        max_gap: u64,
    },
    /// Another transaction with this nonce is pending and this one does not pay 10% more.
    #[error("replacement transaction underpriced")]
    ReplacementUnderpriced,
    /// The pool holds its maximum number of transactions.
    #[error("txpool is full")]
    PoolFull,
    /// The sender holds its maximum number of pending transactions.
    #[error("too many pending transactions from sender (limit {0})")]
    SenderLimit(usize),
    /// The transaction asks for more gas than a block may use.
    #[error("exceeds block gas limit: tx gas {gas}, block limit {limit}")]
    ExceedsBlockGasLimit {
        /// Requested gas.
        gas: u64,
        /// Block gas limit.
        limit: u64,
    },
    /// The gas limit does not cover the intrinsic cost of the transaction.
    #[error("intrinsic gas too low: have {gas}, want {intrinsic}")]
    IntrinsicGasTooLow {
        /// Provided gas.
        gas: u64,
        /// Required gas.
        intrinsic: u64,
    },
    /// Permissions are enabled and the sender lacks the role the transaction needs.
    #[error(transparent)]
    PermissionDenied(#[from] PermissionDenied),
    /// The node could not record the transaction durably.
    #[error("storage failure: {0}")]
    Storage(String),
}

impl PoolErrorKind {
    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Invalid(TxError::Malformed(_)) => "malformed",
            Self::Invalid(TxError::UnsupportedType(_)) => "unsupported_type",
            Self::Invalid(TxError::NotReplayProtected) => "not_replay_protected",
            Self::Invalid(TxError::WrongChainId { .. }) => "wrong_chain_id",
            Self::Invalid(TxError::InvalidSignature(_)) => "invalid_signature",
            Self::Invalid(_) => "invalid",
            Self::Oversized { .. } => "oversized",
            Self::AlreadyKnown => "already_known",
            Self::NonceTooLow { .. } => "nonce_too_low",
            Self::NonceTooHigh { .. } => "nonce_too_high",
            Self::ReplacementUnderpriced => "replacement_underpriced",
            Self::PoolFull => "pool_full",
            Self::SenderLimit(_) => "sender_limit",
            Self::ExceedsBlockGasLimit { .. } => "exceeds_block_gas_limit",
            Self::IntrinsicGasTooLow { .. } => "intrinsic_gas_too_low",
            Self::PermissionDenied(PermissionDenied::NoDeploy(_)) => "no_deploy_permission",
            Self::PermissionDenied(PermissionDenied::NoTransact(_)) => "no_transact_permission",
            Self::Storage(_) => "storage",
        }
    }

    /// Whether a peer that relayed this transaction misbehaved (as opposed to a race or a limit;
    /// a missing permission is a race too: peers may judge by a state before a grant or revocation).
    pub fn is_bad_transaction(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Oversized { .. } | Self::IntrinsicGasTooLow { .. })
    }
}

/// A refused transaction: its hash, when the bytes got far enough to have one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct PoolError {
    /// Hash of the refused transaction, if it decoded.
    pub hash: Option<B256>,
    /// Why it was refused.
    pub kind: PoolErrorKind,
}

impl PoolError {
    pub(crate) fn new(hash: Option<B256>, kind: impl Into<PoolErrorKind>) -> Self {
        Self { hash, kind: kind.into() }
    }
}
