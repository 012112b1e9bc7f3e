//! The agent's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a network change.
    #[error("{context}: {message}")]
    Netlink { context: String, message: String },
    #[error("{context}: {source}")]
    Container {
        context: String,
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn container(
        context: impl Into<String>,
        source: libcontainer::error::LibcontainerError,
    ) -> Self {
        Error::Container {
            context: context.into(),
            source,
        }
    }

    fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Conflict(_) => Code::FailedPrecondition,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NotFound
            }
            Error::Io { .. } | Error::Container { .. } | Error::Netlink { .. } => Code::Internal,
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
