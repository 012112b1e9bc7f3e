//! Building images from Dockerfiles (issue 9). The front end reads what the client sent: the
//! build context tar ([`context`]), its `.dockerignore` ([`dockerignore`]), the Dockerfile
//! ([`dockerfile`]) and Docker's shell-word processing of instruction arguments ([`words`]).
//! The executor below runs the parsed stages: [`builder`] (stages, steps, cache), [`copy`]
//! (`COPY`/`ADD` on the host), [`run`] (the build VM) and [`layer`] (layers from upper dirs).

pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod words;

pub mod builder;
pub mod copy;
pub mod layer;
pub mod run;
