//! The shapes of batch loading and queue clearing on the wire: the jobs of one batch file, what
//! became of each, and which queued jobs a purge takes away.

use serde::{Deserialize, Serialize};

use crate::records::Priority;

/// One job of a `submit_batch`: a kind that needs no upload, with its submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchJob {
    /// The job id (the task's id in its file): an id that exists already is left alone.
    pub job_id: String,
    /// The job kind's tag.
    pub kind: String,
    /// The kind's submission.
    pub spec: serde_json::Value,
    /// Queue priority.
    #[serde(default)]
    pub priority: Priority,
    /// The algorithm as the file named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// The task's description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// What a `submit_batch` did with one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchJobAccepted {
    /// The job id.
    pub job_id: String,
    /// The job kind's tag.
    pub kind: String,
    /// Tasks the job was cut into.
    pub total_chunks: u32,
    /// True when the id existed already, so nothing was created.
    pub existing: bool,
}

/// Which queued jobs a purge cancels: those matching every filter given.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PurgeFilter {
    /// Only jobs of this priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// Only jobs of this kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}
