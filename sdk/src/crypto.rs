//! Keys: the node's Ed25519 identity and secp256k1 account keys that sign transactions.
//!
//! Key files hold the secret as hex, are created with mode 0600, and are never overwritten.

use std::{fs, io::Write, path::Path};

use alloy_consensus::{SignableTransaction, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, Signature};
use ed25519_dalek::{Signer, Verifier};
use secp256k1::{Message, SECP256K1, SecretKey};

use crate::types::tx::public_key_to_address;

/// A key file that could not be read, written or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// I/O on the key file failed.
    #[error("{file}: {source}")]
    Io {
        /// The key file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file exists already; keys are never regenerated.
    #[error("{0}: already exists; refusing to overwrite a key")]
    Exists(String),
    /// The file does not hold a 32-byte hex secret.
    #[error("{0}: not a 32-byte hex secret key")]
    Malformed(String),
}

/// A node's Ed25519 key: its libp2p identity, its consensus signing key and its node id.
#[derive(Clone)]
pub struct NodeKey {
    signing: ed25519_dalek::SigningKey,
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeKey").field("node_id", &self.node_id()).finish_non_exhaustive()
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self { signing: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng) }
    }

    /// The key with this 32-byte secret.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self { signing: ed25519_dalek::SigningKey::from_bytes(&secret) }
    }

    /// The 32-byte secret.
    pub fn secret(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Loads a key file.
    pub fn load(file: &Path) -> Result<Self, KeyError> {
        read_secret(file).map(Self::from_secret)
    }

    /// Writes the key to a new file with mode 0600; refuses to replace an existing file.
    pub fn save_new(&self, file: &Path) -> Result<(), KeyError> {
        write_secret(file, &self.secret())
    }

    /// The node id: the Ed25519 public key.
    pub fn node_id(&self) -> B256 {
        B256::from(self.signing.verifying_key().to_bytes())
    }

    /// Signs a 32-byte message.
    pub fn sign(&self, message: &B256) -> Bytes {
        Bytes::copy_from_slice(&self.signing.sign(message.as_slice()).to_bytes())
    }
}

/// Checks an Ed25519 signature by `node_id` over `message`.
pub fn verify_node_signature(node_id: &B256, message: &B256, signature: &[u8]) -> bool {
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(&node_id.0) else { return false };
    let Ok(signature) = ed25519_dalek::Signature::from_slice(signature) else { return false };
    key.verify(message.as_slice(), &signature).is_ok()
}

/// A secp256k1 account key that signs Ethereum transactions (with libsecp256k1).
#[derive(Clone)]
pub struct AccountKey {
    secret: SecretKey,
    address: Address,
}

impl std::fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountKey").field("address", &self.address).finish_non_exhaustive()
    }
}

impl AccountKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        use rand::RngCore;
        loop {
            let mut secret = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            if let Some(key) = Self::from_secret(secret) {
                return key;
            }
        }
    }

    /// The key with this 32-byte secret, if it is a valid scalar.
    pub fn from_secret(secret: [u8; 32]) -> Option<Self> {
        SecretKey::from_byte_array(secret).ok().map(Self::from_secret_key)
    }

    fn from_secret_key(secret: SecretKey) -> Self {
        let address = public_key_to_address(&secret.public_key(SECP256K1));
        Self { secret, address }
    }

    /// Loads a key file.
    pub fn load(file: &Path) -> Result<Self, KeyError> {
        let secret = read_secret(file)?;
        Self::from_secret(secret).ok_or_else(|| KeyError::Malformed(file.display().to_string()))
    }

    /// Writes the key to a new file with mode 0600; refuses to replace an existing file.
    pub fn save_new(&self, file: &Path) -> Result<(), KeyError> {
        write_secret(file, &self.secret.secret_bytes())
    }

    /// The 32-byte secret.
    pub fn secret(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// The account's address.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a transaction and returns its EIP-2718 encoding, ready for `eth_sendRawTransaction`.
    pub fn sign_transaction<T>(&self, tx: T) -> Bytes
    where
        T: SignableTransaction<Signature>,
        TxEnvelope: From<alloy_consensus::Signed<T>>,
    {
        let hash = tx.signature_hash();
        let (recovery_id, compact) =
            SECP256K1.sign_ecdsa_recoverable(Message::from_digest(hash.0), &self.secret).serialize_compact();
        let signature = Signature::from_bytes_and_parity(&compact, i32::from(recovery_id) == 1);
        Bytes::from(TxEnvelope::from(tx.into_signed(signature)).encoded_2718())
    }
}

fn read_secret(file: &Path) -> Result<[u8; 32], KeyError> {
    let text = fs::read_to_string(file).map_err(|source| KeyError::Io { file: file.display().to_string(), source })?;
    let text = text.trim();
    let bytes = hex::decode(text.strip_prefix("0x").unwrap_or(text))
        .map_err(|_| KeyError::Malformed(file.display().to_string()))?;
    bytes.try_into().map_err(|_| KeyError::Malformed(file.display().to_string()))
}

fn write_secret(file: &Path, secret: &[u8; 32]) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let name = file.display().to_string();
    let mut out = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(file).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists(name.clone())
        } else {
            KeyError::Io { file: name.clone(), source }
        }
    })?;
    out.write_all(hex::encode(secret).as_bytes())
        .and_then(|()| out.sync_all())
        .map_err(|source| KeyError::Io { file: name, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::RecoveredTx;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn node_key_file_is_private_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("node.key");
        let key = NodeKey::generate();
        key.save_new(&file).expect("saved");
        assert_eq!(fs::metadata(&file).expect("meta").permissions().mode() & 0o777, 0o600);
        assert!(matches!(NodeKey::generate().save_new(&file), Err(KeyError::Exists(_))));
        assert_eq!(NodeKey::load(&file).expect("loads").node_id(), key.node_id());
        fs::write(dir.path().join("bad.key"), "zz").expect("write");
        assert!(matches!(NodeKey::load(&dir.path().join("bad.key")), Err(KeyError::Malformed(_))));
    }

    #[test]
    fn node_signatures_verify_only_for_signer_and_message() {
        let key = NodeKey::generate();
        let message = B256::repeat_byte(3);
        let signature = key.sign(&message);
        assert!(verify_node_signature(&key.node_id(), &message, &signature));
        assert!(!verify_node_signature(&key.node_id(), &B256::repeat_byte(4), &signature));
        assert!(!verify_node_signature(&NodeKey::generate().node_id(), &message, &signature));
        assert!(!verify_node_signature(&key.node_id(), &message, &signature[1..]));
    }

    #[test]
    fn account_key_signs_recoverable_transactions() {
        let key = AccountKey::generate();
        let tx = alloy_consensus::TxEip1559 { chain_id: 5, gas_limit: 21_000, ..Default::default() };
        let raw = key.sign_transaction(tx);
        assert_eq!(RecoveredTx::decode_and_recover(&raw, 5).expect("valid").sender(), key.address());
    }
}
