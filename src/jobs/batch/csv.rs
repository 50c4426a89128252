//! The CSV batch format: one Julia render per row, `algoritmo,width,height,iteraciones,prioridad`
//! (or the English header `algorithm,width,height,iterations,priority`, columns in any order).
//! Lines starting with `#` and blank lines are skipped; without a header row the columns are in
//! the order above. A row has no id of its own, so its job id is `csv-HASH-LINE`: HASH is the
//! FNV-1a 64-bit hash of the whole file's bytes, LINE the row's line number. Loading the same file
//! again gives the same ids (nothing runs twice); an edited file is a new batch.

use super::{quoted, Algorithm, Batch, BatchError, BatchTask, ALGORITHMS, PRIORITIES};

/// The columns, in their default order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Column {
    Algorithm,
    Width,
    Height,
    Iterations,
    Priority,
}

const DEFAULT_ORDER: [Column; 5] = [
    Column::Algorithm,
    Column::Width,
    Column::Height,
    Column::Iterations,
    Column::Priority,
];

const HEADER: &str = "algoritmo,width,height,iteraciones,prioridad";

impl Column {
    fn from_header(name: &str) -> Option<Column> {
        match name.trim().to_ascii_lowercase().as_str() {
            "algoritmo" | "algorithm" => Some(Column::Algorithm),
            "width" | "ancho" => Some(Column::Width),
            "height" | "alto" => Some(Column::Height),
            "iteraciones" | "iterations" => Some(Column::Iterations),
            "prioridad" | "priority" => Some(Column::Priority),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Column::Algorithm => "algoritmo",
            Column::Width => "width",
            Column::Height => "height",
            Column::Iterations => "iteraciones",
            Column::Priority => "prioridad",
        }
    }
}

/// The job id of the row on line `line` of a CSV file whose bytes are `file`.
pub fn csv_task_id(file: &[u8], line: usize) -> String {
    format!("csv-{:016x}-{line}", fnv1a(file))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

pub(super) fn parse(text: &str, max_tasks: usize) -> Result<Batch, BatchError> {
    let file_hash = fnv1a(text.as_bytes());
    let mut order: Option<Vec<Column>> = None;
    let mut tasks = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if order.is_none() {
            if let Some(header) = header(&fields, line_no)? {
                order = Some(header);
                continue;
            }
            order = Some(DEFAULT_ORDER.to_vec());
        }
        let columns = order.as_deref().unwrap_or(&DEFAULT_ORDER);
        if tasks.len() >= max_tasks {
            return Err(super::too_many_tasks(format!("line {line_no}"), max_tasks));
        }
        tasks.push(row(&fields, columns, line_no, file_hash)?);
    }
    Ok(Batch {
        tasks,
        metadata: None,
    })
}

/// The column order, if `fields` is a header row. A row whose first field names a column is a
/// header; every column must then be named exactly once.
fn header(fields: &[&str], line: usize) -> Result<Option<Vec<Column>>, BatchError> {
    if fields
        .first()
        .and_then(|f| Column::from_header(f))
        .is_none()
    {
        return Ok(None);
    }
    let mut order = Vec::with_capacity(fields.len());
    for field in fields {
        let column = Column::from_header(field).ok_or_else(|| {
            BatchError::field(
                format!("line {line}"),
                super::truncated(field),
                format!("unknown column; the header is {HEADER} (or algorithm,width,height,iterations,priority)"),
            )
        })?;
        if order.contains(&column) {
            return Err(BatchError::field(
                format!("line {line}"),
                *field,
                "column named twice in the header",
            ));
        }
        order.push(column);
    }
    if let Some(missing) = DEFAULT_ORDER.iter().find(|c| !order.contains(c)) {
        return Err(BatchError::field(
            format!("line {line}"),
            missing.name(),
            format!("the header lacks this column; it must name {HEADER}"),
        ));
    }
    Ok(Some(order))
}

fn row(
    fields: &[&str],
    columns: &[Column],
    line: usize,
    file_hash: u64,
) -> Result<BatchTask, BatchError> {
    let location = format!("line {line}");
    if fields.len() != columns.len() {
        let names: Vec<&str> = columns.iter().map(|c| c.name()).collect();
        return Err(BatchError::at(
            location,
            format!(
                "{} columns, expected {} ({})",
                fields.len(),
                columns.len(),
                names.join(",")
            ),
        ));
    }
    let value = |column: Column| {
        let at = columns.iter().position(|c| *c == column).unwrap_or(0);
        fields.get(at).copied().unwrap_or("")
    };
    let number = |column: Column| -> Result<u32, BatchError> {
        let text = value(column);
        text.parse::<u32>().map_err(|_| {
            BatchError::field(
                format!("line {line}"),
                column.name(),
                format!("{} is not a whole number", quoted(text)),
            )
        })
    };
    let algorithm = value(Column::Algorithm);
    if super::algorithm(algorithm) != Some(Algorithm::Julia) {
        return Err(BatchError::field(
            location,
            Column::Algorithm.name(),
            format!("unknown algorithm {}; a CSV row is a Julia render: Secuencial, Numpy, juliaCython or julia (JSON files take the others: {ALGORITHMS})", quoted(algorithm)),
        ));
    }
    let (width, height, iterations) = (
        number(Column::Width)?,
        number(Column::Height)?,
        number(Column::Iterations)?,
    );
    let priority_word = value(Column::Priority);
    let priority = super::priority(priority_word).ok_or_else(|| {
        BatchError::field(
            location.clone(),
            Column::Priority.name(),
            format!(
                "unknown priority {}; use {PRIORITIES}",
                quoted(priority_word)
            ),
        )
    })?;
    let submission = super::julia_submission(width, height, iterations)
        .map_err(|e| BatchError::at(location.clone(), e))?;
    Ok(BatchTask {
        task_id: format!("csv-{file_hash:016x}-{line}"),
        location,
        kind: crate::jobs::julia::JULIA_KIND,
        algorithm: algorithm.to_string(),
        submission,
        priority,
        description: Some(format!(
            "{algorithm} {width}x{height}, {iterations} iterations"
        )),
        upload: None,
        inputs: Vec::new(),
    })
}
