//! Transaction receipts as stored, and their Ethereum consensus form.

use alloy_consensus::{Eip658Value, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxType};
use alloy_primitives::{Address, B256, Bytes, Log, LogData};
use alloy_rlp::{RlpDecodable, RlpEncodable};

/// A log as stored with its receipt.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct StoredLog {
    /// Emitting contract.
    pub address: Address,
    /// Indexed topics.
    pub topics: Vec<B256>,
    /// Non-indexed data.
    pub data: Bytes,
}

/// The outcome of one transaction, as the node stores and serves it.
#[derive(Debug, Clone, PartialEq, Eq, RlpEncodable, RlpDecodable)]
pub struct StoredReceipt {
    /// EIP-2718 type of the transaction.
    pub tx_type: u8,
    /// `true` when execution succeeded.
    pub success: bool,
    /// Gas used by this transaction.
    pub gas_used: u64,
    /// Gas used by the block up to and including this transaction.
    pub cumulative_gas_used: u64,
    /// Address of the contract a creation deployed; zero otherwise.
    pub contract_address: Address,
    /// Return data on revert (an ABI-encoded `Error(string)` carries the revert reason).
    pub revert_output: Bytes,
    /// Logs emitted, in order.
    pub logs: Vec<StoredLog>,
}

impl StoredLog {
    /// The alloy form of the log.
    pub fn to_log(&self) -> Log {
        Log { address: self.address, data: LogData::new_unchecked(self.topics.clone(), self.data.clone()) }
    }
}

impl StoredReceipt {
    /// The contract deployed by this transaction, if it was a successful creation.
    pub fn created_contract(&self) -> Option<Address> {
        (self.contract_address != Address::ZERO).then_some(self.contract_address)
    }

    /// The Ethereum consensus receipt, whose EIP-2718 encoding feeds the receipts root.
    pub fn to_envelope(&self) -> ReceiptEnvelope {
        let receipt = Receipt {
            status: Eip658Value::Eip658(self.success),
            cumulative_gas_used: self.cumulative_gas_used,
            logs: self.logs.iter().map(StoredLog::to_log).collect(),
        };
        let with_bloom = ReceiptWithBloom::from(receipt);
        match TxType::try_from(self.tx_type).unwrap_or(TxType::Legacy) {
            TxType::Legacy => ReceiptEnvelope::Legacy(with_bloom),
            TxType::Eip2930 => ReceiptEnvelope::Eip2930(with_bloom),
            TxType::Eip1559 => ReceiptEnvelope::Eip1559(with_bloom),
            TxType::Eip4844 => ReceiptEnvelope::Eip4844(with_bloom),
            TxType::Eip7702 => ReceiptEnvelope::Eip7702(with_bloom),
        }
    }
}
