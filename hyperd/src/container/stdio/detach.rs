//! Detach keys: the key sequence that, typed on an attached TTY, detaches the client and
//! leaves the process running. Docker's syntax: a comma-separated list of single characters
//! and `ctrl-<x>` (x one of `a`-`z`, `@`, `[`, `\`, `]`, `^`, `_`); default `ctrl-p,ctrl-q`.

use super::Error;

/// Docker's default.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys(Vec<u8>);

impl DetachKeys {
    /// Parses Docker's syntax; an empty string is the default.
    pub fn parse(spec: &str) -> Result<Self, Error> {
        let spec = if spec.is_empty() { DEFAULT } else { spec };
        let bad = |key: &str| {
            Error::Invalid(format!(
                "detachKeys: {key:?} is not a key: use a character or ctrl-<a-z, @, [, \\, ], ^, _>"
            ))
        };
        let mut keys = Vec::new();
        for key in spec.split(',') {
            let key = key.trim();
            let byte = match key.strip_prefix("ctrl-") {
                Some(c) if c.len() == 1 => {
                    let c = c.as_bytes()[0].to_ascii_lowercase();
                    match c {
                        b'a'..=b'z' => c - b'a' + 1,
                        b'@' => 0,
                        b'[' => 27,
                        b'\\' => 28,
                        b']' => 29,
                        b'^' => 30,
                        b'_' => 31,
                        _ => return Err(bad(key)),
                    }
                }
                Some(_) => return Err(bad(key)),
                None if key.len() == 1 => key.as_bytes()[0],
                None => return Err(bad(key)),
            };
            keys.push(byte);
        }
        Ok(Self(keys))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Watches stdin for the detach sequence, holding back a partial match until it is complete
/// (detach) or broken (the held bytes go on to the process).
#[derive(Debug)]
pub struct Scanner {
    keys: DetachKeys,
    matched: usize,
}

/// What a piece of stdin became.
#[derive(Debug, PartialEq, Eq)]
pub struct Scanned {
    /// The bytes to forward.
    pub forward: Vec<u8>,
    /// The sequence was typed: stop relaying.
    pub detach: bool,
}

impl Scanner {
    pub fn new(keys: DetachKeys) -> Self {
        Self { keys, matched: 0 }
    }

    pub fn feed(&mut self, input: &[u8]) -> Scanned {
        let keys = self.keys.bytes();
        let mut forward = Vec::with_capacity(input.len());
        for &b in input {
            if keys.get(self.matched) == Some(&b) {
                self.matched += 1;
                if self.matched == keys.len() {
                    self.matched = 0;
                    return Scanned {
                        forward,
                        detach: true,
                    };
                }
                continue;
            }
            forward.extend_from_slice(&keys[..self.matched]);
            self.matched = 0;
            if keys.first() == Some(&b) {
                self.matched = 1;
            } else {
                forward.push(b);
            }
        }
        Scanned {
            forward,
            detach: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_syntax() {
        assert_eq!(DetachKeys::parse("").unwrap().bytes(), [16, 17]);
        assert_eq!(DetachKeys::parse("ctrl-a,x").unwrap().bytes(), [1, b'x']);
        assert_eq!(DetachKeys::parse("ctrl-@,ctrl-_").unwrap().bytes(), [0, 31]);
        for bad in ["ctrl-", "ctrl-ab", "ctrl-1", "xy", "a,,b"] {
            let e = DetachKeys::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("detachKeys: "), "{bad}: {e}");
        }
    }

    #[test]
    fn the_sequence_detaches_and_a_broken_one_passes_through() {
        let mut s = Scanner::new(DetachKeys::parse("").unwrap());
        assert_eq!(
            s.feed(b"ab\x10"),
            Scanned {
                forward: b"ab".to_vec(),
                detach: false
            }
        );
        // Split across reads; then broken by another byte: the held ctrl-p goes on.
        assert_eq!(
            s.feed(b"c"),
            Scanned {
                forward: b"\x10c".to_vec(),
                detach: false
            }
        );
        assert_eq!(
            s.feed(b"x\x10\x10\x11rest"),
            Scanned {
                forward: b"x\x10".to_vec(),
                detach: true
            }
        );
    }
}
