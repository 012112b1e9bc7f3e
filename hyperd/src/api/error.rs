//! The one place where an error becomes an HTTP status: by its [`Kind`], never by its text.
//! The body is the message as text/plain, as hyperd 1.1 answers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, Kind};

pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

pub fn status_of(kind: Kind) -> StatusCode {
    match kind {
        Kind::InvalidInput => StatusCode::BAD_REQUEST,
        Kind::NotFound => StatusCode::NOT_FOUND,
        Kind::Unauthorized => StatusCode::UNAUTHORIZED,
        Kind::Conflict => StatusCode::CONFLICT,
        Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind());
        if status.is_server_error() {
            tracing::error!("{}", self.0);
        } else {
            tracing::info!(status = status.as_u16(), "{}", self.0);
        }
        (status, format!("{}\n", self.0)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_mistakes_are_never_500() {
        assert_eq!(status_of(Kind::InvalidInput), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(Kind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_of(Kind::Conflict), StatusCode::CONFLICT);
        let e: ApiError = crate::image::Error::NotFound("x".into()).into();
        assert_eq!(e.into_response().status(), StatusCode::NOT_FOUND);
    }
}
