//! What this build supports and what a node says about itself.
//!
//! Three versions, each for its own audience:
//!
//! - the **software version** (`0.1.0`) names the build, for people and the operator. It decides
//!   nothing. [`REPORTED_VERSION_ENV`] overrides the version a node reports, so rollout tests can
//!   run one binary as two releases;
//! - the **protocol version** covers the peer-to-peer messages and their encodings. A build speaks
//!   every version of [`ProtocolRange::THIS_BUILD`], and each peer says in admission which range
//!   it speaks. Two nodes talk if their ranges overlap ([`ProtocolRange::common`]), using the highest
//!   version both speak. A build that raises [`PROTOCOL_VERSION`] keeps [`MIN_PEER_PROTOCOL_VERSION`]
//!   at the previous release's protocol version, so releases N and N+1 interoperate in one chain.
//!   A later release may raise the minimum once no node of release N is left;
//! - the **compatibility version** selects the execution and consensus rules. It lives in the on-chain
//!   system config and only goes up by governance. This build executes the chain up to
//!   [`MAX_COMPATIBILITY_VERSION`]. A feature that changes execution is enabled from the version
//!   that introduced it, so a mixed chain executes identically on every node until the operator,
//!   once every node runs a build that knows the new rules, raises the version. A node asked to
//!   apply a block under a higher version than it knows stops applying blocks instead (see
//!   [`crate::chain::Incompatible`]).

use std::fmt;

/// The highest peer-to-peer protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// The lowest peer-to-peer protocol version this build still speaks, for peers of the previous
/// release.
pub const MIN_PEER_PROTOCOL_VERSION: u32 = 1;
/// The highest chain compatibility version this build can execute. Version 2 enables contract
/// routing (`executor::features::Feature::ContractRouting`).
pub const MAX_COMPATIBILITY_VERSION: u32 = 2;
/// Overrides the software version a node reports, in its status and to its peers. It is meant for
/// rollout tests, where one binary plays two releases. The value must be a semantic version.
pub const REPORTED_VERSION_ENV: &str = "BCOS_REPORTED_VERSION";
/// Longest software version a node reports or accepts from a peer.
pub const MAX_SOFTWARE_VERSION_LEN: usize = 64;

/// Why a version a node was started with is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VersionError {
    /// The software version is not a semantic version.
    #[error("software version {value:?} is not a semantic version such as 1.2.3 or 1.2.3-rc.1: {reason}")]
    Malformed {
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// [`REPORTED_VERSION_ENV`] holds no usable software version.
    #[error("{REPORTED_VERSION_ENV}: {0}")]
    Reported(Box<VersionError>),
    /// The maximum compatibility version asked for is one this build does not implement, or zero.
    #[error(
        "a maximum compatibility version of {requested} is not one this build can run (1 to {MAX_COMPATIBILITY_VERSION})"
    )]
    UnsupportedMaximum {
        /// The maximum asked for.
        requested: u32,
    },
}

/// Checks that `value` is a semantic version of at most [`MAX_SOFTWARE_VERSION_LEN`] bytes.
pub fn check_software_version(value: &str) -> Result<(), VersionError> {
    let malformed = |reason: String| VersionError::Malformed { value: value.to_owned(), reason };
    if value.len() > MAX_SOFTWARE_VERSION_LEN {
        return Err(malformed(format!("longer than {MAX_SOFTWARE_VERSION_LEN} bytes")));
    }
    semver::Version::parse(value).map(drop).map_err(|e| malformed(e.to_string()))
}

/// The protocol versions a node speaks, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolRange {
    /// The lowest.
    pub min: u32,
    /// The highest.
    pub max: u32,
}

impl ProtocolRange {
    /// What this build speaks.
    pub const THIS_BUILD: Self = Self { min: MIN_PEER_PROTOCOL_VERSION, max: PROTOCOL_VERSION };
    /// What a peer that predates the version exchange speaks: the first protocol.
    pub const FIRST: Self = Self { min: 1, max: 1 };

    /// The version two nodes speaking `self` and `other` use: the highest both speak, or `None`
    /// when they share none and cannot talk.
    pub fn common(self, other: Self) -> Option<u32> {
        let version = self.max.min(other.max);
        (version >= self.min.max(other.min)).then_some(version)
    }
}

impl fmt::Display for ProtocolRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.min == self.max { write!(f, "{}", self.min) } else { write!(f, "{}-{}", self.min, self.max) }
    }
}

/// What a node reports about itself: in its status, and to every peer in admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeVersion {
    software: String,
    protocol: ProtocolRange,
    max_compatibility_version: u32,
}

impl NodeVersion {
    /// This build as it is.
    pub fn this_build() -> Self {
        Self {
            software: bcos_sdk::VERSION.to_owned(),
            protocol: ProtocolRange::THIS_BUILD,
            max_compatibility_version: MAX_COMPATIBILITY_VERSION,
        }
    }

    /// This build, reporting the software version of [`REPORTED_VERSION_ENV`] when it is set.
    pub fn from_env() -> Result<Self, VersionError> {
        match std::env::var_os(REPORTED_VERSION_ENV) {
            None => Ok(Self::this_build()),
            Some(value) => {
                Self::this_build().reporting(&value.to_string_lossy()).map_err(|e| VersionError::Reported(Box::new(e)))
            }
        }
    }

    /// The same node reporting `software` as its version.
    pub fn reporting(self, software: &str) -> Result<Self, VersionError> {
        check_software_version(software)?;
        Ok(Self { software: software.to_owned(), ..self })
    }

    /// The same node executing the chain only up to compatibility version `max`. Tests use this
    /// to play a build of an earlier release. A build cannot claim rules it does not implement, so
    /// `max` is at most [`MAX_COMPATIBILITY_VERSION`].
    pub fn with_max_compatibility_version(self, max: u32) -> Result<Self, VersionError> {
        if max == 0 || max > MAX_COMPATIBILITY_VERSION {
            return Err(VersionError::UnsupportedMaximum { requested: max });
        }
        Ok(Self { max_compatibility_version: max, ..self })
    }

    /// The same node speaking the protocol versions `protocol`, as a release before or after this
    /// one would.
    #[cfg(test)]
    pub(crate) fn speaking(self, protocol: ProtocolRange) -> Self {
        Self { protocol, ..self }
    }

    /// The software version reported.
    pub fn software(&self) -> &str {
        &self.software
    }

    /// The protocol versions spoken.
    pub fn protocol(&self) -> ProtocolRange {
        self.protocol
    }

    /// The highest chain compatibility version executed.
    pub fn max_compatibility_version(&self) -> u32 {
        self.max_compatibility_version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_ranges_talk_in_the_highest_version_both_speak() {
        let range = |min, max| ProtocolRange { min, max };
        // Releases N (1) and N+1 (speaking 1 and 2) interoperate, and use 1 between them.
        assert_eq!(range(1, 1).common(range(1, 2)), Some(1));
        assert_eq!(range(1, 2).common(range(1, 1)), Some(1));
        assert_eq!(range(1, 2).common(range(2, 3)), Some(2));
        assert_eq!(range(2, 3).common(range(1, 2)), Some(2));
        assert_eq!(range(1, 2).common(range(1, 2)), Some(2));
        // N+2 dropped protocol 1: a node of N cannot stay in the chain.
        assert_eq!(range(1, 1).common(range(2, 3)), None);
        assert_eq!(range(2, 3).common(range(1, 1)), None);
        assert_eq!(range(3, 3).common(range(1, 2)), None);
        assert_eq!(ProtocolRange::THIS_BUILD.common(ProtocolRange::FIRST), Some(1));
        assert_eq!(range(1, 2).to_string(), "1-2");
        assert_eq!(range(2, 2).to_string(), "2");
    }

    #[test]
    fn reported_versions_must_be_semantic_versions() {
        let build = NodeVersion::this_build();
        assert_eq!(build.software(), bcos_sdk::VERSION);
        for good in ["0.1.0", "1.2.3", "10.20.30", "1.2.3-rc.1", "1.2.3+build.7", "2.0.0-alpha.1+sha.5114f85"] {
            assert_eq!(build.clone().reporting(good).expect(good).software(), good);
        }
        for bad in ["", "1", "1.2", "v1.2.3", "1.2.3.4", "01.2.3", "1.2.3-", "1.2.3 ", "1.2.x", "1.2.3-é"] {
            let error = build.clone().reporting(bad).expect_err(bad);
            assert!(
                matches!(&error, VersionError::Malformed { value, .. } if value == bad)
                    && error.to_string().contains("is not a semantic version"),
                "{bad}: {error}"
            );
        }
        let long = format!("1.2.3-{}", "a".repeat(MAX_SOFTWARE_VERSION_LEN));
        assert!(build.reporting(&long).expect_err("too long").to_string().contains("longer than 64 bytes"));
    }

    #[test]
    fn the_maximum_compatibility_version_can_only_be_lowered() {
        let build = NodeVersion::this_build();
        assert_eq!(build.max_compatibility_version(), MAX_COMPATIBILITY_VERSION);
        let old = build.clone().with_max_compatibility_version(1).expect("lower");
        assert_eq!((old.max_compatibility_version(), old.software()), (1, bcos_sdk::VERSION));
        for unsupported in [0, MAX_COMPATIBILITY_VERSION + 1] {
            assert_eq!(
                build.clone().with_max_compatibility_version(unsupported),
                Err(VersionError::UnsupportedMaximum { requested: unsupported })
            );
        }
    }
}
