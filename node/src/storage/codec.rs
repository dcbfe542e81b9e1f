//! Record encodings and the state key layout shared with the state commitment.

use alloy_consensus::TxEnvelope;
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_rlp::{Decodable, Encodable, RlpDecodable, RlpEncodable};
use bcos_sdk::types::RecoveredTx;

use super::StorageError;

/// An account's nonce, balance and code hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, RlpEncodable, RlpDecodable)]
pub struct AccountState {
    /// Transactions sent (or contracts created, for contracts).
    pub nonce: u64,
    /// Balance in wei.
    pub balance: U256,
    /// Keccak-256 of the code; `KECCAK_EMPTY` for plain accounts.
    pub code_hash: B256,
}

/// A transaction with the sender this node recovered when it admitted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTx {
    /// Recovered sender.
    pub sender: Address,
    /// The signed transaction.
    pub envelope: TxEnvelope,
}

impl StoredTx {
    /// Turns a verified transaction into its stored form.
    pub fn from_recovered(tx: &RecoveredTx) -> Self {
        Self { sender: tx.sender(), envelope: tx.envelope().clone() }
    }

    /// Back to a verified transaction: this node recovered the sender itself before storing it.
    pub fn into_recovered(self) -> RecoveredTx {
        RecoveredTx::from_trusted_parts(self.envelope, self.sender)
    }

    /// The transaction hash.
    pub fn hash(&self) -> B256 {
        *self.envelope.tx_hash()
    }
}

#[derive(RlpEncodable, RlpDecodable)]
struct StoredTxRecord {
    sender: Address,
    raw: Bytes,
}

fn encode_tx_record(tx: &StoredTx) -> StoredTxRecord {
    StoredTxRecord { sender: tx.sender, raw: Bytes::from(tx.envelope.encoded_2718()) }
}

pub(super) fn encode_tx(tx: &StoredTx) -> Vec<u8> {
    alloy_rlp::encode(encode_tx_record(tx))
}

fn decode_tx_record(record: StoredTxRecord, table: &'static str) -> Result<StoredTx, StorageError> {
    let envelope = TxEnvelope::decode_2718_exact(&record.raw)
        .map_err(|e| StorageError::Corrupt { table, detail: e.to_string() })?;
    Ok(StoredTx { sender: record.sender, envelope })
}

pub(super) fn decode_tx(bytes: &[u8], table: &'static str) -> Result<StoredTx, StorageError> {
    decode_tx_record(decode(bytes, table)?, table)
}

/// Decodes one RLP record, rejecting trailing bytes.
pub(super) fn decode<T: Decodable>(mut bytes: &[u8], table: &'static str) -> Result<T, StorageError> {
    let value = T::decode(&mut bytes).map_err(|e| StorageError::Corrupt { table, detail: e.to_string() })?;
    if !bytes.is_empty() {
        return Err(StorageError::Corrupt { table, detail: format!("{} trailing bytes", bytes.len()) });
    }
    Ok(value)
}

pub(super) fn encode<T: Encodable>(value: &T) -> Vec<u8> {
    alloy_rlp::encode(value)
}

pub(super) fn decode_u64(bytes: &[u8], table: &'static str) -> Result<u64, StorageError> {
    let array: [u8; 8] =
        bytes.try_into().map_err(|_| StorageError::Corrupt { table, detail: "expected 8 bytes".into() })?;
    Ok(u64::from_be_bytes(array))
}

/// State keys: one byte of kind, then the natural key. The state commitment hashes these exact
/// keys, so the layout is part of the protocol.
pub mod state_key {
    use alloy_primitives::{Address, B256, U256};

    /// Prefix of account records.
    pub const ACCOUNT: u8 = b'a';
    /// Prefix of storage slots.
    pub const STORAGE: u8 = b's';
    /// Prefix of contract code.
    pub const CODE: u8 = b'c';

    /// Key of an account.
    pub fn account(address: &Address) -> [u8; 21] {
        let mut key = [0u8; 21];
        key[0] = ACCOUNT;
        key[1..].copy_from_slice(address.as_slice());
        key
    }

    /// Key of a storage slot.
    pub fn storage(address: &Address, slot: &U256) -> [u8; 53] {
        let mut key = [0u8; 53];
        key[0] = STORAGE;
        key[1..21].copy_from_slice(address.as_slice());
        key[21..].copy_from_slice(&slot.to_be_bytes::<32>());
        key
    }

    /// Key of contract code.
    pub fn code(code_hash: &B256) -> [u8; 33] {
        let mut key = [0u8; 33];
        key[0] = CODE;
        key[1..].copy_from_slice(code_hash.as_slice());
        key
    }
}
