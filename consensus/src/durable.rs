//! The engines' durable state on disk: framing, bounds and the checks both engines share.
//!
//! A durable state is `tag ‖ version ‖ RLP(record)`: one byte naming the engine ([`PBFT_TAG`],
//! [`RAFT_TAG`]), one byte for the record's format version ([`VERSION`]), then exactly one RLP
//! list, the engine's record, and nothing after it. The tag and version are read before the
//! record, so the state of the other engine, or of a newer build, is refused by name rather than
//! as garbage. Decoding caps the input at [`MAX_DURABLE_BYTES`], rejects trailing bytes and
//! never panics: the bytes come from a disk, which can be damaged.

use alloy_primitives::{B256, Bytes, keccak256};
use alloy_rlp::{Decodable, Encodable};

use crate::{
    EngineKind, Proposal, RestoreError, Validators,
    pbft::{MAX_MESSAGE_BYTES, MAX_TRANSACTIONS},
};

/// Largest durable state [`Engine::restore`](crate::Engine::restore) accepts, in bytes: two
/// blocks of at most a message's size (PBFT keeps the block it voted for and the block it is
/// prepared on) and room for a certificate.
pub const MAX_DURABLE_BYTES: usize = 2 * MAX_MESSAGE_BYTES + 1024 * 1024;

/// Leading byte of PBFT's durable state (`'P'`).
pub(crate) const PBFT_TAG: u8 = b'P';
/// Leading byte of Raft's durable state (`'R'`).
pub(crate) const RAFT_TAG: u8 = b'R';
/// Format version of both records.
pub(crate) const VERSION: u8 = 1;

fn tag(kind: EngineKind) -> u8 {
    match kind {
        EngineKind::Pbft => PBFT_TAG,
        EngineKind::Raft => RAFT_TAG,
    }
}

fn kind_of(tag: u8) -> Option<EngineKind> {
    match tag {
        PBFT_TAG => Some(EngineKind::Pbft),
        RAFT_TAG => Some(EngineKind::Raft),
        _ => None,
    }
}

/// Frames `record` as `kind`'s durable state.
pub(crate) fn encode(kind: EngineKind, record: &impl Encodable) -> Bytes {
    let mut out = Vec::with_capacity(2 + record.length());
    out.push(tag(kind));
    out.push(VERSION);
    record.encode(&mut out);
    out.into()
}

/// Reads `kind`'s record from `bytes`: size, tag and version first, then exactly one RLP record.
pub(crate) fn decode<T: Decodable>(bytes: &[u8], kind: EngineKind) -> Result<T, RestoreError> {
    if bytes.len() > MAX_DURABLE_BYTES {
        return Err(RestoreError::TooLarge { len: bytes.len(), max: MAX_DURABLE_BYTES });
    }
    let [tag, version, body @ ..] = bytes else { return Err(RestoreError::Truncated(bytes.len())) };
    let found = kind_of(*tag).ok_or(RestoreError::UnknownEngine(*tag))?;
    if found != kind {
        return Err(RestoreError::WrongEngine { expected: kind, found });
    }
    if *version != VERSION {
        return Err(RestoreError::UnsupportedVersion { engine: kind, version: *version });
    }
    let mut buf = body;
    let record = T::decode(&mut buf).map_err(RestoreError::Malformed)?;
    if !buf.is_empty() {
        return Err(RestoreError::TrailingBytes(buf.len()));
    }
    Ok(record)
}

/// An optional field, stored as a list of zero or one item.
pub(crate) fn at_most_one<T>(items: Vec<T>, what: &'static str) -> Result<Option<T>, RestoreError> {
    if items.len() > 1 {
        return Err(RestoreError::TooMany { what, got: items.len(), max: 1 });
    }
    Ok(items.into_iter().next())
}

/// A stored block: for `height`, and within the protocol's transaction limit.
pub(crate) fn check_block(proposal: &Proposal, height: u64) -> Result<(), RestoreError> {
    let got = proposal.transactions.len();
    if got > MAX_TRANSACTIONS {
        return Err(RestoreError::TooMany { what: "block transactions", got, max: MAX_TRANSACTIONS });
    }
    if proposal.header.number != height {
        return Err(RestoreError::Inconsistent("a stored block is for another height"));
    }
    Ok(())
}

/// Names a node set: Keccak-256 of its node ids in canonical order.
pub(crate) fn node_set_digest(validators: &Validators) -> B256 {
    let ids: Vec<u8> = validators.nodes().iter().flat_map(|id| id.0).collect();
    keccak256(ids)
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng, rngs::SmallRng};

    use super::*;
    use crate::{
        Engine, EngineConfig,
        pbft::Pbft,
        raft::Raft,
        sim::{Network, SimNode},
    };

    /// The durable state node 0 of a 4-node network of `E` holds after three heights.
    fn stored<E: Engine + 'static>(
        quorum_of: fn(&Validators) -> usize,
        make: fn(EngineConfig) -> E,
    ) -> (Network<E>, Bytes)
    where
        E::Message: Clone,
    {
        let mut net = Network::new(4, 7, 1000, quorum_of, make);
        net.run_until(60_000, 50, |net| net.heights().iter().all(|&h| h >= 3)).expect("progress");
        let bytes = net.nodes[0].durable.clone().expect("node 0 stored its state");
        (net, bytes)
    }

    /// A fresh engine for `node`, as its driver builds it at start-up.
    fn fresh<E: Engine>(node: &SimNode<E>, validators: &Validators, make: fn(EngineConfig) -> E) -> E {
        make(EngineConfig {
            key: node.key.clone(),
            validators: validators.clone(),
            height: node.chain.len() as u64 + 1,
            timeout_ms: 1000,
            now_ms: 0,
        })
    }

    #[test]
    fn one_engines_state_is_refused_by_the_other_by_name() {
        let (pbft_net, pbft_bytes) = stored(Validators::bft_quorum, Pbft::new);
        let (raft_net, raft_bytes) = stored(Validators::majority, Raft::new);
        assert_eq!((pbft_bytes[0], raft_bytes[0], pbft_bytes[1], raft_bytes[1]), (b'P', b'R', VERSION, VERSION));

        let mut raft = fresh(&raft_net.nodes[0], &raft_net.validators, Raft::new);
        let error = raft.restore(&pbft_bytes).expect_err("refused");
        assert_eq!(error, RestoreError::WrongEngine { expected: EngineKind::Raft, found: EngineKind::Pbft });
        assert!(!error.is_corrupt());
        assert_eq!(error.to_string(), "durable state of the PBFT engine given to the Raft engine");
        let mut pbft = fresh(&pbft_net.nodes[0], &pbft_net.validators, Pbft::new);
        let error = pbft.restore(&raft_bytes).expect_err("refused");
        assert_eq!(error, RestoreError::WrongEngine { expected: EngineKind::Pbft, found: EngineKind::Raft });

        // Each engine takes its own.
        fresh(&raft_net.nodes[0], &raft_net.validators, Raft::new).restore(&raft_bytes).expect("restores");
        fresh(&pbft_net.nodes[0], &pbft_net.validators, Pbft::new).restore(&pbft_bytes).expect("restores");
    }

    #[test]
    fn oversize_input_is_refused_before_it_is_read() {
        let mut huge = vec![0u8; MAX_DURABLE_BYTES + 1];
        huge[0] = RAFT_TAG;
        huge[1] = VERSION;
        let error = decode::<u64>(&huge, EngineKind::Raft).expect_err("refused");
        assert_eq!(error, RestoreError::TooLarge { len: MAX_DURABLE_BYTES + 1, max: MAX_DURABLE_BYTES });
        assert!(error.is_corrupt());
    }

    /// Flips, drops, inserts and truncates bytes of real states at random: restoring never
    /// panics, and an engine that accepts damaged bytes still runs.
    #[test]
    fn randomly_damaged_state_never_panics() {
        fn damage<E: Engine + 'static>(net: &Network<E>, bytes: &[u8], make: fn(EngineConfig) -> E, seed: u64) -> usize
        where
            E::Message: Clone,
        {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut refused = 0;
            for _ in 0..1500 {
                let mut damaged = bytes.to_vec();
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..damaged.len().max(1));
                    match rng.gen_range(0..4) {
                        0 if !damaged.is_empty() => damaged[at] ^= 1 << rng.gen_range(0..8),
                        1 if !damaged.is_empty() => {
                            damaged.remove(at);
                        }
                        2 => damaged.insert(at.min(damaged.len()), rng.r#gen()),
                        _ => damaged.truncate(at),
                    }
                }
                let mut engine = fresh(&net.nodes[0], &net.validators, make);
                match engine.restore(&damaged) {
                    Ok(()) => {
                        engine.tick(5_000);
                        let _ = engine.ready();
                    }
                    Err(_) => refused += 1,
                }
            }
            refused
        }
        let (pbft_net, pbft_bytes) = stored(Validators::bft_quorum, Pbft::new);
        let (raft_net, raft_bytes) = stored(Validators::majority, Raft::new);
        // Most damage is caught (what is not lands in fields nothing cross-checks, such as a
        // transaction's bytes, and is as good as any other restored state).
        assert!(damage(&pbft_net, &pbft_bytes, Pbft::new, 1) > 1000);
        assert!(damage(&raft_net, &raft_bytes, Raft::new, 2) > 1000);
    }
}
