//! The one place where library errors become HTTP statuses (as
//! docs/ARCHITECTURE.md "Errors" says: NotFound 404, AlreadyExists 409,
//! InvalidArgument 400, FailedPrecondition 409, Internal 500), answered
//! in Docker's shape, `{"message": "..."}`.

use hull_container::supervisor::one_line;
use hull_container::ErrorKind;
use hyper::StatusCode;

use crate::response::{json, Response};

/// An error answer: a status and Docker's one-line message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// What hull does not do (yet): never a wrong success.
    pub fn not_implemented(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_IMPLEMENTED,
            format!("{what} is not implemented by hull's Engine API"),
        )
    }

    pub fn into_response(self) -> Response {
        json(self.status, &serde_json::json!({ "message": self.message }))
    }
}

/// The HTTP status for a kind of library failure.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::AlreadyExists => StatusCode::CONFLICT,
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::FailedPrecondition => StatusCode::CONFLICT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<hull_container::Error> for ApiError {
    fn from(e: hull_container::Error) -> Self {
        use hull_container::record::LookupError;
        let message = match &e {
            // Docker's words, which its clients show as they are.
            hull_container::Error::Lookup(LookupError::NotFound(name)) => {
                format!("No such container: {name}")
            }
            hull_container::Error::Image(hull_image::Error::NotFound(name)) => {
                format!("No such image: {name}")
            }
            _ => one_line(&e),
        };
        Self::new(status_of(e.kind()), message)
    }
}

impl From<hull_container::record::LookupError> for ApiError {
    fn from(e: hull_container::record::LookupError) -> Self {
        hull_container::Error::from(e).into()
    }
}

impl From<hull_image::Error> for ApiError {
    fn from(e: hull_image::Error) -> Self {
        hull_container::Error::Image(e).into()
    }
}

impl From<hull_net::NetworkError> for ApiError {
    fn from(e: hull_net::NetworkError) -> Self {
        use hull_net::NetworkError as N;
        let status = match &e {
            N::NotFound(_) => StatusCode::NOT_FOUND,
            N::Exists(_) | N::InUse { .. } => StatusCode::CONFLICT,
            N::InvalidName(_) | N::InvalidSubnet(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, one_line(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_status() {
        assert_eq!(status_of(ErrorKind::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorKind::AlreadyExists), StatusCode::CONFLICT);
        assert_eq!(
            status_of(ErrorKind::InvalidArgument),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(ErrorKind::FailedPrecondition),
            StatusCode::CONFLICT
        );
        assert_eq!(
            status_of(ErrorKind::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_missing_container_is_said_in_dockers_words() {
        let e = hull_container::Error::Lookup(hull_container::record::LookupError::NotFound(
            "web".into(),
        ));
        let api = ApiError::from(e);
        assert_eq!(api.status, StatusCode::NOT_FOUND);
        assert_eq!(api.message, "No such container: web");
    }
}
