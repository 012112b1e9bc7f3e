//! Identifiers as hyperd 1.1 shapes them (`pod-`/`vm-`/`exec-` + 10 letters, 64-hex container
//! ids) and the clock used in records.

use std::io::Read;

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // /dev/urandom never blocks and never runs dry on Linux; failing to read it means the
    // system is unusable, so a panic is the honest answer.
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    buf
}

fn letters(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    random_bytes::<32>()
        .iter()
        .take(n)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

pub fn pod_id() -> String {
    format!("pod-{}", letters(10))
}

pub fn vm_id() -> String {
    format!("vm-{}", letters(10))
}

/// 10 random letters, for generated names.
pub fn name_suffix() -> String {
    letters(10)
}

pub fn exec_id() -> String {
    format!("exec-{}", letters(10))
}

pub fn container_id() -> String {
    random_bytes::<32>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_their_shapes() {
        let p = pod_id();
        assert!(p.starts_with("pod-") && p.len() == 14, "{p}");
        assert!(vm_id().starts_with("vm-"));
        let c = container_id();
        assert_eq!(c.len(), 64);
        assert!(c.chars().all(|ch| ch.is_ascii_hexdigit()));
        assert_ne!(container_id(), c);
    }
}
