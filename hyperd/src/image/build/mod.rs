//! `POST /image/build`: images from Dockerfiles, every `RUN` inside a VM. The Dockerfile front
//! end (grammar, word expansion, `.dockerignore`, the build context) is in the modules of the
//! first group; the executor (stages, steps, cache, layers from upper dirs, the build VM) in
//! the second.

pub mod layer;
pub mod run;
