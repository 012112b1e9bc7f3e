//! `.dockerignore` rules for the build context. The matcher lives in `hyper-proto` because
//! `hyperctl build` needs the same one to leave excluded files out of the context it sends;
//! this module re-exports it for the executor.

pub use hyper_proto::dockerignore::{DockerIgnore, PatternError, clean, has_wildcards, path_match};
