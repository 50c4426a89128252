//! `GET /jobs/{id}/view`: one job's page (parameters, per-task timing and worker, a result
//! preview, a cancel button that asks for the token). The page is static; it reads
//! `/jobs/{id}` and sends `DELETE /jobs/{id}` itself, so it shows only what the API shows.

use axum::http::header;
use axum::response::IntoResponse;

const JOB_PAGE: &str = include_str!("job.html");

/// The job page (the same for every id: the page reads its id from its address).
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        JOB_PAGE,
    )
}
