//! Features that change execution, each in force from a compatibility version of the chain.
//!
//! Below a feature's version a node executes exactly as a node without the feature (same
//! receipts, gas, logs and state), so nodes with and without it agree on every block until the
//! committee raises the chain's `compatibility_version`; the version in force at a block is read
//! from that block's system config, so every node switches at the same height.

/// A feature gated by the compatibility version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Feature {
    /// The contract versions registry and calls of aliases routed to a version
    /// ([`super::versions`]).
    ContractRouting,
}

impl Feature {
    /// The first compatibility version the feature is in force at.
    pub const fn since(self) -> u32 {
        match self {
            Self::ContractRouting => 2,
        }
    }

    /// Whether the feature is in force on a chain at `compatibility_version`.
    pub const fn enabled(self, compatibility_version: u32) -> bool {
        compatibility_version >= self.since()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_routing_starts_at_version_2() {
        assert!(!Feature::ContractRouting.enabled(1));
        assert!(Feature::ContractRouting.enabled(2));
        assert!(Feature::ContractRouting.enabled(3));
    }
}
