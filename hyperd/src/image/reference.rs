//! Image references: `repo[:tag]` with `latest` as the default tag.

use std::fmt;

use super::{Error, Result};

pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub repo: String,
    pub tag: String,
    pub digest: Option<super::Digest>,
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repo, self.tag)
    }
}

fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/:".contains(c))
        && !repo.starts_with(['.', '-', '/'])
}

fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

impl Reference {
    /// `busybox`, `busybox:1.36`, `registry:5000/x/y:tag`.
    pub fn parse(s: &str) -> Result<Self> {
        let (repo, tag) = match s.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (s, DEFAULT_TAG),
        };
        Self::for_import(repo, tag)
    }

    /// The `repo` and `tag` query parameters of an import; an empty tag means `latest`.
    pub fn for_import(repo: &str, tag: &str) -> Result<Self> {
        let tag = if tag.is_empty() { DEFAULT_TAG } else { tag };
        if !valid_repo(repo) {
            return Err(Error::Invalid(format!(
                "repo {repo:?}: must be lowercase letters, digits and . _ - /"
            )));
        }
        if !valid_tag(tag) {
            return Err(Error::Invalid(format!("tag {tag:?}: invalid")));
        }
        Ok(Self {
            repo: repo.into(),
            tag: tag.into(),
            digest: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_default_to_latest_and_ports_are_not_tags() {
        assert_eq!(
            Reference::parse("busybox").unwrap().to_string(),
            "busybox:latest"
        );
        assert_eq!(Reference::parse("busybox:1.36").unwrap().tag, "1.36");
        let r = Reference::parse("reg:5000/a/b").unwrap();
        assert_eq!(
            (r.repo.as_str(), r.tag.as_str()),
            ("reg:5000/a/b", "latest")
        );
        assert!(Reference::parse("Busybox").is_err());
        assert!(Reference::for_import("", "x").is_err());
    }
}
