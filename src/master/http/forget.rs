//! `POST /workers/{id}/forget`: the one write of the HTTP API. When the master has a cluster
//! token it must come as `Authorization: Bearer TOKEN`; a live worker is refused with 409.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{json_error, HttpState};
use crate::master::forget::{forget, ForgetError};

/// `POST /workers/{id}/forget`.
pub async fn handler(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(expected) = &state.master.config.token {
        let offered = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let authorized =
            offered.is_some_and(|offered| same_bytes(offered.as_bytes(), expected.as_bytes()));
        if !authorized {
            let mut response = json_error(
                StatusCode::UNAUTHORIZED,
                "this master has a cluster token: send it as `Authorization: Bearer TOKEN`".into(),
            );
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return response;
        }
    }
    match forget(&state.master, &id).await {
        Ok(()) => Json(serde_json::json!({ "forgotten": id })).into_response(),
        Err(err @ ForgetError::Unknown(_)) => json_error(StatusCode::NOT_FOUND, err.to_string()),
        Err(err @ ForgetError::Alive { .. }) => json_error(StatusCode::CONFLICT, err.to_string()),
        Err(ForgetError::Backend(err)) => super::ApiError::Backend(err).into_response(),
    }
}

/// Compares in time that depends on the length only, so a token is not guessed byte by byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
