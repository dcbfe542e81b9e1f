//! The wire format of every protocol: one length-prefixed frame per stream and direction.
//!
//! A frame is a big-endian `u32` length followed by that many payload bytes, after which the
//! writer closes its half of the stream. The reader checks the length against the protocol's
//! maximum before reading anything else, grows its buffer only by what arrives, and rejects a
//! stream that ends early or carries bytes after the frame.
//!
//! Requests that cannot be decoded are not turned into I/O errors: the request/response layer
//! reports those without the sending peer. They decode to [`Frame::Rejected`] instead, so the
//! network task learns who sent them, counts them and drops them.

use std::io;

use alloy_primitives::Bytes;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{StreamProtocol, request_response};

use super::limits::{LENGTH_PREFIX_BYTES, READ_CHUNK_BYTES};

/// Why a frame from a peer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced length exceeds the protocol's limit; nothing beyond the prefix was read.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    Oversize {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The stream ended inside the length prefix or the payload.
    #[error("stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes the frame should have had (prefix or payload).
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// The stream carried more bytes after the frame.
    #[error("trailing bytes after the frame")]
    TrailingData,
    /// The stream ended before any byte of a frame: the peer sent no answer.
    #[error("stream closed without a frame")]
    Empty,
}

impl FrameError {
    /// Whether the frame shows the peer misbehaving (rather than merely not answering).
    pub fn is_bad_peer(&self) -> bool {
        !matches!(self, Self::Empty)
    }

    /// A short, stable label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Oversize { .. } => "oversize",
            Self::Truncated { .. } | Self::TrailingData => "malformed",
            Self::Empty => "empty",
        }
    }

    /// The frame error carried by an I/O error from the codec, if any.
    pub(crate) fn from_io(error: &io::Error) -> Option<&Self> {
        error.get_ref().and_then(|inner| inner.downcast_ref::<Self>())
    }
}

impl From<FrameError> for io::Error {
    fn from(error: FrameError) -> Self {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

/// A received request: its payload, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Frame {
    /// A well-formed frame within the limit.
    Data(Bytes),
    /// A frame refused while reading; never written.
    Rejected(FrameError),
}

/// Reads one frame of at most `max` bytes and checks the stream ends after it.
///
/// `Ok(Err(_))` is a peer's fault, `Err(_)` a transport failure.
pub(crate) async fn read_frame<T>(io: &mut T, max: usize) -> io::Result<Result<Bytes, FrameError>>
where
    T: AsyncRead + Unpin + Send,
{
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let got = read_up_to(io, &mut prefix).await?;
    if got == 0 {
        return Ok(Err(FrameError::Empty));
    }
    if got < LENGTH_PREFIX_BYTES {
        return Ok(Err(FrameError::Truncated { expected: LENGTH_PREFIX_BYTES, got }));
    }
    let len = u32::from_be_bytes(prefix);
    let Ok(len_usize) = usize::try_from(len) else {
        return Ok(Err(FrameError::Oversize { len: u64::from(len), max }));
    };
    if len_usize > max {
        return Ok(Err(FrameError::Oversize { len: u64::from(len), max }));
    }
    let mut payload = Vec::with_capacity(len_usize.min(READ_CHUNK_BYTES));
    (&mut *io).take(u64::from(len)).read_to_end(&mut payload).await?;
    if payload.len() < len_usize {
        return Ok(Err(FrameError::Truncated { expected: len_usize, got: payload.len() }));
    }
    let mut extra = [0u8; 1];
    if read_up_to(io, &mut extra).await? != 0 {
        return Ok(Err(FrameError::TrailingData));
    }
    Ok(Ok(Bytes::from(payload)))
}

/// Fills `buf` until it is full or the stream ends; returns the bytes read.
async fn read_up_to<T>(io: &mut T, buf: &mut [u8]) -> io::Result<usize>
where
    T: AsyncRead + Unpin + Send,
{
    let mut filled = 0;
    while let Some(rest) = buf.get_mut(filled..) {
        if rest.is_empty() {
            break;
        }
        let n = io.read(rest).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// Writes one frame; refuses (as `InvalidInput`) a payload over `max`.
pub(crate) async fn write_frame<T>(io: &mut T, payload: &[u8], max: usize) -> io::Result<()>
where
    T: AsyncWrite + Unpin + Send,
{
    let len = u32::try_from(payload.len()).ok().filter(|_| payload.len() <= max).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidInput, FrameError::Oversize { len: payload.len() as u64, max })
    })?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(payload).await?;
    io.flush().await
}

/// The request/response codec of one protocol: opaque frames with per-direction size limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameCodec {
    max_request: usize,
    max_response: usize,
}

impl FrameCodec {
    /// A codec accepting requests up to `max_request` and responses up to `max_response` bytes.
    pub(crate) fn new(max_request: usize, max_response: usize) -> Self {
        Self { max_request, max_response }
    }
}

impl request_response::Codec for FrameCodec {
    type Protocol = StreamProtocol;
    type Request = Frame;
    type Response = Bytes;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Frame>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(match read_frame(io, self.max_request).await? {
            Ok(payload) => Frame::Data(payload),
            Err(error) => Frame::Rejected(error),
        })
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Bytes>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_frame(io, self.max_response).await?.map_err(io::Error::from)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, request: Frame) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        match request {
            Frame::Data(payload) => write_frame(io, &payload, self.max_request).await,
            Frame::Rejected(error) => Err(io::Error::new(io::ErrorKind::InvalidInput, error)),
        }
    }

    async fn write_response<T>(&mut self, _: &StreamProtocol, io: &mut T, response: Bytes) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response, self.max_response).await
    }
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};

    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(payload.len()).expect("small").to_be_bytes().to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn read(bytes: Vec<u8>, max: usize) -> Result<Bytes, FrameError> {
        block_on(read_frame(&mut Cursor::new(bytes), max)).expect("no transport error")
    }

    #[test]
    fn round_trip() {
        let mut out = Cursor::new(Vec::new());
        block_on(write_frame(&mut out, b"hello", 5)).expect("writes");
        assert_eq!(out.get_ref(), &frame(b"hello"));
        assert_eq!(read(out.into_inner(), 5), Ok(Bytes::from_static(b"hello")));
        assert_eq!(read(frame(b""), 0), Ok(Bytes::new()), "an empty frame is valid");
    }

    #[test]
    fn oversize_is_refused_from_the_prefix_alone() {
        // Only the prefix: a reader that tried to read the payload would see it truncated.
        let prefix = u32::MAX.to_be_bytes().to_vec();
        assert_eq!(read(prefix, 1024), Err(FrameError::Oversize { len: u64::from(u32::MAX), max: 1024 }));
        assert_eq!(read(frame(&[0; 6]), 5), Err(FrameError::Oversize { len: 6, max: 5 }));
    }

    #[test]
    fn truncated_trailing_and_empty_streams() {
        assert_eq!(read(Vec::new(), 10), Err(FrameError::Empty));
        assert_eq!(read(vec![0, 0], 10), Err(FrameError::Truncated { expected: 4, got: 2 }));
        let mut short = frame(b"abcdef");
        short.truncate(7);
        assert_eq!(read(short, 10), Err(FrameError::Truncated { expected: 6, got: 3 }));
        let mut long = frame(b"abc");
        long.push(0);
        assert_eq!(read(long, 10), Err(FrameError::TrailingData));
    }

    #[test]
    fn writer_refuses_oversize() {
        let mut out = Cursor::new(Vec::new());
        let error = block_on(write_frame(&mut out, &[0; 11], 10)).expect_err("too big");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(FrameError::from_io(&error), Some(&FrameError::Oversize { len: 11, max: 10 }));
        assert!(out.get_ref().is_empty(), "nothing written");
    }

    #[test]
    fn codec_maps_peer_faults() {
        use request_response::Codec;
        const PROTOCOL: StreamProtocol = StreamProtocol::new("/test/1");
        let mut codec = FrameCodec::new(4, 2);
        let request = block_on(codec.read_request(&PROTOCOL, &mut Cursor::new(frame(b"toolong"))));
        assert_eq!(request.expect("peer faults are frames"), Frame::Rejected(FrameError::Oversize { len: 7, max: 4 }));
        let response = block_on(codec.read_response(&PROTOCOL, &mut Cursor::new(frame(b"abc"))));
        let error = response.expect_err("oversized response");
        assert_eq!(FrameError::from_io(&error), Some(&FrameError::Oversize { len: 3, max: 2 }));
    }
}
