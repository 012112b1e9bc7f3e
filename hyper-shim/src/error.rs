//! The shim's error type and its one mapping to gRPC status codes.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The VM is not (or no longer) able to serve the request.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// The VMM driver cannot do this.
    #[error("{0}: not supported")]
    Unsupported(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A helper or the VMM died; `output` is the end of what it printed.
    #[error("{what} exited ({status}){}", output_suffix(.output))]
    ChildExited {
        what: String,
        status: String,
        output: String,
    },
    /// The guest agent refused or failed a request.
    #[error("agent: {}", .0.message())]
    Agent(Status),
    /// The VM's network card could not be made.
    #[error(transparent)]
    Tap(#[from] crate::tap::TapError),
    /// The VMM's control API answered with an error.
    #[error("{vmm}: {message}")]
    Vmm { vmm: &'static str, message: String },
}

fn output_suffix(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", output.trim())
    }
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound(_) => Code::NotFound,
            Error::Conflict(_) => Code::FailedPrecondition,
            Error::Unavailable(_) | Error::ChildExited { .. } => Code::Unavailable,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Unsupported(_) => Code::Unimplemented,
            // The agent's own classification (a missing command is the caller's mistake).
            Error::Agent(status) => status.code(),
            Error::Tap(crate::tap::TapError::InvalidSpec(_)) => Code::InvalidArgument,
            // A missing bridge or a tap the host refuses: the host is not ready for this VM.
            Error::Tap(_) => Code::FailedPrecondition,
            Error::Io { .. } | Error::Vmm { .. } => Code::Internal,
        }
    }
}

impl From<Status> for Error {
    fn from(s: Status) -> Self {
        Error::Agent(s)
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        Status::new(e.code(), e.to_string())
    }
}
