//! Storage of the system contracts, read and written through the EVM journal.
//!
//! Every slot is named: `keccak256("bcos." + name)`, or the same over a name followed by raw key
//! bytes (an address, an id). Byte strings ("blobs") keep their length in their slot and their
//! content in 32-byte chunks from `keccak256(slot)` on, as Solidity stores `bytes`.
//!
//! The journal reads and writes storage only of accounts it has loaded, and a system contract
//! reads and writes others' storage (the governance contract's audit log, the permissions a
//! registry change checks, the call a proposal carries out), so every access loads the account
//! first; loading an account already loaded costs a map lookup.

use alloy_primitives::{Address, U256, keccak256};
use revm::context::{ContextTr, JournalTr};

use crate::storage::{StateReader, StorageError};

/// Longest byte string a system contract stores; bounds what a corrupt length makes a node read.
pub(super) const MAX_BLOB: usize = 64 * 1024;

/// The slot named `bcos.<name>`.
pub(super) fn named(name: &str) -> U256 {
    U256::from_be_bytes(keccak256(format!("bcos.{name}")).0)
}

/// The slot named `bcos.<name>` followed by `key`.
pub(super) fn keyed(name: &str, key: &[u8]) -> U256 {
    let mut preimage = format!("bcos.{name}").into_bytes();
    preimage.extend_from_slice(key);
    U256::from_be_bytes(keccak256(preimage).0)
}

/// A value of `address`'s storage.
pub(super) fn sload<CTX: ContextTr>(context: &mut CTX, address: Address, slot: U256) -> Result<U256, String> {
    let journal = context.journal_mut();
    journal.load_account(address).map_err(|e| e.to_string())?;
    journal.sload(address, slot).map(|load| load.data).map_err(|e| e.to_string())
}

/// Writes a value of `address`'s storage (which marks the account as changed).
pub(super) fn sstore<CTX: ContextTr>(
    context: &mut CTX,
    address: Address,
    slot: U256,
    value: U256,
) -> Result<(), String> {
    let journal = context.journal_mut();
    journal.load_account(address).map_err(|e| e.to_string())?;
    journal.sstore(address, slot, value).map(drop).map_err(|e| e.to_string())
}

/// An address kept in a slot.
pub(super) fn to_address(value: U256) -> Address {
    Address::from_word(value.to_be_bytes::<32>().into())
}

/// A slot value holding an address.
pub(super) fn from_address(address: Address) -> U256 {
    U256::from_be_bytes(address.into_word().0)
}

fn chunk_slot(slot: U256, index: usize) -> U256 {
    U256::from_be_bytes(keccak256(slot.to_be_bytes::<32>()).0).wrapping_add(U256::from(index))
}

/// Reads a byte string written by [`write_blob`] through `sload` (of the account that holds it);
/// `corrupt` makes the error for a length no writer stores.
pub(super) fn blob_with<E>(
    slot: U256,
    mut sload: impl FnMut(U256) -> Result<U256, E>,
    corrupt: impl FnOnce(String) -> E,
) -> Result<Vec<u8>, E> {
    let len: usize = sload(slot)?.saturating_to();
    if len > MAX_BLOB {
        return Err(corrupt(format!("a byte string of {len} bytes")));
    }
    let mut bytes = Vec::with_capacity(len);
    for index in 0..len.div_ceil(32) {
        bytes.extend_from_slice(&sload(chunk_slot(slot, index))?.to_be_bytes::<32>());
    }
    bytes.truncate(len);
    Ok(bytes)
}

/// The error for committed state no system contract writes.
pub(super) fn corrupt_state(address: Address) -> impl FnOnce(String) -> StorageError {
    move |detail| StorageError::Corrupt { table: "state", detail: format!("{detail} at {address}") }
}

/// The error for journaled state no system contract writes.
fn corrupt_journal(address: Address) -> impl FnOnce(String) -> String {
    move |detail| format!("corrupt storage of {address}: {detail}")
}

/// Reads a byte string written by [`write_blob`].
pub(super) fn read_blob<CTX: ContextTr>(context: &mut CTX, address: Address, slot: U256) -> Result<Vec<u8>, String> {
    blob_with(slot, |slot| sload(context, address, slot), corrupt_journal(address))
}

/// Writes a byte string of at most [`MAX_BLOB`] bytes (callers bound what they store) into a slot
/// not used before.
pub(super) fn write_blob<CTX: ContextTr>(
    context: &mut CTX,
    address: Address,
    slot: U256,
    bytes: &[u8],
) -> Result<(), String> {
    if bytes.len() > MAX_BLOB {
        return Err(format!("a byte string of {} bytes exceeds {MAX_BLOB}", bytes.len()));
    }
    for (slot, value) in blob_slots(slot, bytes) {
        sstore(context, address, slot, value)?;
    }
    Ok(())
}

/// Zeroes a byte string written by [`write_blob`], length and content, so the slot may be written
/// again and no stale chunk stays in state.
pub(super) fn clear_blob<CTX: ContextTr>(context: &mut CTX, address: Address, slot: U256) -> Result<(), String> {
    let len: usize = sload(context, address, slot)?.saturating_to();
    if len > MAX_BLOB {
        return Err(format!("corrupt storage of {address}: a byte string of {len} bytes"));
    }
    for index in 0..len.div_ceil(32) {
        sstore(context, address, chunk_slot(slot, index), U256::ZERO)?;
    }
    sstore(context, address, slot, U256::ZERO)
}

/// Reads a byte string written by [`write_blob`] from committed state.
pub(super) fn read_committed_blob(
    state: &dyn StateReader,
    address: Address,
    slot: U256,
) -> Result<Vec<u8>, StorageError> {
    blob_with(slot, |slot| state.storage(&address, &slot), corrupt_state(address))
}

/// The slots and values of a byte string as [`write_blob`] writes it (and genesis does).
pub(super) fn blob_slots(slot: U256, bytes: &[u8]) -> Vec<(U256, U256)> {
    let mut slots = vec![(slot, U256::from(bytes.len()))];
    for (index, chunk) in bytes.chunks(32).enumerate() {
        let mut word = [0u8; 32];
        word[..chunk.len()].copy_from_slice(chunk);
        slots.push((chunk_slot(slot, index), U256::from_be_bytes(word)));
    }
    slots
}

/// Text cut to `max` bytes on a character boundary, marked with an ellipsis when cut (reasons and
/// details are bounded so a caller cannot make every later reader pay for a huge string).
pub(super) fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A list of 32-byte values: a count slot and one slot per index from 0, bounded by `max`.
/// Removal moves the last entry into the freed index, so order carries no meaning.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotList {
    pub(super) address: Address,
    pub(super) name: &'static str,
    pub(super) max: u64,
}

impl SlotList {
    /// The count slot.
    pub(super) fn count_slot(&self) -> U256 {
        named(&format!("{}.count", self.name))
    }

    /// The slot of entry `index`.
    pub(super) fn slot(&self, index: u64) -> U256 {
        named(&format!("{}.{index}", self.name))
    }

    /// The entries, read through `sload` (of the list's account); `corrupt` makes the error for a
    /// count beyond the bound.
    pub(super) fn read_with<E>(
        &self,
        mut sload: impl FnMut(U256) -> Result<U256, E>,
        corrupt: impl FnOnce(String) -> E,
    ) -> Result<Vec<U256>, E> {
        let count: u64 = sload(self.count_slot())?.saturating_to();
        if count > self.max {
            return Err(corrupt(format!("{count} entries in {}", self.name)));
        }
        (0..count).map(|i| sload(self.slot(i))).collect()
    }

    /// The entries.
    pub(super) fn read<CTX: ContextTr>(&self, context: &mut CTX) -> Result<Vec<U256>, String> {
        self.read_with(|slot| sload(context, self.address, slot), corrupt_journal(self.address))
    }

    /// Rewrites the list from `old` to `new`, writing only slots that change.
    pub(super) fn write<CTX: ContextTr>(&self, context: &mut CTX, old: &[U256], new: &[U256]) -> Result<(), String> {
        for (i, value) in new.iter().enumerate() {
            if old.get(i) != Some(value) {
                sstore(context, self.address, self.slot(i as u64), *value)?;
            }
        }
        for i in new.len()..old.len() {
            sstore(context, self.address, self.slot(i as u64), U256::ZERO)?;
        }
        if old.len() != new.len() {
            sstore(context, self.address, self.count_slot(), U256::from(new.len()))?;
        }
        Ok(())
    }

    /// The entries in committed state.
    pub(super) fn read_committed(&self, state: &dyn StateReader) -> Result<Vec<U256>, StorageError> {
        self.read_with(|slot| state.storage(&self.address, &slot), corrupt_state(self.address))
    }

    /// The list's slots at genesis.
    pub(super) fn genesis(&self, values: &[U256]) -> Vec<(U256, U256)> {
        let mut slots = vec![(self.count_slot(), U256::from(values.len()))];
        slots.extend(values.iter().enumerate().map(|(i, value)| (self.slot(i as u64), *value)));
        slots
    }
}
