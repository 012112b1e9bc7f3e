//! Path lookups inside a container's rootfs from outside it: symlinks resolve against the
//! rootfs, never against the guest's own root.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute, as the container sees it) to a host path under `rootfs`,
/// following symlinks inside the rootfs. Returns `None` when it does not exist.
pub fn resolve(rootfs: &Path, path: &str) -> Option<PathBuf> {
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
        let meta = std::fs::symlink_metadata(&candidate).ok()?;
        if meta.file_type().is_symlink() {
            links += 1;
            if links > MAX_SYMLINKS {
                return None;
            }
            let target = std::fs::read_link(&candidate).ok()?;
            let target = target.to_string_lossy();
            if target.starts_with('/') {
                resolved.clear();
            }
            let mut more = components(&target);
            more.reverse();
            pending.extend(more);
        } else {
            resolved.push(part);
        }
    }
    Some(join(rootfs, &resolved))
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

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Checks that `command` can be executed in the container, looking it up in `$PATH` when it
/// has no slash, as execvp does. The error names the command the user gave.
pub fn check_executable(rootfs: &Path, command: &str, path_env: &str, cwd: &str) -> Result<()> {
    if command.is_empty() {
        return Err(Error::InvalidArgument("no command given".into()));
    }
    let candidates: Vec<String> = if command.contains('/') {
        if command.starts_with('/') {
            vec![command.to_string()]
        } else {
            vec![format!("{}/{command}", cwd.trim_end_matches('/'))]
        }
    } else {
        path_env
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| format!("{}/{command}", d.trim_end_matches('/')))
            .collect()
    };
    let found = candidates
        .iter()
        .filter_map(|c| resolve(rootfs, c))
        .find(|p| p.exists());
    match found {
        Some(p) if is_executable_file(&p) => Ok(()),
        Some(_) => Err(Error::InvalidArgument(format!(
            "{command}: permission denied: not an executable file"
        ))),
        None if command.contains('/') => Err(Error::InvalidArgument(format!(
            "{command}: no such file or directory"
        ))),
        None => Err(Error::InvalidArgument(format!(
            "{command}: executable file not found in $PATH"
        ))),
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
    fn commands_are_found_on_path() {
        let dir = rootfs();
        check_executable(dir.path(), "sh", "/usr/bin:/bin", "/").unwrap();
        check_executable(dir.path(), "/bin/sh", "", "/").unwrap();
    }

    #[test]
    fn missing_and_non_executable_commands_are_named() {
        let dir = rootfs();
        let e = check_executable(dir.path(), "nosuch", "/bin", "/")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "nosuch: executable file not found in $PATH");
        let e = check_executable(dir.path(), "/etc/data", "/bin", "/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not an executable"), "{e}");
        let e = check_executable(dir.path(), "/no/such", "/bin", "/")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no such file"), "{e}");
    }
}
