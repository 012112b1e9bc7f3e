//! hyperd's one public error type, and the kinds every domain error is sorted into. The HTTP
//! status of a kind is decided in exactly one place, `api/error.rs`.

/// What went wrong, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request itself is wrong (bad JSON, a bad field, a command that does not exist).
    InvalidInput,
    NotFound,
    /// Credentials the client gave were refused (by a registry).
    Unauthorized,
    /// The request is fine but the object's state forbids it now (start a running pod).
    Conflict,
    /// A VM or shim the request needs is gone or not answering.
    Unavailable,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Pod(#[from] crate::pod::Error),
    #[error(transparent)]
    Container(#[from] crate::container::Error),
    #[error(transparent)]
    Image(#[from] crate::image::Error),
    #[error(transparent)]
    Commit(#[from] crate::image::commit::Error),
    #[error(transparent)]
    Vm(#[from] crate::vm::Error),
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    #[error(transparent)]
    Network(#[from] crate::network::Error),
    #[error(transparent)]
    Volume(#[from] crate::volume::Error),
    #[error("{0}")]
    InvalidInput(String),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::Pod(e) => e.kind(),
            Error::Container(e) => e.kind(),
            Error::Image(e) => e.kind(),
            Error::Commit(e) => e.kind(),
            Error::Vm(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Volume(e) => e.kind(),
            Error::InvalidInput(_) => Kind::InvalidInput,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
