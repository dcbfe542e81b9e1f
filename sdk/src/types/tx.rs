//! Ethereum transactions as this chain accepts them, and sender recovery.
//!
//! A raw transaction becomes a [`RecoveredTx`] only through [`RecoveredTx::decode_and_recover`],
//! which decodes EIP-2718 bytes, enforces EIP-155 replay protection against this chain's id,
//! rejects malleable (high-s) signatures and recovers the sender with libsecp256k1. The pool and the
//! executor accept nothing else, so a signature is never checked twice on one node.

use alloy_consensus::{Transaction, TxEnvelope};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use secp256k1::{Message, SECP256K1, ecdsa::RecoverableSignature};

/// Why a raw transaction was refused before it reached any state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The bytes are not a well-formed EIP-2718 transaction.
    #[error("malformed transaction: {0}")]
    Malformed(String),
    /// Blob (EIP-4844) and set-code (EIP-7702) transactions have no meaning on this chain.
    #[error("unsupported transaction type {0}")]
    UnsupportedType(u8),
    /// Legacy transaction without EIP-155 replay protection.
    #[error("only replay-protected (EIP-155) transactions are allowed")]
    NotReplayProtected,
    /// Signed for another chain.
    #[error("invalid chain id: expected {expected}, got {got}")]
    WrongChainId {
        /// This chain's id.
        expected: u64,
        /// The id the transaction was signed for.
        got: u64,
    },
    /// The signature does not recover to a public key, or has a high `s` (EIP-2).
    #[error("invalid sender: {0}")]
    InvalidSignature(&'static str),
}

/// A transaction whose sender has been recovered and checked against this chain's id.
///
/// Only [`RecoveredTx::decode_and_recover`] and [`RecoveredTx::from_trusted_parts`] construct it.
#[derive(Debug, Clone)]
pub struct RecoveredTx {
    envelope: TxEnvelope,
    sender: Address,
    encoded: Bytes,
}

/// Half the secp256k1 group order: signatures with `s` above it are malleable (EIP-2).
const SECP256K1_HALF_ORDER: U256 = U256::from_be_slice(&[
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x5D, 0x57, 0x6E,
    0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
]);

impl RecoveredTx {
    /// Decodes EIP-2718 bytes and recovers the sender, enforcing this chain's id.
    pub fn decode_and_recover(raw: &[u8], chain_id: u64) -> Result<Self, TxError> {
        let envelope = TxEnvelope::decode_2718_exact(raw).map_err(|e| TxError::Malformed(e.to_string()))?;
        match &envelope {
            TxEnvelope::Legacy(_) | TxEnvelope::Eip2930(_) | TxEnvelope::Eip1559(_) => {}
            other => return Err(TxError::UnsupportedType(other.tx_type() as u8)),
        }
        match envelope.chain_id() {
            None => return Err(TxError::NotReplayProtected),
            Some(got) if got != chain_id => return Err(TxError::WrongChainId { expected: chain_id, got }),
            Some(_) => {}
        }
        let sender = recover_signer(&envelope)?;
        Ok(Self { envelope, sender, encoded: Bytes::copy_from_slice(raw) })
    }

    /// Rebuilds a transaction from parts this node verified before and stored itself (blocks it
    /// committed, its own pool journal). Never use it for bytes from a peer or a client.
    pub fn from_trusted_parts(envelope: TxEnvelope, sender: Address) -> Self {
        let encoded = Bytes::from(envelope.encoded_2718());
        Self { envelope, sender, encoded }
    }

    /// The signed transaction.
    pub fn envelope(&self) -> &TxEnvelope {
        &self.envelope
    }

    /// The recovered sender.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// The transaction hash.
    pub fn hash(&self) -> B256 {
        *self.envelope.tx_hash()
    }

    /// The EIP-2718 encoding the hash is computed over.
    pub fn encoded(&self) -> &Bytes {
        &self.encoded
    }

    /// The sender's nonce for this transaction.
    pub fn nonce(&self) -> u64 {
        self.envelope.nonce()
    }

    /// The gas limit the sender allowed.
    pub fn gas_limit(&self) -> u64 {
        self.envelope.gas_limit()
    }
}

/// Recovers the sender of a signed transaction with libsecp256k1, refusing high-`s` signatures.
fn recover_signer(envelope: &TxEnvelope) -> Result<Address, TxError> {
    let signature = envelope.signature();
    if signature.s() > SECP256K1_HALF_ORDER {
        return Err(TxError::InvalidSignature("signature s value is too high"));
    }
    let recoverable: RecoverableSignature =
        signature.to_secp256k1().map_err(|_| TxError::InvalidSignature("signature is not on the curve"))?;
    let message = Message::from_digest(envelope.signature_hash().0);
    let public_key = SECP256K1
        .recover_ecdsa(message, &recoverable)
        .map_err(|_| TxError::InvalidSignature("signature does not recover to a public key"))?;
    Ok(public_key_to_address(&public_key))
}

/// The Ethereum address of a secp256k1 public key: the last 20 bytes of Keccak-256 of its
/// uncompressed coordinates.
pub fn public_key_to_address(public_key: &secp256k1::PublicKey) -> Address {
    let uncompressed = public_key.serialize_uncompressed();
    Address::from_slice(&keccak256(&uncompressed[1..])[12..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{SignableTransaction, TxEip1559, TxLegacy};
    use alloy_primitives::{Signature, TxKind};
    use secp256k1::SecretKey;

    fn sign<T: SignableTransaction<Signature>>(tx: T, key: &SecretKey) -> alloy_consensus::Signed<T> {
        let hash = tx.signature_hash();
        let (recid, compact) = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), key).serialize_compact();
        let signature = Signature::from_bytes_and_parity(&compact, i32::from(recid) == 1);
        tx.into_signed(signature)
    }

    fn key() -> SecretKey {
        SecretKey::from_byte_array([7u8; 32]).expect("constant key is valid")
    }

    #[test]
    fn recovers_eip1559_and_eip155_senders() {
        let expected = public_key_to_address(&key().public_key(SECP256K1));
        let eip1559 = TxEip1559 {
            chain_id: 20200,
            nonce: 3,
            gas_limit: 21000,
            to: TxKind::Call(Address::ZERO),
            ..Default::default()
        };
        let raw = TxEnvelope::from(sign(eip1559, &key())).encoded_2718();
        let tx = RecoveredTx::decode_and_recover(&raw, 20200).expect("valid tx");
        assert_eq!(tx.sender(), expected);
        assert_eq!(tx.nonce(), 3);
        assert_eq!(tx.hash(), keccak256(&raw));

        let legacy = TxLegacy { chain_id: Some(20200), gas_limit: 21000, to: TxKind::Create, ..Default::default() };
        let raw = TxEnvelope::from(sign(legacy, &key())).encoded_2718();
        assert_eq!(RecoveredTx::decode_and_recover(&raw, 20200).expect("valid tx").sender(), expected);
    }

    #[test]
    fn refuses_other_chains_unprotected_and_garbage() {
        let legacy = TxLegacy { chain_id: Some(1), gas_limit: 21000, ..Default::default() };
        let raw = TxEnvelope::from(sign(legacy, &key())).encoded_2718();
        assert_eq!(
            RecoveredTx::decode_and_recover(&raw, 20200).unwrap_err(),
            TxError::WrongChainId { expected: 20200, got: 1 }
        );
        let unprotected = TxLegacy { chain_id: None, gas_limit: 21000, ..Default::default() };
        let raw = TxEnvelope::from(sign(unprotected, &key())).encoded_2718();
        assert_eq!(RecoveredTx::decode_and_recover(&raw, 20200).unwrap_err(), TxError::NotReplayProtected);
        assert!(matches!(RecoveredTx::decode_and_recover(&[0x02, 0xc0, 0x01], 20200), Err(TxError::Malformed(_))));
        assert!(matches!(RecoveredTx::decode_and_recover(&[], 20200), Err(TxError::Malformed(_))));
    }

    #[test]
    fn refuses_high_s_and_trailing_bytes() {
        let tx = TxEip1559 { chain_id: 20200, gas_limit: 21000, ..Default::default() };
        let signed = sign(tx.clone(), &key());
        let sig = signed.signature();
        let order = SECP256K1_HALF_ORDER * U256::from(2) + U256::from(1);
        let flipped = Signature::new(sig.r(), order - sig.s(), !sig.v());
        let raw = TxEnvelope::from(tx.clone().into_signed(flipped)).encoded_2718();
        assert_eq!(
            RecoveredTx::decode_and_recover(&raw, 20200).unwrap_err(),
            TxError::InvalidSignature("signature s value is too high")
        );
        let mut raw = TxEnvelope::from(signed).encoded_2718();
        raw.push(0);
        assert!(matches!(RecoveredTx::decode_and_recover(&raw, 20200), Err(TxError::Malformed(_))));
    }

    #[test]
    fn mutated_and_truncated_transactions_never_panic() {
        let tx = TxEip1559 {
            chain_id: 20200,
            nonce: 9,
            gas_limit: 50_000,
            to: TxKind::Call(Address::repeat_byte(3)),
            input: Bytes::from(vec![0xab; 40]),
            ..Default::default()
        };
        let raw = TxEnvelope::from(sign(tx, &key())).encoded_2718();
        let original = RecoveredTx::decode_and_recover(&raw, 20200).expect("valid");
        let signed_content = original.envelope().signature_hash();
        // Deterministic xorshift so failures reproduce.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..5_000 {
            let mut mutated = raw.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let at = (next() as usize) % mutated.len();
                mutated[at] ^= (next() as u8) | 1;
            }
            let cut = (next() as usize) % (mutated.len() + 1);
            let candidate = if next() % 4 == 0 { &mutated[..cut] } else { &mutated[..] };
            if let Ok(tx) = RecoveredTx::decode_and_recover(candidate, 20200) {
                // What still decodes hashes as itself, and the original sender is recovered only
                // for exactly the content the original sender signed.
                assert_eq!(tx.hash(), keccak256(candidate));
                if tx.sender() == original.sender() {
                    assert_eq!(tx.envelope().signature_hash(), signed_content);
                }
            }
        }
    }
}
