//! A container's root filesystem: an overlay of its image's rootfs (read-only lower layer)
//! under the container's own upper dir, `<root>/containers/<id>/{upper,work}`. The shim mounts
//! it in its private mount namespace, so nothing is mounted on the host and nothing a
//! container writes reaches the image. The upper dir survives a stop (a restarted pod keeps
//! its changes) and goes with the container's dir on removal.

use std::path::{Path, PathBuf};

/// What `AddContainer` gets: layers topmost first, then the writable dirs.
#[derive(Debug, Clone, PartialEq)]
pub struct Overlay {
    pub layers: Vec<String>,
    pub upper: PathBuf,
    pub work: PathBuf,
}

pub fn overlay(image_rootfs: &Path, container_dir: &Path) -> Overlay {
    Overlay {
        layers: vec![image_rootfs.to_string_lossy().into_owned()],
        upper: container_dir.join("upper"),
        work: container_dir.join("work"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_is_the_only_layer_under_the_container_dirs() {
        let o = overlay(
            Path::new("/r/images/abc/rootfs"),
            Path::new("/r/containers/c1"),
        );
        assert_eq!(o.layers, ["/r/images/abc/rootfs"]);
        assert_eq!(o.upper, PathBuf::from("/r/containers/c1/upper"));
        assert_eq!(o.work, PathBuf::from("/r/containers/c1/work"));
    }
}
