//! The pod's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf`: one copy each in
//! [`crate::ETC_DIR`], bind-mounted into every container (see `spec::container_spec`).
//! `WriteEtcFiles` rewrites them in place (truncate, then write: the same inode), so the bind
//! mounts of running containers see the new contents. At boot they get defaults, so a
//! container never finds them missing.

use std::io::Write;
use std::path::{Path, PathBuf};

use hyper_proto::types::EtcFiles;

use crate::error::{Error, Result};

/// The files, by their name in the etc directory and in a container's `/etc`.
pub const NAMES: [&str; 3] = ["hostname", "hosts", "resolv.conf"];
/// Each file's largest accepted content, in bytes.
pub const MAX_BYTES: usize = 64 * 1024;

/// What the files hold until the host writes them.
pub fn defaults() -> EtcFiles {
    EtcFiles {
        hostname: "localhost\n".into(),
        hosts: "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n".into(),
        resolv_conf: String::new(),
    }
}

/// The guest path of one of the files: `dir/<name>`.
pub fn path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

/// Writes the three files into `dir` (created if missing), each rewritten in place. Errors:
/// [`Error::InvalidArgument`] naming a file whose content is over [`MAX_BYTES`] (nothing is
/// written then), [`Error::Io`] naming the file.
pub fn write(dir: &Path, files: &EtcFiles) -> Result<()> {
    let contents = [&files.hostname, &files.hosts, &files.resolv_conf];
    for (name, content) in NAMES.iter().zip(contents) {
        if content.len() > MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "etc file {name}: {} bytes, at most {MAX_BYTES}",
                content.len()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("mkdir {}", dir.display()), e))?;
    for (name, content) in NAMES.iter().zip(contents) {
        let path = path(dir, name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()));
        written.map_err(|e| Error::io(format!("write {}", path.display()), e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn files_are_rewritten_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        write(&etc, &defaults()).unwrap();
        let hosts = path(&etc, "hosts");
        let inode = std::fs::metadata(&hosts).unwrap().ino();
        assert!(
            std::fs::read_to_string(&hosts)
                .unwrap()
                .starts_with("127.0.0.1\tlocalhost\n")
        );
        assert_eq!(
            std::fs::read_to_string(path(&etc, "resolv.conf")).unwrap(),
            ""
        );
        // A reader that opened the file before the rewrite (a bind mount) sees the new bytes.
        let held = std::fs::File::open(&hosts).unwrap();
        let files = EtcFiles {
            hostname: "pod1\n".into(),
            hosts: "192.168.77.2\tpod1\n".into(),
            resolv_conf: "nameserver 192.168.77.1\n".into(),
        };
        write(&etc, &files).unwrap();
        assert_eq!(std::fs::metadata(&hosts).unwrap().ino(), inode);
        assert_eq!(held.metadata().unwrap().len(), files.hosts.len() as u64);
        assert_eq!(
            std::fs::read_to_string(path(&etc, "hostname")).unwrap(),
            "pod1\n"
        );
        assert_eq!(
            std::fs::read_to_string(path(&etc, "resolv.conf")).unwrap(),
            "nameserver 192.168.77.1\n"
        );
    }

    #[test]
    fn oversized_content_is_refused_and_nothing_changes() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &defaults()).unwrap();
        let e = write(
            dir.path(),
            &EtcFiles {
                hostname: "x\n".into(),
                hosts: String::new(),
                resolv_conf: "#".repeat(MAX_BYTES + 1),
            },
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        assert!(
            e.to_string()
                .starts_with("etc file resolv.conf: 65537 bytes"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(path(dir.path(), "hostname")).unwrap(),
            "localhost\n"
        );
    }
}
