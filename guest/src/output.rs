//! A process's stdout and stderr, kept so that an attach after the process started (or ended)
//! still sees everything, and fanned out to every attached reader.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::Notify;

use hyper_proto::types::OutputStream;

/// Output kept per process for late readers; older chunks are dropped first.
const KEEP_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub stream: OutputStream,
    pub data: Vec<u8>,
}

#[derive(Default)]
struct Inner {
    chunks: VecDeque<Chunk>,
    /// Sequence number of `chunks[0]`.
    first_seq: u64,
    kept_bytes: usize,
    open_streams: u8,
}

pub struct OutputBuffer {
    inner: Mutex<Inner>,
    changed: Notify,
}

impl OutputBuffer {
    /// A buffer fed by `open_streams` writers (stdout and stderr: 2).
    pub fn new(open_streams: u8) -> Self {
        Self {
            inner: Mutex::new(Inner {
                open_streams,
                ..Default::default()
            }),
            changed: Notify::new(),
        }
    }

    pub fn push(&self, stream: OutputStream, data: Vec<u8>) {
        let mut inner = self.inner.lock().expect("output lock");
        inner.kept_bytes += data.len();
        inner.chunks.push_back(Chunk { stream, data });
        while inner.kept_bytes > KEEP_BYTES && inner.chunks.len() > 1 {
            let dropped = inner.chunks.pop_front().expect("non-empty");
            inner.kept_bytes -= dropped.data.len();
            inner.first_seq += 1;
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// One writer reached end of file.
    pub fn close_stream(&self) {
        let mut inner = self.inner.lock().expect("output lock");
        inner.open_streams = inner.open_streams.saturating_sub(1);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// The chunks from sequence number `cursor` on, and the next cursor; `None` once every
    /// writer closed and the reader has seen everything.
    pub async fn next(&self, cursor: u64) -> Option<(Vec<Chunk>, u64)> {
        loop {
            let notified = self.changed.notified();
            {
                let inner = self.inner.lock().expect("output lock");
                let end = inner.first_seq + inner.chunks.len() as u64;
                let from = cursor.max(inner.first_seq);
                if from < end {
                    let skip = (from - inner.first_seq) as usize;
                    let chunks = inner.chunks.iter().skip(skip).cloned().collect();
                    return Some((chunks, end));
                }
                if inner.open_streams == 0 {
                    return None;
                }
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn late_reader_sees_everything_then_the_end() {
        let buf = OutputBuffer::new(2);
        buf.push(OutputStream::Stdout, b"hello\n".to_vec());
        buf.push(OutputStream::Stderr, b"err\n".to_vec());
        buf.close_stream();
        buf.close_stream();
        let (chunks, cursor) = buf.next(0).await.unwrap();
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[1].stream, OutputStream::Stderr);
        assert!(buf.next(cursor).await.is_none());
    }

    #[tokio::test]
    async fn reader_waits_for_new_output() {
        let buf = std::sync::Arc::new(OutputBuffer::new(1));
        let reader = {
            let buf = buf.clone();
            tokio::spawn(async move { buf.next(0).await })
        };
        tokio::task::yield_now().await;
        buf.push(OutputStream::Stdout, b"x".to_vec());
        let (chunks, _) = reader.await.unwrap().unwrap();
        assert_eq!(chunks[0].data, b"x");
    }
}
