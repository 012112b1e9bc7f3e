//! Layer compression: which codec a layer blob uses, found from its magic bytes (never from a
//! file name or a media type, which a registry or a `docker save` archive may get wrong), and a
//! reader that decompresses it. Docker and containerd detect layers the same way.

use std::fmt;
use std::io::{self, Read};

/// The codec of a layer blob. `None` is a plain tar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// How many leading bytes [`Compression::detect`] needs to tell every codec apart.
pub const MAGIC_LEN: usize = 6;

impl Compression {
    /// The codec whose magic number starts `prefix` (give it at least [`MAGIC_LEN`] bytes when
    /// the blob has that many). Anything unrecognised is `None`: the caller then reads it as a
    /// plain tar, which fails cleanly if it is not one.
    pub fn detect(prefix: &[u8]) -> Self {
        const GZIP: &[u8] = &[0x1f, 0x8b];
        const BZIP2: &[u8] = b"BZh";
        const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
        const ZSTD: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
        if prefix.starts_with(GZIP) {
            Compression::Gzip
        } else if prefix.starts_with(BZIP2) {
            Compression::Bzip2
        } else if prefix.starts_with(XZ) {
            Compression::Xz
        } else if prefix.starts_with(ZSTD) || is_zstd_skippable_frame(prefix) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The suffix this codec adds to the OCI layer media type
    /// (`application/vnd.oci.image.layer.v1.tar` + suffix), per the OCI image spec's layer
    /// media types: `""`, `"+gzip"` or `"+zstd"`. `None` for bzip2 and xz, which the OCI spec
    /// has no media type for (Docker reads them in `docker load` but never pushes them).
    pub fn media_type_suffix(&self) -> Option<&'static str> {
        match self {
            Compression::None => Some(""),
            Compression::Gzip => Some("+gzip"),
            Compression::Zstd => Some("+zstd"),
            Compression::Bzip2 | Compression::Xz => None,
        }
    }

    /// A short lowercase name: `none`, `gzip`, `bzip2`, `xz` or `zstd`.
    pub fn name(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
            Compression::Xz => "xz",
            Compression::Zstd => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A zstd stream may begin with a skippable frame (magic `0x184D2A50..=0x184D2A5F`,
/// little-endian), as seekable and chunked zstd formats do.
fn is_zstd_skippable_frame(prefix: &[u8]) -> bool {
    prefix.len() >= 4 && prefix[0] & 0xf0 == 0x50 && prefix[1..4] == [0x2a, 0x4d, 0x18]
}

/// Reads the first bytes of `r`, detects its codec, and returns the codec with a reader of the
/// decompressed bytes (the bytes peeked are replayed, so nothing is lost). Multi-member gzip and
/// bzip2 streams and multi-stream xz and zstd are read to their end, as `gzip -d` does.
///
/// Errors: only a read error of the first bytes here; corrupt compressed data shows up as an
/// `io::Error` (kind `InvalidData` or `UnexpectedEof`, mostly) from the returned reader.
pub fn decompress<'a>(mut r: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let mut magic = [0u8; MAGIC_LEN];
    let mut len = 0;
    while len < MAGIC_LEN {
        match r.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let compression = Compression::detect(&magic[..len]);
    let whole = io::Cursor::new(magic).take(len as u64).chain(r);
    let reader: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(whole),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
        Compression::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(whole)),
        Compression::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(whole)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
    };
    Ok((compression, reader))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A small but real tar, with enough repetitive content that every codec compresses it.
    fn sample_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("etc/hostname", b"box\n".to_vec()),
            ("usr/share/doc/readme", b"hello layer ".repeat(4000)),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, &data[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn compress(c: Compression, data: &[u8]) -> Vec<u8> {
        match c {
            Compression::None => data.to_vec(),
            Compression::Gzip => {
                let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Zstd => zstd::stream::encode_all(data, 1).unwrap(),
        }
    }

    #[test]
    fn every_codec_is_detected_and_yields_the_same_tar() {
        let tar = sample_tar();
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Bzip2,
            Compression::Xz,
            Compression::Zstd,
        ] {
            let blob = compress(c, &tar);
            if c != Compression::None {
                assert!(blob.len() < tar.len() / 4, "{c} did not compress");
            }
            let (found, mut r) = decompress(&blob[..]).unwrap();
            assert_eq!(found, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert!(out == tar, "{c}: decompressed bytes differ from the tar");
        }
    }

    #[test]
    fn concatenated_gzip_members_are_read_to_the_end() {
        let mut blob = compress(Compression::Gzip, b"first ");
        blob.extend(compress(Compression::Gzip, b"second"));
        let (_, mut r) = decompress(&blob[..]).unwrap();
        let mut out = String::new();
        r.read_to_string(&mut out).unwrap();
        assert_eq!(out, "first second");
    }

    #[test]
    fn short_and_empty_inputs_are_plain() {
        for input in [&b""[..], b"x", b"\x1f"] {
            let (found, mut r) = decompress(input).unwrap();
            assert_eq!(found, Compression::None);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, input);
        }
    }

    #[test]
    fn a_reader_that_returns_one_byte_at_a_time_is_still_detected() {
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let tar = sample_tar();
        let blob = compress(Compression::Xz, &tar);
        let (found, mut r) = decompress(Trickle(&blob)).unwrap();
        assert_eq!(found, Compression::Xz);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert!(out == tar);
    }

    #[test]
    fn corrupt_compressed_data_is_an_error_from_the_reader() {
        let mut blob = compress(Compression::Gzip, &sample_tar());
        let mid = blob.len() / 2;
        blob.truncate(mid);
        let (found, mut r) = decompress(&blob[..]).unwrap();
        assert_eq!(found, Compression::Gzip);
        assert!(r.read_to_end(&mut Vec::new()).is_err());
    }

    #[test]
    fn media_type_suffixes_follow_the_oci_spec() {
        assert_eq!(Compression::None.media_type_suffix(), Some(""));
        assert_eq!(Compression::Gzip.media_type_suffix(), Some("+gzip"));
        assert_eq!(Compression::Zstd.media_type_suffix(), Some("+zstd"));
        assert_eq!(Compression::Xz.media_type_suffix(), None);
    }
}
