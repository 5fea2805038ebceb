//! The stream under tungstenite: reads everything the kernel (or the TLS layer) has at once.
//!
//! Why: tungstenite reads at most `read_buffer_size` bytes per call. A small buffer keeps idle
//! sessions small (a few KiB each), but then a 16 KiB message took five `recv` calls, and the
//! kernel's per-call cost was most of the server's CPU time on large messages. A large buffer
//! costs that much memory on every idle socket, and tungstenite zero-fills it before each read.
//!
//! So each read here goes into a 64 KiB chunk taken from a small per-thread pool; tungstenite
//! gets what it asked for, and the rest stays in `pending` for its next reads, which then need
//! no system call. A chunk goes back to the pool as soon as it is drained, so an idle socket
//! holds none. tokio's `poll_read` also forgets the socket's readiness after a short read, so
//! a drained socket is not asked again until epoll says there is more (`readv` through
//! `try_read_vectored`, tried first, cost one extra `EAGAIN` call per message for that reason).

use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Most bytes one read takes.
const CHUNK_SIZE: usize = 64 * 1024;
/// Drained chunks a thread keeps for reuse; more are freed.
const SPARE_CHUNKS: usize = 8;

thread_local! {
    /// Drained chunks, ready for the next read on this thread.
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

/// A chunk to read into: a spare one, or a new one.
fn take_chunk() -> Box<[u8]> {
    SPARE
        .with_borrow_mut(Vec::pop)
        .unwrap_or_else(|| vec![0; CHUNK_SIZE].into_boxed_slice())
}

/// Keeps a drained chunk for reuse, unless the pool is full or the chunk is not one of ours.
fn give_back(chunk: Box<[u8]>) {
    if chunk.len() == CHUNK_SIZE {
        SPARE.with_borrow_mut(|spare| {
            if spare.len() < SPARE_CHUNKS {
                spare.push(chunk);
            }
        });
    }
}

/// Bytes read but not yet handed out: `chunk[start..end]`.
#[derive(Debug)]
struct Pending {
    chunk: Box<[u8]>,
    start: usize,
    end: usize,
}

/// A stream whose reads take everything available in one call below.
#[derive(Debug)]
pub(crate) struct ReadAhead<S> {
    stream: S,
    pending: Option<Pending>,
}

impl<S> ReadAhead<S> {
    /// Wraps `stream`; `already_read` are bytes that arrived before the wrapper existed
    /// (sent by the client right behind its handshake) and are read first.
    pub(crate) fn new(stream: S, already_read: &[u8]) -> ReadAhead<S> {
        let pending = (!already_read.is_empty()).then(|| Pending {
            chunk: Box::from(already_read),
            start: 0,
            end: already_read.len(),
        });
        ReadAhead { stream, pending }
    }

    /// Whether bytes are waiting to be handed out.
    #[cfg(test)]
    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(pending) = &mut this.pending {
            let count = buf.remaining().min(pending.end - pending.start);
            buf.put_slice(&pending.chunk[pending.start..pending.start + count]);
            pending.start += count;
            if pending.start == pending.end
                && let Some(drained) = this.pending.take()
            {
                give_back(drained.chunk);
            }
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        let mut chunk = take_chunk();
        let mut chunk_buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut this.stream).poll_read(cx, &mut chunk_buf) {
            Poll::Ready(Ok(())) => {
                let read = chunk_buf.filled().len();
                let count = buf.remaining().min(read);
                buf.put_slice(&chunk[..count]);
                if count < read {
                    this.pending = Some(Pending {
                        chunk,
                        start: count,
                        end: read,
                    });
                } else {
                    give_back(chunk);
                }
                Poll::Ready(Ok(()))
            }
            not_read => {
                give_back(chunk);
                not_read
            }
        }
    }
}
impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair(already_read: &[u8]) -> (ReadAhead<TcpStream>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (ReadAhead::new(server, already_read), client)
    }

    #[tokio::test]
    async fn small_reads_get_every_byte_in_order_after_the_already_read_ones() {
        let (mut reader, mut client) = pair(b"head:").await;
        let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let sent = body.clone();
        let writer = tokio::spawn(async move {
            client.write_all(&sent).await.expect("write");
            client.shutdown().await.expect("shutdown");
        });
        let mut received = Vec::new();
        let mut chunk = [0u8; 1000];
        loop {
            let read = reader.read(&mut chunk).await.expect("read");
            if read == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..read]);
        }
        writer.await.expect("writer");
        assert_eq!(&received[..5], b"head:");
        assert!(received[5..] == body[..], "bytes differ");
        assert!(
            !reader.has_pending(),
            "the chunk is given back once drained"
        );
    }

    #[tokio::test]
    async fn one_read_takes_what_the_kernel_has_and_keeps_the_rest() {
        let (mut reader, mut client) = pair(b"").await;
        client.write_all(&[7u8; 10_000]).await.expect("write");
        let mut first = [0u8; 100];
        // Read until something is kept back; without read-ahead that never happens and the
        // loop ends with all 10,000 bytes read 100 at a time.
        let mut total = 0;
        while total < 10_000 && !reader.has_pending() {
            total += reader.read(&mut first).await.expect("read");
        }
        let kept = reader.pending.as_ref().map_or(0, |p| p.end - p.start);
        assert!(kept > 0, "nothing was read ahead");
        assert_eq!(total + kept, 10_000);
        let mut rest = vec![0u8; kept];
        reader.read_exact(&mut rest).await.expect("rest");
        assert!(rest.iter().all(|&byte| byte == 7));
    }
}
