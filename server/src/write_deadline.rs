//! The stream under an HTTP connection, with a deadline on every write that has to wait: a
//! client that stops reading a response (a large file, a slow link on purpose) is cut off once
//! a write has made no progress for `--send-timeout`, as a WebSocket session's writes are.
//! hyper has no write timeout of its own (its header timeout covers only the request's head),
//! and without one such a client held its connection and the file open for as long as it
//! liked: enough of them, and the connection cap turned everybody else away.
//!
//! A write that completes on its first poll, as nearly all do, costs a branch: the timer is
//! made only when a write must wait, and dropped at the next progress. A WebSocket session
//! takes the stream out of this layer (`into_inner`) and keeps its own deadlines.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct WriteDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Armed while a write waits; cleared by any progress.
    waiting: Option<Pin<Box<Sleep>>>,
}

impl<S> WriteDeadline<S> {
    pub(crate) fn new(inner: S, timeout: Duration) -> WriteDeadline<S> {
        WriteDeadline {
            inner,
            timeout,
            waiting: None,
        }
    }

    /// The stream, for a session that keeps its own deadlines.
    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// What a write (or flush) came to: progress clears the deadline; waiting arms it, and
    /// past it the write fails with `TimedOut`.
    fn within<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if polled.is_ready() {
            self.waiting = None;
            return polled;
        }
        let timeout = self.timeout;
        let waiting = self
            .waiting
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client read nothing of the response for the send timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.within(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.within(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_flush(cx);
        this.within(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.within(cx, polled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test(start_paused = true)]
    async fn a_write_that_waits_past_the_timeout_fails_and_progress_resets_it() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut stream = WriteDeadline::new(server, Duration::from_secs(5));
        // Fills the pipe: the next write waits.
        stream.write_all(&[0; 1024]).await.expect("fits");
        // Read half of it 4 s in: progress, so the deadline starts again.
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4)).await;
            let mut half = [0; 512];
            tokio::io::AsyncReadExt::read_exact(&mut client, &mut half)
                .await
                .expect("read");
            client
        });
        let started = tokio::time::Instant::now();
        stream
            .write_all(&[0; 512])
            .await
            .expect("room made within the timeout");
        let _client = reader.await.expect("reader");
        // Nobody reads any more: the next write fails 5 s after it started to wait.
        let waited = tokio::time::Instant::now();
        let error = stream.write_all(&[0; 512]).await.expect_err("times out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
        assert_eq!(waited.elapsed(), Duration::from_secs(5));
        assert!(started.elapsed() >= Duration::from_secs(9));
    }
}
