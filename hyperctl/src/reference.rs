//! Image references as a user types them (`busybox`, `busybox:1.36`,
//! `127.0.0.1:5000/app@sha256:…`): the name as typed, its tag or digest, and the registry the
//! image lives in, normalised as Docker does (`busybox` → `docker.io`; a first component with a
//! `.` or `:`, or `localhost`, is a registry). Validation and normalisation are oci-spec's
//! distribution reference parser (a port of Docker's `reference` package).

use oci_spec::distribution::{ParseError, Reference};

/// The tag a reference without tag or digest means.
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid reference {reference:?}")]
    Invalid {
        reference: String,
        #[source]
        source: ParseError,
    },
}

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The repository as typed, without tag or digest (`busybox`, `127.0.0.1:5000/app`): what
    /// hyperd's `imageName`/`remote`/`repo` parameters take.
    pub name: String,
    /// The tag, if one was typed.
    pub tag: Option<String>,
    /// The digest (`sha256:<64 hex>`), if one was typed.
    pub digest: Option<String>,
    /// The registry host (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
}

impl ImageRef {
    /// Parses `NAME[:TAG][@DIGEST]`; errors on what Docker rejects (bad characters, a digest of
    /// the wrong length, an uppercase repository).
    pub fn parse(s: &str) -> Result<Self, Error> {
        let parsed: Reference = s.parse().map_err(|source| Error::Invalid {
            reference: s.into(),
            source,
        })?;
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d.to_string())),
            None => (s, None),
        };
        // A `:` after the last `/` starts the tag; an earlier one is a registry port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        Ok(Self {
            name: name.into(),
            tag,
            digest,
            registry: parsed.registry().into(),
        })
    }

    /// What to pull: the digest when there is one, else the tag, else [`DEFAULT_TAG`].
    pub fn tag_or_digest(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// Neither a tag nor a digest was typed (Docker then says `Using default tag: latest`).
    pub fn is_untagged(&self) -> bool {
        self.tag.is_none() && self.digest.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tags_digests_and_registries() {
        let digest = format!("sha256:{}", "a".repeat(64));
        // (typed, name, tag, digest, registry)
        type Row<'a> = (String, &'a str, Option<&'a str>, Option<&'a str>, &'a str);
        let table: Vec<Row> = vec![
            ("busybox".into(), "busybox", None, None, "docker.io"),
            (
                "busybox:1.36".into(),
                "busybox",
                Some("1.36"),
                None,
                "docker.io",
            ),
            (
                "library/busybox".into(),
                "library/busybox",
                None,
                None,
                "docker.io",
            ),
            (
                "docker.io/x/y:t".into(),
                "docker.io/x/y",
                Some("t"),
                None,
                "docker.io",
            ),
            (
                "index.docker.io/x/y".into(),
                "index.docker.io/x/y",
                None,
                None,
                "docker.io",
            ),
            (
                "127.0.0.1:5000/app".into(),
                "127.0.0.1:5000/app",
                None,
                None,
                "127.0.0.1:5000",
            ),
            (
                "127.0.0.1:5000/a/b:2".into(),
                "127.0.0.1:5000/a/b",
                Some("2"),
                None,
                "127.0.0.1:5000",
            ),
            (
                "localhost/app".into(),
                "localhost/app",
                None,
                None,
                "localhost",
            ),
            (
                "quay.io/ns/img".into(),
                "quay.io/ns/img",
                None,
                None,
                "quay.io",
            ),
            (
                format!("busybox@{digest}"),
                "busybox",
                None,
                Some(&digest),
                "docker.io",
            ),
            (
                format!("localhost:5000/app:1@{digest}"),
                "localhost:5000/app",
                Some("1"),
                Some(&digest),
                "localhost:5000",
            ),
        ];
        for (typed, name, tag, dig, registry) in table {
            let r = ImageRef::parse(&typed).unwrap();
            assert_eq!(r.name, name, "{typed}");
            assert_eq!(r.tag.as_deref(), tag, "{typed}");
            assert_eq!(r.digest.as_deref(), dig, "{typed}");
            assert_eq!(r.registry, registry, "{typed}");
        }
    }

    #[test]
    fn pulls_the_digest_over_the_tag_and_latest_by_default() {
        let digest = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            ImageRef::parse("busybox").unwrap().tag_or_digest(),
            "latest"
        );
        assert!(ImageRef::parse("busybox").unwrap().is_untagged());
        assert_eq!(ImageRef::parse("busybox:1").unwrap().tag_or_digest(), "1");
        let both = ImageRef::parse(&format!("busybox:1@{digest}")).unwrap();
        assert_eq!(both.tag_or_digest(), digest);
        assert!(!both.is_untagged());
    }

    #[test]
    fn rejects_what_docker_rejects() {
        for bad in ["", "Busybox", "busybox@sha256:abc", "a b", "busybox:"] {
            let e = ImageRef::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid reference"), "{bad}: {e}");
        }
    }
}
