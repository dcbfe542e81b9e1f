//! Node ids and libp2p peer ids.
//!
//! A node's Ed25519 key is its libp2p identity. The node id is the 32-byte Ed25519 public key;
//! the libp2p [`PeerId`] of an Ed25519 key is the *identity* multihash (code `0x00`) of the
//! protobuf-encoded public key (36 bytes, under libp2p's 42-byte inlining bound), so each can be
//! computed from the other without a table.

use bcos_sdk::crypto::NodeKey;
use libp2p::{PeerId, identity};

use super::{NetworkError, NodeId};

/// The multihash code of the identity hash, which inlines small public keys into peer ids.
const IDENTITY_MULTIHASH: u64 = 0x00;

/// The libp2p keypair of a node key.
pub fn keypair(key: &NodeKey) -> Result<identity::Keypair, NetworkError> {
    let secret = identity::ed25519::SecretKey::try_from_bytes(key.secret())
        .map_err(|e| NetworkError::InvalidKey(e.to_string()))?;
    Ok(identity::Keypair::from(identity::ed25519::Keypair::from(secret)))
}

/// The peer id of a node id; `None` if the node id is not a valid Ed25519 public key.
pub fn peer_id_of(node: &NodeId) -> Option<PeerId> {
    let key = identity::ed25519::PublicKey::try_from_bytes(node.as_slice()).ok()?;
    Some(identity::PublicKey::from(key).to_peer_id())
}

/// The node id of a peer id; `None` unless it inlines an Ed25519 public key.
pub fn node_id_of(peer: &PeerId) -> Option<NodeId> {
    let multihash = peer.as_ref();
    if multihash.code() != IDENTITY_MULTIHASH {
        return None;
    }
    let key = identity::PublicKey::try_decode_protobuf(multihash.digest()).ok()?;
    let key = key.try_into_ed25519().ok()?;
    Some(NodeId::from(key.to_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_and_peer_ids_correspond() {
        let key = NodeKey::generate();
        let peer = keypair(&key).expect("ed25519").public().to_peer_id();
        assert_eq!(peer.as_ref().code(), IDENTITY_MULTIHASH, "ed25519 peer ids inline the key");
        assert_eq!(peer_id_of(&key.node_id()), Some(peer));
        assert_eq!(node_id_of(&peer), Some(key.node_id()));
    }

    #[test]
    fn foreign_ids_have_no_node_id() {
        // A hashed (sha2-256) peer id, as RSA keys get.
        let hashed =
            PeerId::from_multihash(libp2p::multihash::Multihash::wrap(0x12, &[7u8; 32]).expect("fits in 64 bytes"))
                .expect("sha2-256 peer id");
        assert_eq!(node_id_of(&hashed), None);
        // An identity multihash that is not a protobuf public key.
        let garbage = PeerId::from_multihash(libp2p::multihash::Multihash::wrap(0x00, &[1u8; 20]).expect("fits"))
            .expect("inline peer id");
        assert_eq!(node_id_of(&garbage), None);
    }

    #[test]
    fn invalid_node_ids_have_no_peer_id() {
        // Not every 32-byte string is a point on the curve: find one that is not.
        let invalid = (0u8..=255)
            .map(NodeId::repeat_byte)
            .find(|id| identity::ed25519::PublicKey::try_from_bytes(id.as_slice()).is_err())
            .expect("some byte pattern is not a curve point");
        assert_eq!(peer_id_of(&invalid), None);
    }
}
