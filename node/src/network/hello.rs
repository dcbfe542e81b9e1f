//! The versions a node states in admission, and the two layouts of the admission message.
//!
//! `/bcos/admission/2` carries a hello before the certificate chain:
//!
//! ```text
//! u32 lowest protocol version spoken | u32 highest | u8 length | software version (ASCII)
//! ```
//!
//! all big-endian, the software version being a semantic version of at most
//! [`MAX_SOFTWARE_VERSION_LEN`] bytes (empty: not stated). `/bcos/admission/1`, the first
//! release's protocol, carries the chain alone. A node offers `/2` first and `/1` second, so peers of
//! the first release still negotiate `/1` and read the chain they expect. The [`AdmissionCodec`]
//! turns a `/1` message into the `/2` layout with the hello such a peer implies (protocol 1, no
//! software version), so the rest of the node reads one layout.

use std::io;

use alloy_primitives::Bytes;
use futures::{AsyncRead, AsyncWrite};
use libp2p::{StreamProtocol, request_response};

use super::codec::{Frame, FrameCodec};
use crate::version::{MAX_SOFTWARE_VERSION_LEN, NodeVersion, ProtocolRange, check_software_version};

/// Admission with a hello: this build's protocol, offered first.
pub(crate) const ADMISSION_PROTOCOL: StreamProtocol = StreamProtocol::new("/bcos/admission/2");
/// Admission without a hello, for peers of the first release.
pub(crate) const FIRST_ADMISSION_PROTOCOL: StreamProtocol = StreamProtocol::new("/bcos/admission/1");
/// Largest hello: two versions, the length and the longest software version.
pub(crate) const MAX_HELLO_LEN: usize = 4 + 4 + 1 + MAX_SOFTWARE_VERSION_LEN;

/// What a connected peer stated about its versions in admission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerVersion {
    /// Its software version; `None` for a peer that predates the version exchange.
    pub software: Option<String>,
    /// The protocol version spoken with it: the highest both nodes speak.
    pub protocol: u32,
}

/// A hello as decoded: what a peer says it speaks and runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hello {
    pub(crate) protocol: ProtocolRange,
    pub(crate) software: Option<String>,
}

/// This node's hello.
pub(crate) fn encode_hello(version: &NodeVersion) -> Vec<u8> {
    encode(version.protocol(), version.software())
}

/// The hello that `/bcos/admission/1` implies: the first protocol, no software version.
fn first_release_hello() -> Vec<u8> {
    encode(ProtocolRange::FIRST, "")
}

fn encode(protocol: ProtocolRange, software: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(MAX_HELLO_LEN);
    out.extend_from_slice(&protocol.min.to_be_bytes());
    out.extend_from_slice(&protocol.max.to_be_bytes());
    // Software versions are checked to fit when a NodeVersion is made.
    out.push(u8::try_from(software.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(software.as_bytes());
    out
}

/// Splits a `/bcos/admission/2` message into its hello and the rest (the chain). Refuses a hello
/// that is truncated, names an empty or inverted protocol range, or a software version that is not
/// a semantic version.
pub(crate) fn decode_hello(message: &[u8]) -> Result<(Hello, &[u8]), String> {
    let (min, rest) = message.split_first_chunk::<4>().ok_or("hello truncated")?;
    let (max, rest) = rest.split_first_chunk::<4>().ok_or("hello truncated")?;
    let (len, rest) = rest.split_first().ok_or("hello truncated")?;
    let (software, rest) = rest.split_at_checked(usize::from(*len)).ok_or("hello truncated")?;
    let protocol = ProtocolRange { min: u32::from_be_bytes(*min), max: u32::from_be_bytes(*max) };
    if protocol.min == 0 || protocol.min > protocol.max {
        return Err(format!("protocol range {}-{} is empty", protocol.min, protocol.max));
    }
    let software = if software.is_empty() {
        None
    } else {
        let software = std::str::from_utf8(software).map_err(|_| "software version is not text".to_owned())?;
        check_software_version(software).map_err(|e| e.to_string())?;
        Some(software.to_owned())
    };
    Ok((Hello { protocol, software }, rest))
}

/// The admission protocols' codec: one [`FrameCodec`] frame each way (the response an empty
/// acknowledgement), in the layout of the protocol negotiated (see the module's documentation).
/// Requests are always in the `/2` layout inside the node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AdmissionCodec {
    current: FrameCodec,
    /// For `/1`: a message without the hello.
    first: FrameCodec,
}

impl AdmissionCodec {
    /// A codec for messages of at most `max_request` bytes in the `/2` layout.
    pub(crate) fn new(max_request: usize) -> Self {
        Self {
            current: FrameCodec::new(max_request, 0),
            first: FrameCodec::new(max_request.saturating_sub(MAX_HELLO_LEN), 0),
        }
    }
}

impl request_response::Codec for AdmissionCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Bytes;

    async fn read_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        if *protocol != FIRST_ADMISSION_PROTOCOL {
            return self.current.read_request(protocol, io).await;
        }
        Ok(match self.first.read_request(protocol, io).await? {
            Frame::Data(chain) => Frame::Data(Bytes::from([first_release_hello().as_slice(), &chain].concat())),
            rejected => rejected,
        })
    }

    async fn read_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.current.read_response(protocol, io).await
    }

    async fn write_request<T>(&mut self, protocol: &StreamProtocol, io: &mut T, request: Frame) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            Frame::Data(message) if *protocol == FIRST_ADMISSION_PROTOCOL => {
                let (_, chain) = decode_hello(&message).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                self.first.write_request(protocol, io, Frame::Data(Bytes::copy_from_slice(chain))).await
            }
            request => self.current.write_request(protocol, io, request).await,
        }
    }

    async fn write_response<T>(&mut self, protocol: &StreamProtocol, io: &mut T, response: Bytes) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.current.write_response(protocol, io, response).await
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};
    use request_response::Codec;

    use super::*;
    use crate::{network::codec::FrameError, version::ProtocolRange};

    fn hello(min: u32, max: u32, software: &[u8]) -> Vec<u8> {
        let mut out = [min.to_be_bytes(), max.to_be_bytes()].concat();
        out.push(u8::try_from(software.len()).expect("short"));
        out.extend_from_slice(software);
        out
    }

    fn framed(payload: &[u8]) -> Vec<u8> {
        [&u32::try_from(payload.len()).expect("small").to_be_bytes()[..], payload].concat()
    }

    #[test]
    fn a_hello_round_trips_and_leaves_the_chain() {
        let version = NodeVersion::this_build().reporting("1.4.0-rc.2").expect("valid");
        let message = [encode_hello(&version), b"chain".to_vec()].concat();
        let (decoded, rest) = decode_hello(&message).expect("decodes");
        assert_eq!(decoded, Hello { protocol: ProtocolRange::THIS_BUILD, software: Some("1.4.0-rc.2".into()) });
        assert_eq!(rest, b"chain");
        let first = first_release_hello();
        let (decoded, rest) = decode_hello(&first).expect("decodes");
        assert_eq!((decoded, rest), (Hello { protocol: ProtocolRange::FIRST, software: None }, &[][..]));
    }

    #[test]
    fn malformed_hellos_are_refused() {
        let refused = |message: &[u8]| decode_hello(message).expect_err("refused");
        assert_eq!(refused(&[0, 0, 0, 1, 0, 0]), "hello truncated");
        assert_eq!(refused(&hello(1, 1, b"1.0.0")[..10]), "hello truncated");
        assert!(refused(&hello(0, 1, b"")).contains("is empty"));
        assert!(refused(&hello(2, 1, b"")).contains("is empty"));
        assert_eq!(refused(&hello(1, 1, b"1.0.\xff")), "software version is not text");
        assert!(refused(&hello(1, 1, b"latest")).contains("not a semantic version"));
        assert!(refused(&hello(1, 1, format!("1.0.0-{}", "x".repeat(70)).as_bytes())).contains("longer than"));
    }

    #[test]
    fn the_first_admission_protocol_carries_the_chain_alone() {
        let mut codec = AdmissionCodec::new(100);
        let version = NodeVersion::this_build();
        let message = Frame::Data(Bytes::from([encode_hello(&version), b"chain".to_vec()].concat()));

        let mut first = Cursor::new(Vec::new());
        block_on(codec.write_request(&FIRST_ADMISSION_PROTOCOL, &mut first, message.clone())).expect("writes");
        assert_eq!(first.get_ref(), &framed(b"chain"), "what a first-release peer reads");
        let mut current = Cursor::new(Vec::new());
        block_on(codec.write_request(&ADMISSION_PROTOCOL, &mut current, message.clone())).expect("writes");
        assert_eq!(current.get_ref(), &framed(&[encode_hello(&version), b"chain".to_vec()].concat()));

        fn read(codec: &mut AdmissionCodec, protocol: &StreamProtocol, bytes: Vec<u8>) -> Frame {
            block_on(codec.read_request(protocol, &mut Cursor::new(bytes))).expect("no transport error")
        }
        let lifted = [first_release_hello(), b"chain".to_vec()].concat();
        assert_eq!(read(&mut codec, &FIRST_ADMISSION_PROTOCOL, framed(b"chain")), Frame::Data(Bytes::from(lifted)));
        assert_eq!(read(&mut codec, &ADMISSION_PROTOCOL, current.into_inner()), message);
        // The limit leaves room for the hello a `/1` message is given.
        assert_eq!(
            read(&mut codec, &FIRST_ADMISSION_PROTOCOL, framed(&[0; 100 - MAX_HELLO_LEN + 1])),
            Frame::Rejected(FrameError::Oversize { len: 100 - MAX_HELLO_LEN as u64 + 1, max: 100 - MAX_HELLO_LEN })
        );
    }
}
