//! Path lookups and the working directory inside a container's rootfs from outside it:
//! symlinks resolve against the rootfs, never against the guest's own root.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MAX_SYMLINKS: usize = 40;

/// What a walk found at a component that is not a symlink.
enum Found<'a> {
    Entry(&'a std::fs::Metadata),
    Missing,
}

/// Walks `path` (absolute, as the container sees it) under `rootfs` a component at a time,
/// following symlinks inside the rootfs (an absolute target restarts at the rootfs, `..`
/// never climbs above it). `visit` sees every other component (its host path, the resolved
/// components before it, what is there) and decides whether the walk goes on; a component
/// that cannot be read is `Missing` only when it does not exist.
fn walk<E>(
    rootfs: &Path,
    path: &str,
    io_error: impl Fn(&str, std::io::Error) -> E,
    mut visit: impl FnMut(&Path, &[String], Found<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<PathBuf, E> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut resolved: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        match part.as_str() {
            "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = join(rootfs, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io_error(
                        "too many levels of symbolic links",
                        std::io::Error::from_raw_os_error(libc::ELOOP),
                    ));
                }
                let target =
                    std::fs::read_link(&candidate).map_err(|e| io_error("read link", e))?;
                let target = target.to_string_lossy();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
            Ok(meta) => {
                visit(&candidate, &resolved, Found::Entry(&meta))?;
                resolved.push(part);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                visit(&candidate, &resolved, Found::Missing)?;
                resolved.push(part);
            }
            Err(e) => return Err(io_error("stat", e)),
        }
    }
    Ok(join(rootfs, &resolved))
}

/// Resolves `path` (absolute, as the container sees it) to a host path under `rootfs`,
/// following symlinks inside the rootfs. Returns `None` when it does not exist.
pub fn resolve(rootfs: &Path, path: &str) -> Option<PathBuf> {
    walk(
        rootfs,
        path,
        |_, _| (),
        |_, _, found| match found {
            Found::Entry(_) => Ok(()),
            Found::Missing => Err(()),
        },
    )
    .ok()
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

fn join(rootfs: &Path, parts: &[String]) -> PathBuf {
    let mut p = rootfs.to_path_buf();
    p.extend(parts);
    p
}

/// Creates `path` (absolute, as the container sees it) under `rootfs` as `mkdir -p` does,
/// each new directory owned by `uid`:`gid` (Docker's WORKDIR). Symlinks on the way resolve
/// inside the rootfs, never out of it. `what` names the path in errors ("cwd", "volume"):
/// [`Error::InvalidArgument`] for a component that exists and is not a directory.
pub fn ensure_dir(what: &str, rootfs: &Path, path: &str, uid: u32, gid: u32) -> Result<()> {
    walk(
        rootfs,
        path,
        |step, e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::InvalidArgument(format!("{what} {path}: {step}"))
            } else {
                Error::io(format!("{what} {path}: {step}"), e)
            }
        },
        |candidate, resolved, found| match found {
            Found::Entry(meta) if meta.is_dir() => Ok(()),
            Found::Entry(_) => {
                let name = candidate.file_name().unwrap_or_default().to_string_lossy();
                Err(Error::InvalidArgument(format!(
                    "{what} {path}: /{} is not a directory",
                    [resolved, &[name.into_owned()]].concat().join("/")
                )))
            }
            Found::Missing => {
                std::fs::create_dir(candidate)
                    .map_err(|e| Error::io(format!("{what} {path}: mkdir"), e))?;
                std::os::unix::fs::lchown(candidate, Some(uid), Some(gid))
                    .map_err(|e| Error::io(format!("{what} {path}: chown"), e))
            }
        },
    )
    .map(drop)
}

/// `path` (absolute, as the container sees it) resolved inside `rootfs`, as the container
/// will see it: absolute and free of symlinks. `None` when it does not exist.
pub fn resolve_in(rootfs: &Path, path: &str) -> Option<String> {
    let host = resolve(rootfs, path)?;
    let rel = host.strip_prefix(rootfs).ok()?;
    Some(format!("/{}", rel.to_string_lossy()))
}

/// Makes an empty file at `path` under `rootfs` as a mount point (parents as [`ensure_dir`],
/// owned by root), unless a file is there already. Errors: [`Error::InvalidArgument`] when a
/// directory or something else than a file is there.
pub fn ensure_file(what: &str, rootfs: &Path, path: &str) -> Result<()> {
    let p = Path::new(path);
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(Error::InvalidArgument(format!(
            "{what} {path}: not a file path"
        )));
    };
    ensure_dir(what, rootfs, &parent.to_string_lossy(), 0, 0)?;
    let parent = resolve(rootfs, &parent.to_string_lossy()).ok_or_else(|| {
        Error::InvalidArgument(format!("{what} {path}: the parent directory vanished"))
    })?;
    match resolve(rootfs, path) {
        Some(found) if found.is_file() => Ok(()),
        Some(_) => Err(Error::InvalidArgument(format!(
            "{what} {path}: not a regular file in the image"
        ))),
        // O_EXCL: never through a (dangling) symlink.
        None => std::fs::File::create_new(parent.join(name))
            .map(drop)
            .map_err(|e| Error::io(format!("{what} {path}: create"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        std::fs::create_dir_all(r.join("bin")).unwrap();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(r.join("bin/busybox"), b"elf").unwrap();
        std::fs::set_permissions(
            r.join("bin/busybox"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        // Absolute link: must resolve inside the rootfs, not on the host.
        symlink("/bin/busybox", r.join("bin/sh")).unwrap();
        symlink("../../../../bin/busybox", r.join("bin/up")).unwrap();
        std::fs::write(r.join("etc/data"), b"x").unwrap();
        dir
    }

    #[test]
    fn absolute_symlinks_stay_in_the_rootfs() {
        let dir = rootfs();
        assert_eq!(
            resolve(dir.path(), "/bin/sh"),
            Some(dir.path().join("bin/busybox"))
        );
        assert_eq!(
            resolve(dir.path(), "/bin/up"),
            Some(dir.path().join("bin/busybox"))
        );
    }

    #[test]
    fn missing_directories_are_created_inside_the_rootfs() {
        let dir = rootfs();
        // An absolute link to / must not lead out of the rootfs.
        symlink("/", dir.path().join("escape")).unwrap();
        ensure_dir("cwd", dir.path(), "/escape/work/deep", 1000, 1000).unwrap();
        assert!(dir.path().join("work/deep").is_dir());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(
            std::fs::metadata(dir.path().join("work/deep"))
                .unwrap()
                .uid(),
            1000
        );
        ensure_dir("cwd", dir.path(), "/bin", 0, 0).unwrap();
        let e = ensure_dir("cwd", dir.path(), "/etc/data/x", 0, 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cwd /etc/data/x: /etc/data is not a directory"
        );
    }

    #[test]
    fn file_mount_points_are_made_inside_the_rootfs() {
        let dir = rootfs();
        symlink("/", dir.path().join("escape")).unwrap();
        ensure_file("volume", dir.path(), "/escape/conf/app.conf").unwrap();
        assert!(dir.path().join("conf/app.conf").is_file());
        assert_eq!(
            resolve_in(dir.path(), "/escape/conf/app.conf").as_deref(),
            Some("/conf/app.conf")
        );
        ensure_file("volume", dir.path(), "/etc/data").unwrap();
        let e = ensure_file("volume", dir.path(), "/etc").unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e}");
    }
}
