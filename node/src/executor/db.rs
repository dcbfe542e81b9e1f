//! revm's view of the node's state store.

use alloy_primitives::{Address, B256, U256};
use revm::{
    DatabaseRef, bytecode::Bytecode, database_interface::DBErrorMarker, primitives::KECCAK_EMPTY, state::AccountInfo,
};

use crate::storage::{BlockReader, StateReader, StorageError};

impl DBErrorMarker for StorageError {}

/// Reads accounts, code and storage from a [`StateReader`], and block hashes from a
/// [`BlockReader`], for revm.
pub(crate) struct StoreDb<'a> {
    pub(crate) state: &'a dyn StateReader,
    pub(crate) blocks: &'a dyn BlockReader,
}

impl DatabaseRef for StoreDb<'_> {
    type Error = StorageError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, StorageError> {
        Ok(self.state.account(&address)?.map(|account| AccountInfo {
            balance: account.balance,
            nonce: account.nonce,
            code_hash: account.code_hash,
            code: None,
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, code_hash: B256) -> Result<Bytecode, StorageError> {
        if code_hash == KECCAK_EMPTY || code_hash == B256::ZERO {
            return Ok(Bytecode::default());
        }
        match self.state.code(&code_hash)? {
            Some(code) => Ok(Bytecode::new_raw(code)),
            None => Err(StorageError::Corrupt { table: "state", detail: format!("missing code {code_hash}") }),
        }
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, StorageError> {
        self.state.storage(&address, &index)
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, StorageError> {
        Ok(self.blocks.header(number)?.map(|h| h.hash()).unwrap_or_default())
    }
}
