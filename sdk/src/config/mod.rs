//! `genesis.yaml` and `node.yaml`: schemas, loading and validation.
//!
//! Loading never panics: a missing file, bad YAML, an unknown or mistyped field, or a value out of
//! range gives a [`ConfigError`] naming the file and the field.

mod genesis;
mod node;

use std::path::{Path, PathBuf};

pub use genesis::{Committee, ConsensusMode, Genesis, GenesisAccount, Permissions, SystemConfig};
pub use node::{
    GrpcConfig, MAX_NODE_ADDRESS, MetricsConfig, NodeConfig, P2pConfig, PeerAddress, RpcConfig, RpcTlsConfig,
    StorageConfig, TlsFilesError, TxPoolConfig, parse_node_address,
};

/// A configuration file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML for its schema, or a value is invalid.
    #[error("{file}: {field}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Dotted path of the offending field (`.` for the document itself).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be written.
    #[error("{file}: cannot write: {source}")]
    Write {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A field-level problem found by validation, before the file name is known.
#[derive(Debug)]
pub(crate) struct FieldError {
    pub(crate) field: &'static str,
    pub(crate) message: String,
}

impl FieldError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}

/// Reads and parses a YAML file, reporting the path of the first offending field.
pub(crate) fn load_yaml<T: serde::de::DeserializeOwned>(file: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read { file: file.to_owned(), source })?;
    parse_yaml(file, &text)
}

pub(crate) fn parse_yaml<T: serde::de::DeserializeOwned>(file: &Path, text: &str) -> Result<T, ConfigError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // serde_yaml already prefixes nested errors with the path; keep it once.
        let message = message.strip_prefix(&format!("{path}: ")).map(str::to_owned).unwrap_or(message);
        ConfigError::Invalid { file: file.to_owned(), field: path, message }
    })
}

pub(crate) fn write_yaml<T: serde::Serialize>(file: &Path, value: &T) -> Result<(), ConfigError> {
    let text = to_yaml(file, value)?;
    std::fs::write(file, text).map_err(|source| ConfigError::Write { file: file.to_owned(), source })
}

pub(crate) fn to_yaml<T: serde::Serialize>(file: &Path, value: &T) -> Result<String, ConfigError> {
    serde_yaml::to_string(value)
        .map_err(|e| ConfigError::Write { file: file.to_owned(), source: std::io::Error::other(e) })
}

pub(crate) fn invalid(file: &Path, error: FieldError) -> ConfigError {
    ConfigError::Invalid { file: file.to_owned(), field: error.field.to_owned(), message: error.message }
}
