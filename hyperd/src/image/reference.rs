//! Image references as Docker writes them: `name[:tag][@digest]`, normalised the way Docker's
//! `distribution/reference` does (`busybox` is `docker.io/library/busybox:latest`), and kept in
//! the *familiar* form we store and show (`busybox`, `127.0.0.1:5000/app`, `quay.io/x/y`).

use std::fmt;

use super::{Error, Result};

pub const DEFAULT_TAG: &str = "latest";
/// The registry of names without a domain (Docker Hub).
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's legacy name, normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Docker Hub's namespace of official images: `busybox` is `library/busybox`.
const OFFICIAL_NAMESPACE: &str = "library/";
/// Docker's limit on the length of a name (domain and path).
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The familiar name: no `docker.io/`, no `library/` (`busybox`, `foo/bar`,
    /// `127.0.0.1:5000/app`, `quay.io/x/y`).
    pub repo: String,
    /// `latest` when neither a tag nor a digest was given; empty when only a digest was
    /// (`busybox@sha256:…` names no tag).
    pub tag: String,
    /// `sha256:<64 lowercase hex>`, when the reference pins one.
    pub digest: Option<String>,
}

impl fmt::Display for Reference {
    /// `repo:tag`, `repo@digest` or `repo:tag@digest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repo)?;
        if !self.tag.is_empty() {
            write!(f, ":{}", self.tag)?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl Reference {
    /// Parses `busybox`, `busybox:1.36`, `busybox@sha256:<hex>`, `busybox:1.36@sha256:<hex>`,
    /// `127.0.0.1:5000/x/y:tag`, `docker.io/library/busybox:latest`,
    /// `index.docker.io/library/busybox`.
    ///
    /// Errors ([`Error::Invalid`], naming the reference and the part at fault): an empty name,
    /// uppercase letters in the repository path, a path component that is not lowercase
    /// letters and digits joined by `.`, `_`, `__` or `-`, a bad domain, a tag that is not
    /// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, a digest that is not `sha256:` and 64 lowercase
    /// hex digits, a name longer than 255 characters.
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |why: String| Error::Invalid(format!("invalid reference {s:?}: {why}"));
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest).map_err(invalid)?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts a tag; one before it is a registry's port.
        let (name, tag) = match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => {
                check_tag(tag).map_err(invalid)?;
                (name, tag.to_string())
            }
            _ if digest.is_some() => (rest, String::new()),
            _ => (rest, DEFAULT_TAG.to_string()),
        };
        let repo = familiar_name(name).map_err(invalid)?;
        Ok(Self { repo, tag, digest })
    }

    /// The `repo` and `tag` query parameters of an import or a commit; an empty tag means
    /// `latest`. `repo` may be in full form (`docker.io/library/x` is stored as `x`).
    pub fn for_import(repo: &str, tag: &str) -> Result<Self> {
        let tag = if tag.is_empty() { DEFAULT_TAG } else { tag };
        check_tag(tag).map_err(|why| Error::Invalid(format!("invalid tag {tag:?}: {why}")))?;
        let repo = familiar_name(repo)
            .map_err(|why| Error::Invalid(format!("invalid repository name {repo:?}: {why}")))?;
        Ok(Self {
            repo,
            tag: tag.into(),
            digest: None,
        })
    }

    /// The registry's host as Docker names it: `docker.io` for names without a domain,
    /// otherwise the name's first component (`127.0.0.1:5000`, `localhost`, `quay.io`).
    pub fn registry(&self) -> &str {
        match split_domain(&self.repo) {
            (Some(domain), _) => domain,
            (None, _) => DOCKER_HUB,
        }
    }

    /// The repository within the registry, as the distribution API wants it:
    /// `library/busybox` for Docker Hub's official images, else the path after the domain.
    pub fn repository(&self) -> String {
        match split_domain(&self.repo) {
            (Some(_), path) => path.to_string(),
            (None, path) if !path.contains('/') => format!("{OFFICIAL_NAMESPACE}{path}"),
            (None, path) => path.to_string(),
        }
    }

    /// What a manifest request asks for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest.as_deref().unwrap_or(&self.tag)
    }
}

/// `(Some(domain), path)` when the first component names a registry (it holds `.` or `:`, is
/// `localhost`, or has uppercase letters, which a path may not), else `(None, name)`.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (Some(first), path)
        }
        _ => (None, name),
    }
}

/// Validates a name (no tag, no digest) and returns its familiar form.
fn familiar_name(name: &str) -> std::result::Result<String, String> {
    if name.is_empty() {
        return Err("the repository name is empty".into());
    }
    // Such a name would read as an image id (Docker refuses it for the same reason).
    if name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(
            "a repository name cannot be 64 hexadecimal digits: that is an image id".into(),
        );
    }
    if name.len() > NAME_MAX {
        return Err(format!(
            "the repository name is longer than {NAME_MAX} characters"
        ));
    }
    let (domain, path) = split_domain(name);
    if let Some(domain) = domain {
        check_domain(domain)?;
    }
    for component in path.split('/') {
        check_path_component(component)?;
    }
    Ok(match domain {
        Some(DOCKER_HUB | DOCKER_HUB_LEGACY) => match path.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(official) if !official.contains('/') => official.to_string(),
            _ => path.to_string(),
        },
        Some(domain) => format!("{domain}/{path}"),
        // `library/busybox` is Docker Hub's `busybox`.
        None => match path.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(official) if !official.contains('/') => official.to_string(),
            _ => path.to_string(),
        },
    })
}

/// `host[:port]`: host is DNS labels (letters, digits, inner `-`) joined by `.`, or `[ipv6]`.
fn check_domain(domain: &str) -> std::result::Result<(), String> {
    let bad =
        || format!("registry {domain:?} must be a host name or IP address with an optional :port");
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        let (v6, after) = rest.split_once(']').ok_or_else(bad)?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad());
        }
        match after {
            "" => return Ok(()),
            _ => ("", after.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, port),
            None => (domain, "1"),
        }
    };
    if port.is_empty() || !port.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !host.is_empty() && !host.split('.').all(label_ok) {
        return Err(bad());
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`, Docker's path-component.
fn check_path_component(c: &str) -> std::result::Result<(), String> {
    if c.chars().any(|ch| ch.is_ascii_uppercase()) {
        return Err(format!("repository name component {c:?} must be lowercase"));
    }
    let bad = || {
        format!(
            "repository name component {c:?} must be lowercase letters and digits, \
             separated by '.', '_', '__' or '-'"
        )
    };
    let alnum = |ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit();
    let bytes: Vec<char> = c.chars().collect();
    let mut i = 0;
    loop {
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return Err(bad());
        }
        if i == bytes.len() {
            return Ok(());
        }
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[sep_start..i].iter().collect();
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|ch| ch == '-')) {
            return Err(bad());
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !tag.is_empty()
        && tag.len() <= TAG_MAX
        && tag.starts_with(word)
        && tag.chars().all(|c| word(c) || c == '.' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tag {tag:?} must be 1 to {TAG_MAX} letters, digits, '_', '.' or '-', \
             not starting with '.' or '-'"
        ))
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest algorithm images use.
pub(super) fn check_digest(digest: &str) -> std::result::Result<(), String> {
    match digest.parse::<super::Digest>() {
        Ok(_) => Ok(()),
        Err(_) => Err(format!(
            "digest {digest:?} must be sha256: followed by 64 lowercase hex digits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn parses_and_normalises_like_docker() {
        // input, familiar repo, tag, digest, registry, repository
        let d = Some(D);
        let with_d = |s: &str| format!("{s}@{D}");
        type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, &'a str, &'a str);
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                "busybox",
                "latest",
                None,
                "docker.io",
                "library/busybox",
            ),
            (
                "busybox:1.36".into(),
                "busybox",
                "1.36",
                None,
                "docker.io",
                "library/busybox",
            ),
            (
                with_d("busybox"),
                "busybox",
                "",
                d,
                "docker.io",
                "library/busybox",
            ),
            (
                with_d("busybox:1.36"),
                "busybox",
                "1.36",
                d,
                "docker.io",
                "library/busybox",
            ),
            (
                "library/busybox".into(),
                "busybox",
                "latest",
                None,
                "docker.io",
                "library/busybox",
            ),
            (
                "docker.io/library/busybox:latest".into(),
                "busybox",
                "latest",
                None,
                "docker.io",
                "library/busybox",
            ),
            (
                "index.docker.io/library/busybox".into(),
                "busybox",
                "latest",
                None,
                "docker.io",
                "library/busybox",
            ),
            (
                "docker.io/foo/bar:v1".into(),
                "foo/bar",
                "v1",
                None,
                "docker.io",
                "foo/bar",
            ),
            (
                "index.docker.io/foo/bar".into(),
                "foo/bar",
                "latest",
                None,
                "docker.io",
                "foo/bar",
            ),
            (
                "foo/bar/baz".into(),
                "foo/bar/baz",
                "latest",
                None,
                "docker.io",
                "foo/bar/baz",
            ),
            (
                "127.0.0.1:5000/app".into(),
                "127.0.0.1:5000/app",
                "latest",
                None,
                "127.0.0.1:5000",
                "app",
            ),
            (
                "127.0.0.1:5000/a/b:t_1".into(),
                "127.0.0.1:5000/a/b",
                "t_1",
                None,
                "127.0.0.1:5000",
                "a/b",
            ),
            (
                with_d("127.0.0.1:5000/a"),
                "127.0.0.1:5000/a",
                "",
                d,
                "127.0.0.1:5000",
                "a",
            ),
            (
                "localhost/x".into(),
                "localhost/x",
                "latest",
                None,
                "localhost",
                "x",
            ),
            (
                "localhost:5000/x:1".into(),
                "localhost:5000/x",
                "1",
                None,
                "localhost:5000",
                "x",
            ),
            (
                "quay.io/x/y".into(),
                "quay.io/x/y",
                "latest",
                None,
                "quay.io",
                "x/y",
            ),
            (
                "Quay.IO/x/y".into(),
                "Quay.IO/x/y",
                "latest",
                None,
                "Quay.IO",
                "x/y",
            ),
            (
                "[::1]:5000/x".into(),
                "[::1]:5000/x",
                "latest",
                None,
                "[::1]:5000",
                "x",
            ),
            (
                "a.b-c/d__e_f--g.h".into(),
                "a.b-c/d__e_f--g.h",
                "latest",
                None,
                "a.b-c",
                "d__e_f--g.h",
            ),
            (
                "my-app_1.2:V1.0-rc".into(),
                "my-app_1.2",
                "V1.0-rc",
                None,
                "docker.io",
                "library/my-app_1.2",
            ),
        ];
        for (input, repo, tag, digest, registry, repository) in cases {
            let r = Reference::parse(&input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                (r.repo.as_str(), r.tag.as_str(), r.digest.as_deref()),
                (repo, tag, digest),
                "{input}"
            );
            assert_eq!(r.registry(), registry, "{input}");
            assert_eq!(r.repository(), repository, "{input}");
        }
    }

    #[test]
    fn display_is_the_familiar_form() {
        for (input, shown) in [
            ("busybox".to_string(), "busybox:latest".to_string()),
            ("docker.io/library/busybox:1".into(), "busybox:1".into()),
            (format!("busybox@{D}"), format!("busybox@{D}")),
            (format!("reg:5000/a:t@{D}"), format!("reg:5000/a:t@{D}")),
        ] {
            assert_eq!(Reference::parse(&input).unwrap().to_string(), shown);
        }
        let r = Reference::parse(&format!("busybox:1@{D}")).unwrap();
        assert_eq!(r.manifest_reference(), D);
        assert_eq!(
            Reference::parse("busybox:1").unwrap().manifest_reference(),
            "1"
        );
    }

    #[test]
    fn rejects_bad_names_tags_and_digests_with_the_reason() {
        let long = format!("a{}", "b".repeat(NAME_MAX));
        let cases = [
            ("", "empty"),
            ("Busybox", "\"Busybox\" must be lowercase"),
            ("foo/Bar", "\"Bar\" must be lowercase"),
            ("a//b", "component \"\" must be lowercase letters"),
            ("-a", "component \"-a\""),
            ("a_", "component \"a_\""),
            ("a...b", "component \"a...b\""),
            ("a___b", "component \"a___b\""),
            ("reg:5000/", "component \"\""),
            ("reg:port/x", "registry \"reg:port\""),
            ("-reg.io/x", "registry \"-reg.io\""),
            ("reg_1.io/x", "registry \"reg_1.io\""),
            ("[zz]:5000/x", "registry \"[zz]:5000\""),
            ("busybox:", "tag \"\""),
            ("busybox:-x", "tag \"-x\""),
            ("busybox:a+b", "tag \"a+b\""),
            (
                "busybox@sha256:abc",
                "digest \"sha256:abc\" must be sha256:",
            ),
            ("busybox@md5:0123", "digest \"md5:0123\""),
            (
                "busybox@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
                "64 lowercase hex",
            ),
            (&long, "longer than 255"),
        ];
        for (input, why) in cases {
            let err = Reference::parse(input).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid reference {input:?}: ")) && msg.contains(why),
                "{input:?}: {msg}"
            );
            assert_eq!(err.kind(), crate::error::Kind::InvalidInput);
        }
        let too_long_tag = format!("busybox:{}", "a".repeat(TAG_MAX + 1));
        assert!(Reference::parse(&too_long_tag).is_err());
        assert!(Reference::parse(&format!("busybox:{}", "a".repeat(TAG_MAX))).is_ok());
    }

    #[test]
    fn imports_take_repo_and_tag_apart() {
        let r = Reference::for_import("busybox", "").unwrap();
        assert_eq!(r.to_string(), "busybox:latest");
        let r = Reference::for_import("docker.io/library/busybox", "1").unwrap();
        assert_eq!((r.repo.as_str(), r.tag.as_str()), ("busybox", "1"));
        let r = Reference::for_import("reg:5000/a/b", "x").unwrap();
        assert_eq!(r.to_string(), "reg:5000/a/b:x");
        let err = Reference::for_import("", "x").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        let err = Reference::for_import("Busybox", "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be lowercase"), "{err}");
        let err = Reference::for_import("busybox", "a:b")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid tag \"a:b\""), "{err}");
    }
}

/// Client input never panics the reference parser: any string gives a reference or a typed
/// error, and a parsed reference prints as a reference that parses back to itself.
/// `PROPTEST_CASES=10000` for the long run.
#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// Strings made of the characters references are made of, so that many of them parse.
    fn reference_like() -> impl Strategy<Value = String> {
        let component = "[a-z0-9]{1,4}([._-]{1,2}[a-z0-9]{1,3})?";
        let domain = prop_oneof![
            Just(String::new()),
            Just("docker.io/".to_string()),
            Just("index.docker.io/".to_string()),
            Just("localhost/".to_string()),
            "[a-zA-Z0-9.-]{1,8}(:[0-9]{1,5})?/",
            "\\[[0-9a-f:]{2,10}\\](:[0-9]{1,4})?/",
        ];
        let tag = prop_oneof![Just(String::new()), ":[A-Za-z0-9_.-]{0,10}"];
        let digest = prop_oneof![
            Just(String::new()),
            "@sha256:[0-9a-f]{64}",
            "@[a-z0-9]{0,6}:[0-9a-fA-F]{0,66}",
        ];
        (
            domain,
            prop_oneof![Just(String::new()), Just("library/".to_string())],
            prop::collection::vec(component, 1..4),
            tag,
            digest,
        )
            .prop_map(|(d, lib, path, t, g)| format!("{d}{lib}{}{t}{g}", path.join("/")))
    }

    fn reparses(r: &Reference) -> std::result::Result<(), TestCaseError> {
        match Reference::parse(&r.to_string()) {
            Ok(again) => prop_assert_eq!(&again, r),
            Err(e) => prop_assert!(false, "{r:?} printed as {r} does not parse: {e}"),
        }
        Ok(())
    }

    fn check(s: &str) -> std::result::Result<(), TestCaseError> {
        match Reference::parse(s) {
            Ok(r) => {
                prop_assert!(!r.repo.is_empty());
                prop_assert!(r.repo.len() <= NAME_MAX);
                prop_assert!(!r.tag.is_empty() || r.digest.is_some(), "{r:?}");
                let _ = (r.registry(), r.repository(), r.manifest_reference());
                reparses(&r)?;
            }
            Err(Error::Invalid(why)) => prop_assert!(why.contains("reference"), "{why}"),
            Err(e) => prop_assert!(false, "{s:?}: not a typed invalid-reference error: {e}"),
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_string(s in ".{0,80}") {
            check(&s)?;
        }

        #[test]
        fn reference_like_strings(s in reference_like()) {
            check(&s)?;
        }

        #[test]
        fn import_names(repo in ".{0,30}|[a-z0-9./:_-]{0,30}", tag in ".{0,10}|[A-Za-z0-9_.-]{0,10}") {
            match Reference::for_import(&repo, &tag) {
                Ok(r) => {
                    prop_assert!(r.digest.is_none() && !r.tag.is_empty());
                    reparses(&r)?;
                }
                Err(Error::Invalid(_)) => {}
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
