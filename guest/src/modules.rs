//! Kernel modules: read each module's `depends=` from its `.modinfo`, load them in dependency
//! order with `finit_module`. A failed load is an error, never hidden: one missing virtio core
//! module silently breaks every device after it.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub path: PathBuf,
    pub depends: Vec<String>,
}

#[derive(Debug, Default)]
pub struct LoadReport {
    pub loaded: Vec<String>,
}

/// Module names use `_` where file names may use `-`.
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Reads a `key=value` field from the NUL-separated `.modinfo` strings of a module image.
fn modinfo_field(image: &[u8], key: &str) -> Option<String> {
    let needle = format!("\0{key}=");
    let start = image
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())?
        + needle.len();
    let len = image[start..].iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&image[start..start + len]).into_owned())
}

/// Parses a module image into its name and dependencies.
pub fn parse_module(path: &Path, image: &[u8]) -> Module {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = normalize(&modinfo_field(image, "name").unwrap_or(stem));
    let depends = modinfo_field(image, "depends")
        .map(|d| {
            d.split(',')
                .filter(|s| !s.is_empty())
                .map(normalize)
                .collect()
        })
        .unwrap_or_default();
    Module {
        name,
        path: path.to_path_buf(),
        depends,
    }
}

/// Orders modules so that each comes after everything it depends on; ties keep name order so
/// boots are reproducible.
pub fn load_order(modules: &[Module]) -> Result<Vec<&Module>> {
    let by_name: HashMap<&str, &Module> = modules.iter().map(|m| (m.name.as_str(), m)).collect();
    let mut names: Vec<&str> = by_name.keys().copied().collect();
    names.sort_unstable();
    let mut order = Vec::with_capacity(modules.len());
    let mut done = HashSet::new();
    let mut visiting = HashSet::new();

    fn visit<'a>(
        name: &'a str,
        by_name: &HashMap<&'a str, &'a Module>,
        done: &mut HashSet<&'a str>,
        visiting: &mut HashSet<&'a str>,
        order: &mut Vec<&'a Module>,
    ) -> Result<()> {
        if done.contains(name) {
            return Ok(());
        }
        if !visiting.insert(name) {
            return Err(Error::InvalidArgument(format!(
                "module dependency cycle through {name}"
            )));
        }
        let module = by_name[name];
        for dep in &module.depends {
            let Some((dep_name, _)) = by_name.get_key_value(dep.as_str()) else {
                return Err(Error::NotFound(format!(
                    "module {name} depends on {dep}, which is not in the initramfs"
                )));
            };
            visit(dep_name, by_name, done, visiting, order)?;
        }
        visiting.remove(name);
        done.insert(name);
        order.push(module);
        Ok(())
    }

    for name in names {
        visit(name, &by_name, &mut done, &mut visiting, &mut order)?;
    }
    Ok(order)
}

/// Loads every `.ko` in `dir` in dependency order.
pub fn load_dir(dir: &Path) -> Result<LoadReport> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
    let mut modules = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| Error::io("read module dir", e))?.path();
        if path.extension().is_some_and(|e| e == "ko") {
            let image = std::fs::read(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            modules.push(parse_module(&path, &image));
        }
    }
    let mut report = LoadReport::default();
    for module in load_order(&modules)? {
        insert(&module.path).map_err(|e| Error::io(format!("load module {}", module.name), e))?;
        report.loaded.push(module.name.clone());
    }
    Ok(report)
}

fn insert(path: &Path) -> std::io::Result<()> {
    let file = std::fs::File::open(path)?;
    let no_params: &CStr = c"";
    // SAFETY: finit_module reads the open fd and a NUL-terminated parameter string.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            no_params.as_ptr(),
            0,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = std::io::Error::last_os_error();
    // Built in, or already loaded: both are what we wanted.
    if err.raw_os_error() == Some(libc::EEXIST) {
        return Ok(());
    }
    Err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(fields: &[&str]) -> Vec<u8> {
        let mut v = b"\x7fELF....".to_vec();
        for f in fields {
            v.push(0);
            v.extend_from_slice(f.as_bytes());
        }
        v.push(0);
        v
    }

    fn module(name: &str, deps: &str) -> Module {
        parse_module(
            Path::new(&format!("/m/{name}.ko")),
            &image(&[&format!("depends={deps}"), &format!("name={name}")]),
        )
    }

    #[test]
    fn reads_name_and_depends_from_modinfo() {
        let m = parse_module(
            Path::new("/x/virtio-net.ko"),
            &image(&[
                "license=GPL",
                "depends=virtio_ring,virtio,net_failover",
                "name=virtio_net",
            ]),
        );
        assert_eq!(m.name, "virtio_net");
        assert_eq!(m.depends, ["virtio_ring", "virtio", "net_failover"]);
    }

    #[test]
    fn empty_depends_and_missing_name_fall_back_to_file_name() {
        let m = parse_module(Path::new("/x/vsock.ko"), &image(&["depends="]));
        assert_eq!(m.name, "vsock");
        assert!(m.depends.is_empty());
    }

    #[test]
    fn virtio_core_loads_before_its_users() {
        // The order that once broke every virtio device: virtio before virtio_ring.
        let mods = vec![
            module("virtiofs", "fuse,virtio,virtio_ring"),
            module("virtio", "virtio_ring"),
            module("fuse", ""),
            module("virtio_ring", ""),
            module("virtio_mmio", "virtio,virtio_ring"),
        ];
        let order: Vec<_> = load_order(&mods)
            .unwrap()
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        let pos = |n| order.iter().position(|x| *x == n).unwrap();
        assert!(pos("virtio_ring") < pos("virtio"));
        assert!(pos("virtio") < pos("virtio_mmio"));
        assert!(pos("fuse") < pos("virtiofs"));
        assert_eq!(order.len(), 5);
    }

    #[test]
    fn a_missing_dependency_is_named() {
        let mods = vec![
            module("virtio_net", "virtio,net_failover"),
            module("virtio", ""),
        ];
        let err = load_order(&mods).unwrap_err().to_string();
        assert!(err.contains("virtio_net depends on net_failover"), "{err}");
    }

    #[test]
    fn a_cycle_is_an_error() {
        let mods = vec![module("a", "b"), module("b", "a")];
        assert!(load_order(&mods).unwrap_err().to_string().contains("cycle"));
    }
}
