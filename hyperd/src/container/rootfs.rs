//! A container's root filesystem: an overlay of its image's unpacked layers (read-only lower
//! dirs, whiteouts in overlayfs form) under the container's own upper dir, `<root>/containers/<id>/{upper,work}`. The shim mounts
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

/// The overlay of `layers` (topmost first) under the container's own dirs.
pub fn overlay(layers: Vec<String>, container_dir: &Path) -> Overlay {
    Overlay {
        layers,
        upper: container_dir.join("upper"),
        work: container_dir.join("work"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_layers_lie_under_the_container_dirs() {
        let o = overlay(
            vec!["/r/snapshots/b/fs".into(), "/r/snapshots/a/fs".into()],
            Path::new("/r/containers/c1"),
        );
        assert_eq!(o.layers, ["/r/snapshots/b/fs", "/r/snapshots/a/fs"]);
        assert_eq!(o.upper, PathBuf::from("/r/containers/c1/upper"));
        assert_eq!(o.work, PathBuf::from("/r/containers/c1/work"));
    }
}
