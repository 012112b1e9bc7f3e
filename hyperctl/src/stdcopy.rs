//! Demultiplexing Docker stdcopy frames (8-byte header: stream id, 3 zero bytes, big-endian
//! length) to our stdout and stderr.

use anyhow::{Result, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use hyper_proto::rest::{STDCOPY_STDERR, STDCOPY_STDOUT};

/// Copies frames from `input` until it ends.
pub async fn demux<R, O, E>(mut input: R, stdout: &mut O, stderr: &mut E) -> Result<()>
where
    R: AsyncRead + Unpin,
    O: AsyncWrite + Unpin,
    E: AsyncWrite + Unpin,
{
    let mut header = [0u8; 8];
    loop {
        match input.read_exact(&mut header).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut data = vec![0u8; len];
        input.read_exact(&mut data).await?;
        match header[0] {
            STDCOPY_STDOUT | 0 => {
                stdout.write_all(&data).await?;
                stdout.flush().await?;
            }
            STDCOPY_STDERR => {
                stderr.write_all(&data).await?;
                stderr.flush().await?;
            }
            other => bail!("stream: unknown stdcopy stream id {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper_proto::rest::stdcopy_header;

    #[tokio::test]
    async fn frames_go_to_their_stream() {
        let mut input = stdcopy_header(1, 3).to_vec();
        input.extend_from_slice(b"out");
        input.extend_from_slice(&stdcopy_header(2, 3));
        input.extend_from_slice(b"err");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        demux(&input[..], &mut out, &mut err).await.unwrap();
        assert_eq!((out.as_slice(), err.as_slice()), (&b"out"[..], &b"err"[..]));
    }
}
