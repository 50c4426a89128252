//! The JSON batch format: `{"metadata": {...}, "tasks": [...]}`. Each task has a `task_id` (its
//! job id), an `algorithm`, `parameters`, a `priority` (high/medium/low) and an optional
//! `description`. `python`/`cython` are particle simulations (`num_particles`, `num_steps`,
//! `seed`, optional `replicas`); the Julia names take `width`, `height`, `iterations`; `search`
//! takes `patterns` (a list), `fasta` (a path relative to the batch file), optional `strand`
//! (`forward`/`both`) and `chunk_size`. `metadata` is kept as written: its counts are not trusted.

use std::collections::HashSet;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{Algorithm, Batch, BatchError, BatchTask, ALGORITHMS, PRIORITIES};
use crate::jobs::particles::ParticlesSubmission;
use crate::jobs::search::SearchSubmission;
use crate::search::{Pattern, PatternSet, SearchOptions, StrandMode};

pub(super) fn parse(text: &str) -> Result<Batch, BatchError> {
    let document: Value = serde_json::from_str(text).map_err(|e| {
        BatchError::at(
            format!("JSON line {}, column {}", e.line(), e.column()),
            format!("malformed JSON ({e}); is the file complete?"),
        )
    })?;
    let Value::Object(mut document) = document else {
        return Err(BatchError::at(
            "$",
            "expected an object with \"metadata\" and \"tasks\"",
        ));
    };
    let metadata = document.remove("metadata");
    if let Some(metadata) = &metadata {
        if !metadata.is_object() {
            return Err(BatchError::field("$", "metadata", "must be an object"));
        }
    }
    let tasks = match document.remove("tasks") {
        Some(Value::Array(tasks)) => tasks,
        Some(_) => return Err(BatchError::field("$", "tasks", "must be a list of tasks")),
        None => {
            return Err(BatchError::field(
                "$",
                "tasks",
                "missing; a batch file holds a \"tasks\" list",
            ))
        }
    };
    let mut seen = HashSet::with_capacity(tasks.len());
    let mut parsed = Vec::with_capacity(tasks.len());
    for (index, task) in tasks.into_iter().enumerate() {
        let path = format!("tasks[{index}]");
        let task = self::task(task, path.clone())?;
        if !seen.insert(task.task_id.clone()) {
            return Err(BatchError::field(
                path,
                "task_id",
                format!(
                    "{:?} is used by an earlier task; task ids are job ids and must be unique",
                    task.task_id
                ),
            ));
        }
        parsed.push(task);
    }
    Ok(Batch {
        tasks: parsed,
        metadata,
    })
}

/// Reads the fields of one JSON object, naming the path in every error.
struct Fields {
    path: String,
    fields: Map<String, Value>,
}

impl Fields {
    fn new(value: Value, path: String) -> Result<Self, BatchError> {
        match value {
            Value::Object(fields) => Ok(Self { path, fields }),
            _ => Err(BatchError::at(path, "expected an object")),
        }
    }

    fn missing(&self, name: &str) -> BatchError {
        BatchError::field(self.path.clone(), name, "missing")
    }

    fn string(&self, name: &str) -> Result<Option<&str>, BatchError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(BatchError::field(
                self.path.clone(),
                name,
                format!("expected a string, found {other}"),
            )),
        }
    }

    fn required_string(&self, name: &str) -> Result<&str, BatchError> {
        self.string(name)?.ok_or_else(|| self.missing(name))
    }

    fn number(&self, name: &str) -> Result<Option<u64>, BatchError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                BatchError::field(
                    self.path.clone(),
                    name,
                    format!("{value} is not a whole number"),
                )
            }),
        }
    }

    fn required_u64(&self, name: &str) -> Result<u64, BatchError> {
        self.number(name)?.ok_or_else(|| self.missing(name))
    }

    fn required_u32(&self, name: &str) -> Result<u32, BatchError> {
        let value = self.required_u64(name)?;
        u32::try_from(value).map_err(|_| {
            BatchError::field(
                self.path.clone(),
                name,
                format!("{value} is too large (at most {})", u32::MAX),
            )
        })
    }

    fn optional_u32(&self, name: &str) -> Result<Option<u32>, BatchError> {
        match self.number(name)? {
            None => Ok(None),
            Some(_) => self.required_u32(name).map(Some),
        }
    }
}

fn task(value: Value, path: String) -> Result<BatchTask, BatchError> {
    let mut task = Fields::new(value, path.clone())?;
    let task_id = task.required_string("task_id")?.to_string();
    if !super::valid_job_id(&task_id) {
        return Err(BatchError::field(
            path,
            "task_id",
            format!(
                "{task_id:?}: use 1-{} letters, digits, '-', '_', '.' or ':'",
                crate::jobs::MAX_JOB_ID_LEN
            ),
        ));
    }
    let algorithm = task.required_string("algorithm")?.to_string();
    let kind = super::algorithm(&algorithm).ok_or_else(|| {
        BatchError::field(
            path.clone(),
            "algorithm",
            format!("unknown algorithm {algorithm:?}; use {ALGORITHMS}"),
        )
    })?;
    let priority = match task.fields.get("priority") {
        None | Some(Value::Null) => crate::backend::Priority::Medium,
        Some(value) => {
            let word = match value {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            super::priority(&word).ok_or_else(|| {
                BatchError::field(
                    path.clone(),
                    "priority",
                    format!("unknown priority {value}; use high, medium or low ({PRIORITIES})"),
                )
            })?
        }
    };
    let description = task.string("description")?.map(str::to_string);
    let parameters = match task.fields.remove("parameters") {
        Some(value) => Fields::new(value, format!("{path}.parameters"))?,
        None => return Err(task.missing("parameters")),
    };
    let (kind, submission, upload) = match kind {
        Algorithm::Particles => (
            crate::jobs::particles::PARTICLES_KIND,
            particles(&parameters)?,
            None,
        ),
        Algorithm::Julia => (crate::jobs::julia::JULIA_KIND, julia(&parameters)?, None),
        Algorithm::Search => {
            let (submission, fasta) = search(&parameters)?;
            (crate::jobs::search::SEARCH_KIND, submission, Some(fasta))
        }
    };
    Ok(BatchTask {
        task_id,
        location: path,
        kind,
        algorithm,
        submission,
        priority,
        description,
        upload,
    })
}

fn particles(parameters: &Fields) -> Result<Value, BatchError> {
    let submission = ParticlesSubmission {
        particles: parameters.required_u32("num_particles")?,
        steps: parameters.required_u64("num_steps")?,
        seed: parameters.required_u64("seed")?,
        replicas: parameters.optional_u32("replicas")?,
    };
    super::particles_submission(submission).map_err(|e| BatchError::at(parameters.path.clone(), e))
}

fn julia(parameters: &Fields) -> Result<Value, BatchError> {
    let iterations = match parameters.optional_u32("iterations")? {
        Some(iterations) => iterations,
        None => parameters.required_u32("iteraciones")?,
    };
    super::julia_submission(
        parameters.required_u32("width")?,
        parameters.required_u32("height")?,
        iterations,
    )
    .map_err(|e| BatchError::at(parameters.path.clone(), e))
}

fn search(parameters: &Fields) -> Result<(Value, PathBuf), BatchError> {
    let at = || parameters.path.clone();
    let patterns = match parameters.fields.get("patterns") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .map(|p| match p {
                Value::String(sequence) => Ok(Pattern {
                    name: sequence.clone(),
                    sequence: sequence.clone(),
                }),
                other => Err(BatchError::field(
                    at(),
                    "patterns",
                    format!("{other} is not a pattern string"),
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(BatchError::field(
                at(),
                "patterns",
                "expected a non-empty list of patterns",
            ))
        }
        None => return Err(parameters.missing("patterns")),
    };
    let strand = match parameters.string("strand")? {
        None | Some("forward") => StrandMode::Forward,
        Some("both") => StrandMode::Both,
        Some(other) => {
            return Err(BatchError::field(
                at(),
                "strand",
                format!("{other:?}: use forward or both"),
            ))
        }
    };
    let max_mismatches = parameters.optional_u32("max_mismatches")?.unwrap_or(0);
    let options = SearchOptions {
        strand,
        case_sensitive: false,
        max_mismatches,
        ..SearchOptions::default()
    };
    PatternSet::new(patterns.clone(), options)
        .map_err(|e| BatchError::field(at(), "patterns", e.to_string()))?;
    let fasta = PathBuf::from(parameters.required_string("fasta")?);
    let filename = fasta
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| fasta.display().to_string());
    let submission = SearchSubmission {
        filename,
        patterns,
        options,
        chunk_size: parameters.number("chunk_size")?,
        genome_hash: None,
        count_only: false,
    };
    let value =
        serde_json::to_value(&submission).map_err(|e| BatchError::at(at(), e.to_string()))?;
    Ok((value, fasta))
}
