//! How a connection opens: its first bytes are read into one buffer (under the caller's header
//! deadline) until they tell an HTTP/2 preface, a plain stream request, or any other complete
//! HTTP/1 head; what was read is handed on, so nothing is read twice or peeked at.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::http::events_h1::{parse_head, ParsedHead};

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What a typical head fits in; the buffer doubles up to `events_h1::MAX_HEAD`.
pub const FIRST_READ: usize = 1024;

pub enum Opening {
    /// A plain `GET /v1/events`, for `events_h1`; the buffer is gone.
    Stream { uri: Uri, headers: HeaderMap },
    /// HTTP/1 for hyper: a complete head (or one hyper will refuse), and what followed it.
    Http1(Bytes),
    /// HTTP/2 with prior knowledge: the preface and what followed it.
    Http2(Bytes),
}

/// Reads until the connection's opening is known. An error when it closes first.
pub async fn read_opening(tcp: &mut TcpStream) -> io::Result<Opening> {
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        if tcp.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(opening) = classify(&mut buf) {
            return Ok(opening);
        }
    }
}

/// What the bytes read so far (`buf`, filled up to its capacity by each read) tell: the
/// opening, which takes them, or `None` when more are needed, with room made for them. The
/// buffer doubles from [`FIRST_READ`] up to `events_h1::MAX_HEAD`, where every head is told.
pub fn classify(buf: &mut Vec<u8>) -> Option<Opening> {
    if buf.starts_with(H2_PREFACE) {
        return Some(Opening::Http2(std::mem::take(buf).into()));
    }
    if !H2_PREFACE.starts_with(buf) {
        match parse_head(buf) {
            ParsedHead::Partial => {}
            ParsedHead::Stream { uri, headers } => return Some(Opening::Stream { uri, headers }),
            ParsedHead::Other => return Some(Opening::Http1(std::mem::take(buf).into())),
        }
    }
    if buf.len() == buf.capacity() {
        buf.reserve(buf.len().max(FIRST_READ));
    }
    None
}

/// A connection whose first bytes were already read: hyper reads those first.
pub struct Rewind {
    read: Option<Bytes>,
    io: TokioIo<TcpStream>,
}

impl Rewind {
    pub fn new(read: Bytes, tcp: TcpStream) -> Rewind {
        Rewind {
            read: Some(read).filter(|r| !r.is_empty()),
            io: TokioIo::new(tcp),
        }
    }
}

impl Read for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(mut read) = self.read.take() {
            let n = read.len().min(buf.remaining());
            buf.put_slice(&read.split_to(n));
            if !read.is_empty() {
                self.read = Some(read);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// The opening read by the server from what a client wrote in `pieces`.
    async fn opening_of(pieces: &[&[u8]]) -> io::Result<Opening> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        for piece in pieces {
            client.write_all(piece).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        client.shutdown().await.unwrap();
        read_opening(&mut server).await
    }

    #[tokio::test]
    async fn the_preface_in_pieces_opens_http2_with_what_followed() {
        let Opening::Http2(read) = opening_of(&[b"PRI * HT", b"TP/2.0\r\n\r\nSM\r\n\r\nxy"])
            .await
            .unwrap()
        else {
            panic!("HTTP/2")
        };
        assert_eq!(&read[..], b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nxy");
    }

    #[tokio::test]
    async fn a_stream_head_in_pieces_is_a_stream_and_others_go_to_hyper_whole() {
        let stream = opening_of(&[b"G", b"ET /v1/events?a=1 HTTP/1.1\r\n", b"Host: x\r\n\r\n"]);
        assert!(matches!(stream.await.unwrap(), Opening::Stream { .. }));
        let body = b"POST /v1/notify HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let Opening::Http1(read) = opening_of(&[&body[..20], &body[20..]]).await.unwrap() else {
            panic!("HTTP/1 for hyper")
        };
        assert!(read.starts_with(b"POST /v1/notify HTTP/1.1\r\nHost: x\r\n"));
        // "PRI" that is not the preface is HTTP/1 for hyper (which refuses it).
        let pri = opening_of(&[b"PRI /x HTTP/1.1\r\n\r\n"]).await.unwrap();
        assert!(matches!(pri, Opening::Http1(_)));
    }

    #[tokio::test]
    async fn a_connection_closed_before_its_head_is_an_error() {
        assert!(opening_of(&[b"GET /v1/ev"]).await.is_err());
        assert!(opening_of(&[]).await.is_err());
    }

    #[tokio::test]
    async fn an_endless_head_stops_at_the_limit() {
        let endless = format!("GET /v1/events HTTP/1.1\r\nX: {}", "a".repeat(40 * 1024));
        let Opening::Http1(read) = opening_of(&[endless.as_bytes()]).await.unwrap() else {
            panic!("handed to hyper, which answers 431")
        };
        let max = crate::http::events_h1::MAX_HEAD;
        assert!(read.len() >= max && read.len() <= 2 * max, "{}", read.len());
    }
}
