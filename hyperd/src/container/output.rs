//! A container's output, recorded as it happens: hyperd attaches to every container it starts
//! and appends the output, already in stdcopy frames, to `<container dir>/output.log`.
//! `/attach` replays that file and follows it until the container has closed its output, so a
//! client that attaches late (or after the container exited) still sees everything.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::watch;

use hyper_proto::rest::stdcopy_header;

pub fn log_path(container_dir: &Path) -> PathBuf {
    container_dir.join("output.log")
}

/// How far a container's output log has got.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Progress {
    pub written: u64,
    /// The container closed stdout and stderr: nothing more will come.
    pub done: bool,
}

/// The logs being written now, by container id.
#[derive(Default)]
pub struct OutputLogs {
    live: Mutex<HashMap<String, watch::Sender<Progress>>>,
}

impl OutputLogs {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<Progress>>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts (or restarts, after a hyperd restart: the shim replays from the beginning) the
    /// log of a container.
    pub async fn begin(&self, container_id: &str, path: &Path) -> std::io::Result<OutputWriter> {
        let file = tokio::fs::File::create(path).await?;
        let (tx, _) = watch::channel(Progress::default());
        self.live().insert(container_id.to_string(), tx.clone());
        Ok(OutputWriter {
            file,
            tx,
            written: 0,
        })
    }

    /// Follows a container's log; a container with no live log is read to its end.
    pub fn follow(
        &self,
        container_id: &str,
        path: &Path,
    ) -> impl Stream<Item = std::io::Result<Bytes>> + use<> {
        let rx = self.live().get(container_id).map(|tx| tx.subscribe());
        follow(path.to_path_buf(), rx)
    }

    pub fn forget(&self, container_id: &str) {
        self.live().remove(container_id);
    }
}

pub struct OutputWriter {
    file: tokio::fs::File,
    tx: watch::Sender<Progress>,
    written: u64,
}

impl OutputWriter {
    pub async fn frame(&mut self, stream: u8, data: &[u8]) -> std::io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&stdcopy_header(stream, data.len() as u32))
            .await?;
        self.file.write_all(data).await?;
        self.file.flush().await?;
        self.written += 8 + data.len() as u64;
        self.tx.send_replace(Progress {
            written: self.written,
            done: false,
        });
        Ok(())
    }

    pub fn finish(self) {
        self.tx.send_replace(Progress {
            written: self.written,
            done: true,
        });
    }
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        // A writer dropped without finish (its task failed) must not leave readers waiting.
        self.tx.send_modify(|p| p.done = true);
    }
}

fn follow(
    path: PathBuf,
    rx: Option<watch::Receiver<Progress>>,
) -> impl Stream<Item = std::io::Result<Bytes>> {
    futures::stream::unfold(
        (None::<tokio::fs::File>, 0u64, rx, false),
        move |(mut file, mut offset, mut rx, finished)| {
            let path = path.clone();
            async move {
                if finished {
                    return None;
                }
                loop {
                    // Read what is there; the file may not exist yet if the container has not
                    // printed anything.
                    if file.is_none() {
                        match tokio::fs::File::open(&path).await {
                            Ok(mut f) => {
                                if let Err(e) = f.seek(std::io::SeekFrom::Start(offset)).await {
                                    return Some((Err(e), (None, offset, rx, true)));
                                }
                                file = Some(f);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Some((Err(e), (None, offset, rx, true))),
                        }
                    }
                    if let Some(f) = file.as_mut() {
                        let mut buf = vec![0u8; 64 * 1024];
                        match f.read(&mut buf).await {
                            Ok(0) => {}
                            Ok(n) => {
                                buf.truncate(n);
                                offset += n as u64;
                                return Some((Ok(Bytes::from(buf)), (file, offset, rx, false)));
                            }
                            Err(e) => return Some((Err(e), (file, offset, rx, true))),
                        }
                    }
                    // At the end of what is written: done, or wait for more.
                    let watch = rx.as_mut()?;
                    let progress = *watch.borrow_and_update();
                    if progress.done && offset >= progress.written {
                        return None;
                    }
                    if progress.written > offset {
                        continue;
                    }
                    if watch.changed().await.is_err() {
                        // The writer is gone: read what is left, then stop.
                        rx = None;
                    }
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_follower_sees_everything_then_ends() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("out.log");
        let logs = OutputLogs::default();
        let mut w = logs.begin("c", &path).await.unwrap();
        w.frame(1, b"early\n").await.unwrap();
        let reader = logs.follow("c", &path);
        let collect = tokio::spawn(async move {
            reader
                .map(|b| b.unwrap().to_vec())
                .collect::<Vec<_>>()
                .await
                .concat()
        });
        w.frame(2, b"late\n").await.unwrap();
        w.finish();
        let got = collect.await.unwrap();
        let mut want = stdcopy_header(1, 6).to_vec();
        want.extend_from_slice(b"early\n");
        want.extend_from_slice(&stdcopy_header(2, 5));
        want.extend_from_slice(b"late\n");
        assert_eq!(got, want);
        // After the fact, with no live writer, the file is simply replayed.
        logs.forget("c");
        let again: Vec<u8> = logs
            .follow("c", &path)
            .map(|b| b.unwrap().to_vec())
            .collect::<Vec<_>>()
            .await
            .concat();
        assert_eq!(again, want);
    }
}

/// Guest output of any shape (chunks of any size and either stream, empty ones included) is
/// recorded as stdcopy frames that decode to exactly that output, in order, for a follower
/// that starts at any point and for a replay after the end. `PROPTEST_CASES=10000` for the
/// long run.
#[cfg(test)]
mod proptests {
    use futures::StreamExt;
    use proptest::prelude::*;

    use super::*;

    /// Docker's stdcopy demultiplexing, strictly: a short header or payload is an error.
    fn decode(mut bytes: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, String> {
        let mut frames = Vec::new();
        while !bytes.is_empty() {
            let Some((header, rest)) = bytes.split_first_chunk::<8>() else {
                return Err(format!("{} bytes of a header", bytes.len()));
            };
            if header[1..4] != [0, 0, 0] {
                return Err(format!("header {header:?}: bytes 1-3 are not zero"));
            }
            let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
            if rest.len() < len {
                return Err(format!("a {len}-byte frame with {} bytes", rest.len()));
            }
            frames.push((header[0], rest[..len].to_vec()));
            bytes = &rest[len..];
        }
        Ok(frames)
    }

    fn chunks() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
        prop::collection::vec(
            (
                prop_oneof![Just(1u8), Just(2u8)],
                prop::collection::vec(any::<u8>(), 0..300),
            ),
            0..24,
        )
    }

    proptest! {
        #[test]
        fn recorded_output_decodes_to_what_was_written(chunks in chunks(), join_at in 0usize..24) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let (live, replay) = rt.block_on(async {
                let d = tempfile::tempdir().unwrap();
                let path = d.path().join("out.log");
                let logs = OutputLogs::default();
                let mut w = logs.begin("c", &path).await.unwrap();
                let mut follower = None;
                for (i, (stream, data)) in chunks.iter().enumerate() {
                    if i == join_at {
                        let reader = logs.follow("c", &path);
                        follower = Some(tokio::spawn(async move {
                            reader.map(|b| b.unwrap().to_vec()).collect::<Vec<_>>().await.concat()
                        }));
                    }
                    w.frame(*stream, data).await.unwrap();
                    tokio::task::yield_now().await;
                }
                let follower = follower.unwrap_or_else(|| {
                    let reader = logs.follow("c", &path);
                    tokio::spawn(async move {
                        reader.map(|b| b.unwrap().to_vec()).collect::<Vec<_>>().await.concat()
                    })
                });
                w.finish();
                let live = follower.await.unwrap();
                logs.forget("c");
                let replay: Vec<u8> = logs
                    .follow("c", &path)
                    .map(|b| b.unwrap().to_vec())
                    .collect::<Vec<_>>()
                    .await
                    .concat();
                (live, replay)
            });
            let want: Vec<(u8, Vec<u8>)> = chunks.into_iter().filter(|(_, d)| !d.is_empty()).collect();
            prop_assert_eq!(decode(&live), Ok(want));
            prop_assert_eq!(live, replay);
        }

        #[test]
        fn the_decoder_used_above_refuses_what_is_not_stdcopy(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            // Checks the checker: whatever it accepts re-encodes to the same bytes.
            if let Ok(frames) = decode(&bytes) {
                let again: Vec<u8> = frames
                    .iter()
                    .flat_map(|(s, d)| stdcopy_header(*s, d.len() as u32).into_iter().chain(d.iter().copied()))
                    .collect();
                prop_assert_eq!(again, bytes);
            }
        }
    }
}
