//! `POST /workers/{id}/forget`: drops a dead worker from the views (the write gate checks origin
//! and token first); a live worker is refused with 409.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{json_error, HttpState};
use crate::master::forget::{forget, ForgetError};

/// `POST /workers/{id}/forget`.
pub async fn handler(State(state): State<HttpState>, Path(id): Path<String>) -> Response {
    match forget(&state.master, &id).await {
        Ok(()) => Json(serde_json::json!({ "forgotten": id })).into_response(),
        Err(err @ ForgetError::Unknown(_)) => json_error(StatusCode::NOT_FOUND, err.to_string()),
        Err(err @ ForgetError::Alive { .. }) => json_error(StatusCode::CONFLICT, err.to_string()),
        Err(ForgetError::Backend(err)) => super::ApiError::Backend(err).into_response(),
    }
}
