//! The node's protocols.

use std::fmt;

use libp2p::StreamProtocol;

use super::limits::{MAX_CONSENSUS_MESSAGE, MAX_SYNC_REQUEST, MAX_SYNC_RESPONSE, MAX_TX_BATCH};

/// A protocol of the node's network; each runs on its own streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `/bcos/consensus/1`: one opaque consensus message per stream, acknowledged empty.
    Consensus,
    /// `/bcos/txs/1`: one batch of raw transactions per stream, acknowledged empty.
    Transactions,
    /// `/bcos/sync/1`: an opaque block-sync request and its response.
    Sync,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Self; 3] = [Self::Consensus, Self::Transactions, Self::Sync];

    /// The protocol name negotiated on a stream.
    pub fn stream_protocol(self) -> StreamProtocol {
        const CONSENSUS: StreamProtocol = StreamProtocol::new("/bcos/consensus/1");
        const TXS: StreamProtocol = StreamProtocol::new("/bcos/txs/1");
        const SYNC: StreamProtocol = StreamProtocol::new("/bcos/sync/1");
        match self {
            Self::Consensus => CONSENSUS,
            Self::Transactions => TXS,
            Self::Sync => SYNC,
        }
    }

    /// A short, stable label for metrics and logs.
    pub fn label(self) -> &'static str {
        match self {
            Self::Consensus => "consensus",
            Self::Transactions => "txs",
            Self::Sync => "sync",
        }
    }

    /// The largest request the protocol allows.
    pub fn max_request(self) -> usize {
        match self {
            Self::Consensus => MAX_CONSENSUS_MESSAGE,
            Self::Transactions => MAX_TX_BATCH,
            Self::Sync => MAX_SYNC_REQUEST,
        }
    }

    /// The largest response the protocol allows (0: an empty acknowledgement).
    pub fn max_response(self) -> usize {
        match self {
            Self::Consensus | Self::Transactions => 0,
            Self::Sync => MAX_SYNC_RESPONSE,
        }
    }

    /// Whether requests get a response with content (rather than an empty acknowledgement).
    pub fn has_response(self) -> bool {
        self.max_response() > 0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.stream_protocol().as_ref())
    }
}
