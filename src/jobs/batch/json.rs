//! The JSON batch format: `{"metadata": {...}, "tasks": [...]}`. Each task has a `task_id` (its
//! job id), an `algorithm`, `parameters`, a `priority` (high/medium/low) and an optional
//! `description`. `python`/`cython` are particle simulations (`num_particles`, `num_steps`,
//! `seed`, optional `replicas`); the Julia names take `width`, `height`, `iterations`; `search`
//! takes `patterns` (a list), `fasta` (a path relative to the batch file), optional `strand`
//! (`forward`/`both`), `chunk_size` and `no_cache` (true: run even when the result cache holds
//! the answer); `command` takes a command submission (`argv`, `array`, ...). `metadata` is kept
//! as written: its counts are not trusted.

use std::cell::RefCell;
use std::collections::HashSet;
use std::path::PathBuf;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::{quoted, shown, Algorithm, Batch, BatchError, BatchTask, ALGORITHMS, PRIORITIES};
use crate::jobs::particles::ParticlesSubmission;
use crate::jobs::search::SearchSubmission;
use crate::search::{Pattern, PatternSet, SearchOptions, StrandMode};

/// Parses the document as it is read: each task is checked and turned into a [`BatchTask`] as
/// soon as its object ends, and reading stops at the first task past `max_tasks`, so the
/// document is never held whole as a JSON tree.
pub(super) fn parse(text: &str, max_tasks: usize) -> Result<Batch, BatchError> {
    let failure = RefCell::new(None);
    let mut reader = serde_json::Deserializer::from_str(text);
    let seed = DocumentSeed {
        max_tasks,
        failure: &failure,
    };
    let parsed = seed
        .deserialize(&mut reader)
        .and_then(|batch| reader.end().map(|()| batch));
    match parsed {
        Ok(batch) => Ok(batch),
        Err(err) => Err(failure.take().unwrap_or_else(|| {
            BatchError::at(
                format!("JSON line {}, column {}", err.line(), err.column()),
                format!("malformed JSON ({err}); is the file complete?"),
            )
        })),
    }
}

/// Reads the top-level object; a [`BatchError`] found inside is left in `failure` (serde's own
/// error cannot carry it).
struct DocumentSeed<'a> {
    max_tasks: usize,
    failure: &'a RefCell<Option<BatchError>>,
}

impl DocumentSeed<'_> {
    fn fail<E: serde::de::Error>(&self, error: BatchError) -> E {
        let message = error.to_string();
        *self.failure.borrow_mut() = Some(error);
        E::custom(message)
    }
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_> {
    type Value = Batch;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Batch, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_> {
    type Value = Batch;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with \"metadata\" and \"tasks\"")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Batch, A::Error> {
        Err(self.fail(BatchError::at(
            "$",
            "expected an object with \"metadata\" and \"tasks\"",
        )))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Batch, A::Error> {
        let (mut metadata, mut tasks) = (None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" => {
                    let value: Value = map.next_value()?;
                    if !value.is_object() {
                        return Err(self.fail(BatchError::field(
                            "$",
                            "metadata",
                            "must be an object",
                        )));
                    }
                    metadata = Some(value);
                }
                "tasks" => {
                    tasks = Some(map.next_value_seed(TasksSeed {
                        max_tasks: self.max_tasks,
                        failure: self.failure,
                    })?);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let Some(tasks) = tasks else {
            return Err(self.fail(BatchError::field(
                "$",
                "tasks",
                "missing; a batch file holds a \"tasks\" list",
            )));
        };
        Ok(Batch { tasks, metadata })
    }
}

/// Reads the `tasks` list one task at a time.
struct TasksSeed<'a> {
    max_tasks: usize,
    failure: &'a RefCell<Option<BatchError>>,
}

impl TasksSeed<'_> {
    fn fail<E: serde::de::Error>(&self, error: BatchError) -> E {
        let message = error.to_string();
        *self.failure.borrow_mut() = Some(error);
        E::custom(message)
    }

    fn not_a_list<E: serde::de::Error>(&self) -> Result<Vec<BatchTask>, E> {
        Err(self.fail(BatchError::field("$", "tasks", "must be a list of tasks")))
    }
}

impl<'de> DeserializeSeed<'de> for TasksSeed<'_> {
    type Value = Vec<BatchTask>;

    fn deserialize<D: Deserializer<'de>>(self, reader: D) -> Result<Vec<BatchTask>, D::Error> {
        reader.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TasksSeed<'_> {
    type Value = Vec<BatchTask>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of tasks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<BatchTask>, A::Error> {
        let mut seen = HashSet::new();
        let mut parsed = Vec::new();
        while let Some(task) = seq.next_element::<Value>()? {
            let path = format!("tasks[{}]", parsed.len());
            if parsed.len() >= self.max_tasks {
                return Err(self.fail(super::too_many_tasks(path, self.max_tasks)));
            }
            let task = self::task(task, path.clone()).map_err(|e| self.fail(e))?;
            if !seen.insert(task.task_id.clone()) {
                return Err(self.fail(BatchError::field(
                    path,
                    "task_id",
                    format!(
                        "{} is used by an earlier task; task ids are job ids and must be unique",
                        quoted(&task.task_id)
                    ),
                )));
            }
            parsed.push(task);
        }
        Ok(parsed)
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Vec<BatchTask>, A::Error> {
        self.not_a_list()
    }

    fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Vec<BatchTask>, E> {
        self.not_a_list()
    }
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
                format!("expected a string, found {}", shown(other)),
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
                    format!("{} is not a whole number", shown(value)),
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

    fn flag(&self, name: &str) -> Result<bool, BatchError> {
        match self.fields.get(name) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(set)) => Ok(*set),
            Some(other) => Err(BatchError::field(
                self.path.clone(),
                name,
                format!("expected true or false, found {}", shown(other)),
            )),
        }
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
                "{}: use 1-{} letters, digits, '-', '_', '.' or ':'",
                quoted(&task_id),
                crate::jobs::MAX_JOB_ID_LEN
            ),
        ));
    }
    let algorithm = task.required_string("algorithm")?.to_string();
    let kind = super::algorithm(&algorithm).ok_or_else(|| {
        BatchError::field(
            path.clone(),
            "algorithm",
            format!("unknown algorithm {}; use {ALGORITHMS}", quoted(&algorithm)),
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
                    format!(
                        "unknown priority {}; use high, medium or low ({PRIORITIES})",
                        shown(value)
                    ),
                )
            })?
        }
    };
    let description = task.string("description")?.map(str::to_string);
    let parameters = match task.fields.remove("parameters") {
        Some(value) => Fields::new(value, format!("{path}.parameters"))?,
        None => return Err(task.missing("parameters")),
    };
    let mut inputs = Vec::new();
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
        Algorithm::Command => {
            let (submission, files) = command(parameters)?;
            inputs = files;
            (crate::jobs::command::COMMAND_KIND, submission, None)
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
        inputs,
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

/// A command task's parameters are a command submission as `submit command` sends it (`argv`,
/// `array` or `args_lines`, `timeout_secs`, `retries`, `cpus`, `output_cap`, `memory_bytes`,
/// `outputs`, ...), checked as the master checks it, and `inputs`: a list of file paths,
/// relative to the batch file, returned apart (they are stored, then named by hash).
fn command(mut parameters: Fields) -> Result<(Value, Vec<PathBuf>), BatchError> {
    let at = parameters.path.clone();
    let inputs = match parameters.fields.remove("inputs") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => command_inputs(&at, value)?,
    };
    let value = Value::Object(parameters.fields);
    let submission: crate::jobs::command::CommandSubmission = serde_json::from_value(value.clone())
        .map_err(|e| BatchError::at(at.clone(), e.to_string()))?;
    submission
        .check()
        .map_err(|e| BatchError::at(at, format!("command: {e}")))?;
    Ok((value, inputs))
}

/// A command task's `inputs`: file paths, each with a base name fit for a task's directory and
/// no two with the same base name.
fn command_inputs(at: &str, value: Value) -> Result<Vec<PathBuf>, BatchError> {
    let bad = |message: String| BatchError::field(at.to_string(), "inputs", message);
    let Value::Array(list) = value else {
        return Err(bad(
            "give a list of file paths, relative to the batch file".into()
        ));
    };
    if list.len() > crate::jobs::command::MAX_INPUTS {
        return Err(bad(format!(
            "more than {} inputs",
            crate::jobs::command::MAX_INPUTS
        )));
    }
    let mut names = HashSet::new();
    let mut paths = Vec::with_capacity(list.len());
    for item in list {
        let Value::String(text) = item else {
            return Err(bad(format!(
                "{}: give a file path as a string",
                shown(&item)
            )));
        };
        let path = PathBuf::from(&text);
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or_default()
            .to_string();
        crate::jobs::command::check_input_name(&name)
            .map_err(|e| bad(format!("{}: {e}", quoted(&text))))?;
        if !names.insert(name.clone()) {
            return Err(bad(format!(
                "two inputs are named {}: each task's directory holds one file per name",
                quoted(&name)
            )));
        }
        paths.push(path);
    }
    Ok(paths)
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
                    format!("{} is not a pattern string", shown(other)),
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
                format!("{}: use forward or both", quoted(other)),
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
        no_cache: parameters.flag("no_cache")?,
    };
    let value =
        serde_json::to_value(&submission).map_err(|e| BatchError::at(at(), e.to_string()))?;
    Ok((value, fasta))
}
