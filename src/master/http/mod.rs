//! The master's HTTP side: a JSON API (reads, plus the writes behind the write gate: submitting,
//! cancelling or removing a job, forgetting a dead worker), Prometheus text at `/metrics` and a
//! self-contained live dashboard at `/`. It shares the protocol server's
//! `MasterState` and shutdown signal; the grid's own traffic never goes through HTTP.

mod api;
mod forget;
mod guard;
mod history;
mod job_page;
mod jobs_write;
mod metrics;
mod performance;
mod results;
mod serve;
mod task_output;

pub use guard::AllowedHosts;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{header, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{middleware, Json, Router};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::config::HttpLimits;
use super::jobs::JobError;
use super::{MasterError, MasterState};
use crate::backend::BackendError;

/// The dashboard: one page, inline CSS and JS, polling the JSON API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// What every HTTP handler sees.
#[derive(Clone)]
pub struct HttpState {
    /// The master's shared state (queue, store, worker registry).
    pub master: Arc<MasterState>,
    /// `embedded` or `redis`, for `/health` (never the URL: it may hold a password).
    pub backend: &'static str,
    /// When the master started, for `/health`'s uptime.
    pub started: Instant,
    /// The host names requests may name.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// One permit per result render allowed at once.
    pub renders: Arc<Semaphore>,
    /// How many permits `renders` has.
    pub max_renders: usize,
    /// The grid's recent progress, sampled while the HTTP side runs.
    pub history: Arc<history::History>,
}

/// Why an API request failed; rendered as `{"error": "..."}` with a fitting status code.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The job id is unknown.
    #[error("no job with id {0:?}")]
    NoSuchJob(String),
    /// A malformed query string (`?limit=abc`).
    #[error("bad query: {0}")]
    BadQuery(String),
    /// The job exists but has nothing at this address (an image of a job that draws none).
    #[error("{0}")]
    NotFound(String),
    /// The job has not completed yet.
    #[error("{0}")]
    NotReady(String),
    /// Stored results that do not render.
    #[error("unreadable stored result: {0}")]
    Corrupt(String),
    /// As many results are being rendered as the master allows at once.
    #[error(
        "{0} results are being rendered, as many as this master renders at once (the limit: \
         --http-max-renders); retry in a few seconds"
    )]
    Busy(usize),
    /// The request is wrong (a bad batch, a kind that uploads).
    #[error("{0}")]
    Invalid(String),
    /// The client is over one of its rate limits.
    #[error("{0}")]
    RateLimited(String),
    /// The backend failed or is unreachable.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

impl From<JobError> for ApiError {
    fn from(err: JobError) -> Self {
        match err {
            JobError::NoSuchJob(id) => ApiError::NoSuchJob(id),
            JobError::NotReady(message) => ApiError::NotReady(message),
            JobError::Invalid(message) => ApiError::Invalid(message),
            JobError::Refused(refusal) => ApiError::Invalid(refusal.message),
            JobError::RateLimited(message) => ApiError::RateLimited(message),
            JobError::Backend(err) => ApiError::Backend(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::NoSuchJob(_)
            | ApiError::NotFound(_)
            | ApiError::Backend(BackendError::NoSuchJob(_)) => StatusCode::NOT_FOUND,
            ApiError::NotReady(_) => StatusCode::CONFLICT,
            ApiError::Corrupt(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::BadQuery(_) | ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Backend(BackendError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Backend(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Busy(_) => {
                let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, self.to_string());
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
                return response;
            }
        };
        if status.is_server_error() {
            tracing::warn!(component = "http", error = %self, "request failed");
        }
        json_error(status, self.to_string())
    }
}

/// `{"error": message}` with `status`.
fn json_error(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Every route of the HTTP API, in the order the 404 hint lists them.
pub fn router(state: HttpState) -> Router {
    let routes = Routes::default()
        .route("/", get(dashboard))
        .route("/health", get(api::health))
        .route("/jobs", get(api::jobs).post(jobs_write::submit))
        .route("/jobs/{id}", get(api::job).delete(jobs_write::remove))
        .route("/jobs/{id}/results", get(jobs_write::results))
        .route("/jobs/{id}/view", get(job_page::page))
        .route("/jobs/{id}/image.png", get(results::image))
        .route("/jobs/{id}/tasks/{task}/stdout", get(task_output::stdout))
        .route("/jobs/{id}/tasks/{task}/stderr", get(task_output::stderr))
        .route("/workers", get(api::workers))
        .route("/workers/{id}", get(performance::one))
        .route("/workers/{id}/forget", post(forget::handler))
        .route("/stats/performance", get(performance::all))
        .route("/alerts", get(api::alerts))
        .route("/stats", get(api::stats))
        .route("/stats/history", get(history::handler))
        .route("/metrics", get(metrics::handler));
    let hint = routes.hint();
    routes
        .router
        // Browsers ask for an icon on their own: answered, but not worth a line in the hint.
        .route("/favicon.ico", get(favicon))
        .route("/favicon.svg", get(favicon))
        .fallback(move |uri: Uri| not_found(uri, hint.clone()))
        .layer(middleware::from_fn_with_state(state.clone(), guard::check))
        .with_state(state)
}

/// The router being built and the paths it serves, so the 404 hint is read off the same table
/// and never names a route that does not exist or misses one that does.
#[derive(Default)]
struct Routes {
    router: Router<HttpState>,
    paths: Vec<&'static str>,
}

impl Routes {
    fn route(mut self, path: &'static str, methods: MethodRouter<HttpState>) -> Self {
        self.router = self.router.route(path, methods);
        self.paths.push(path);
        self
    }

    /// `try /, /health, /jobs, /jobs/ID, ...`: every path, its parameters in capitals.
    fn hint(&self) -> Arc<str> {
        let paths: Vec<String> = self
            .paths
            .iter()
            .map(|path| path.replace("{id}", "ID").replace("{task}", "N"))
            .collect();
        format!("try {}", paths.join(", ")).into()
    }
}

/// A small grid of squares, so browsers asking for an icon get one instead of a 404.
async fn favicon() -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml")], FAVICON).into_response()
}

const FAVICON: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#1d2329"/><rect x="3" y="3" width="4" height="4" fill="#2f8f4e"/><rect x="9" y="3" width="4" height="4" fill="#2f8f4e"/><rect x="3" y="9" width="4" height="4" fill="#2f8f4e"/><rect x="9" y="9" width="4" height="4" fill="#c98a0b"/></svg>"##;

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

async fn not_found(uri: Uri, hint: Arc<str>) -> Response {
    let message = format!("no such endpoint: {}; {hint}", uri.path());
    json_error(StatusCode::NOT_FOUND, message)
}

/// Binds the HTTP listener, with the same error as the protocol port when the address is taken.
pub async fn bind(addr: &str) -> Result<TcpListener, MasterError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MasterError::Bind {
            addr: format!("{addr} (HTTP; pick another --http, or --http off)"),
            source,
        })
}

/// Serves the API on `listener` within `limits` until `shutdown` completes; open connections
/// are then asked to close (the caller bounds how long it waits for them).
pub async fn run(
    listener: TcpListener,
    state: HttpState,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let sampler = history::sample(state.clone());
    tokio::select! {
        () = serve::serve(listener, router(state), limits, shutdown) => {}
        () = sampler => {}
    }
}

/// Content type of the Prometheus text exposition format, version 0.0.4.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A Prometheus text response.
fn prometheus_text(body: String) -> Response {
    ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body).into_response()
}
