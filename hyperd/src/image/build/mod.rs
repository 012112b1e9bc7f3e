//! Building images from Dockerfiles (issue 9). The front end reads what the client sent: the
//! build context tar ([`context`]), its `.dockerignore` ([`dockerignore`]), the Dockerfile
//! ([`dockerfile`]) and Docker's shell-word processing of instruction arguments ([`words`]).
//! The executor below runs the parsed stages.

pub mod context;
pub mod dockerfile;
pub mod dockerignore;
pub mod words;
