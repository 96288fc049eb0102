//! The web layer's error, and the one place that maps errors to HTTP
//! statuses ([`WebError::status`]), as JSON for the API and as a page for
//! the UI: axum's extractor rejections and the registry's and store's
//! errors become [`WebError`]s here, and every error response is made
//! here.

use std::net::SocketAddr;

use axum::extract::rejection::{FormRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use goflow_store::StoreError;

use super::WebState;
use crate::RegistryError;

/// What can go wrong in the web server or one of its requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WebError {
    /// The request is invalid (bad JSON, a bad date, an unknown state...):
    /// `400`.
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or wrong ones: `401`.
    #[error("{0}")]
    Unauthorized(String),
    /// A form or request without the session's CSRF token: `403`.
    #[error("{0}")]
    Forbidden(String),
    /// No such DAG, run, task or page: `404`.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state (a duplicate logical
    /// date, clearing a running task): `409`.
    #[error("{0}")]
    Conflict(String),
    /// The store failed; the status depends on how (see
    /// [`WebError::status`]).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An unexpected failure: `500`.
    #[error("{0}")]
    Internal(String),
    /// The web configuration is invalid (a short token, an empty user).
    #[error("invalid web configuration: {0}")]
    Config(String),
    /// The server could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The server stopped on an I/O error.
    #[error("the web server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl WebError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::Store(e) => match e {
                StoreError::DagNotFound { .. }
                | StoreError::RunNotFound { .. }
                | StoreError::TaskNotFound { .. } => StatusCode::NOT_FOUND,
                StoreError::RunExists { .. }
                | StoreError::TasksActive { .. }
                | StoreError::Model(_) => StatusCode::CONFLICT,
                StoreError::InvalidInput { .. } => StatusCode::BAD_REQUEST,
                StoreError::Connect { .. } | StoreError::Pool { .. } | StoreError::Cancelled => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            },
            WebError::Internal(_)
            | WebError::Config(_)
            | WebError::Bind { .. }
            | WebError::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message shown to the client. Server-side failures are logged
    /// in full and shown without the database's details.
    pub(crate) fn public_message(&self) -> String {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
            match self {
                WebError::Store(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                    "the database is unavailable; try again shortly".to_owned()
                }
                WebError::Store(_) => {
                    "the database failed; the server log has the details".to_owned()
                }
                other => other.to_string(),
            }
        } else {
            self.to_string()
        }
    }
}

impl From<RegistryError> for WebError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::UnknownDag { .. } => WebError::NotFound(e.to_string()),
            RegistryError::DuplicateDag { .. } => WebError::Internal(e.to_string()),
        }
    }
}

impl From<JsonRejection> for WebError {
    fn from(e: JsonRejection) -> Self {
        WebError::BadRequest(format!("invalid JSON body: {}", e.body_text()))
    }
}

impl From<QueryRejection> for WebError {
    fn from(e: QueryRejection) -> Self {
        WebError::BadRequest(format!("invalid query: {}", e.body_text()))
    }
}

impl From<PathRejection> for WebError {
    fn from(e: PathRejection) -> Self {
        WebError::BadRequest(format!("invalid path: {}", e.body_text()))
    }
}

impl From<FormRejection> for WebError {
    fn from(e: FormRejection) -> Self {
        WebError::BadRequest(format!("invalid form: {}", e.body_text()))
    }
}

/// The JSON body of every API error.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

/// A [`WebError`] answered as JSON `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError(pub WebError);

impl<E: Into<WebError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = Json(ErrorBody {
            error: self.0.public_message(),
        });
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

/// A [`WebError`] answered as an HTML page.
#[derive(Debug)]
pub(crate) struct PageError(pub WebError);

impl<E: Into<WebError>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

/// The message of a [`PageError`], on its response until
/// [`render_page_error`] (which knows the base path of the page's links)
/// renders the page.
#[derive(Clone, Debug)]
struct PageErrorMessage(String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut res = self.0.status().into_response();
        res.extensions_mut()
            .insert(PageErrorMessage(self.0.public_message()));
        res
    }
}

/// Middleware of the UI's routes: renders a [`PageError`] as the error
/// page, its links under the base path.
pub(crate) async fn render_page_error(
    State(state): State<WebState>,
    mut res: Response,
) -> Response {
    match res.extensions_mut().remove::<PageErrorMessage>() {
        Some(PageErrorMessage(message)) => {
            let status = res.status();
            (
                status,
                super::views::error_page(state.urls(), status, &message),
            )
                .into_response()
        }
        None => res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_statuses() {
        let not_found = WebError::from(StoreError::RunNotFound { run: 1 });
        assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
        let busy = WebError::from(StoreError::TasksActive {
            run: 1,
            tasks: vec!["a".into()],
        });
        assert_eq!(busy.status(), StatusCode::CONFLICT);
        let bad = WebError::from(StoreError::InvalidInput {
            what: "x",
            value: "y".into(),
            reason: "z",
        });
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            WebError::from(StoreError::Cancelled).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
