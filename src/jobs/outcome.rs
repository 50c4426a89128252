//! What one task produced, as a worker hands it on: the result's JSON text, written straight
//! from the kind's typed result (never a tree of JSON values, which for a chunk of millions of
//! hits would cost gigabytes), and the small figures kept in the task's record.

use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::backend::{ChunkResult, TaskRun, WorkerId, RESULT_PART_BYTES};

/// What one task produced: the payload to store and the count shown as progress ("matches").
#[derive(Clone, Debug)]
pub struct TaskOutcome {
    /// Kind-specific result, as JSON text.
    pub payload: Bytes,
    /// Added to the job's progress count.
    pub matches: u64,
}

impl TaskOutcome {
    /// Encodes a kind's result.
    pub fn encode<T: Serialize>(result: &T, matches: u64) -> serde_json::Result<Self> {
        Ok(Self {
            payload: Bytes::from(serde_json::to_vec(result)?),
            matches,
        })
    }

    /// The payload as a JSON value: for small payloads and tests.
    pub fn payload_value(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.payload)
    }

    /// The result to store for `chunk`: a payload small enough for one part travels as a value
    /// inside the result; a larger one stays text and is stored in parts.
    pub fn into_chunk_result(self, chunk: u32, worker: WorkerId, run: TaskRun) -> ChunkResult {
        let (payload, encoded) = match self.payload.len() <= RESULT_PART_BYTES {
            true => match serde_json::from_slice(&self.payload) {
                Ok(value) => (value, None),
                Err(_) => (serde_json::Value::Null, Some(self.payload)),
            },
            false => (serde_json::Value::Null, Some(self.payload)),
        };
        ChunkResult {
            chunk,
            matches: self.matches,
            payload,
            encoded,
            worker,
            run: Box::new(run),
        }
    }

    /// The result's small figures, kept in the task's record whatever the payload's size: the
    /// match count, the payload's top-level numbers, strings and booleans, and for each
    /// top-level list its length (`NAME_len`) and, for a list of numbers, its sum (`NAME_sum`;
    /// for a Julia band, the band's iteration count). Read from the text in one pass.
    pub fn metrics(&self) -> serde_json::Value {
        let mut metrics = serde_json::Map::new();
        metrics.insert("matches".into(), self.matches.into());
        let mut reader = serde_json::Deserializer::from_slice(&self.payload);
        let fields = reader.deserialize_map(TopFields).unwrap_or_default();
        for (name, figure) in fields {
            match figure {
                Figure::Scalar(value) => {
                    metrics.insert(name, value);
                }
                Figure::List { len, sum } => {
                    metrics.insert(format!("{name}_len"), len.into());
                    if let Some((sum, integral)) = sum.filter(|_| len > 0) {
                        let sum = match integral {
                            true => (sum as u64).into(),
                            false => sum.into(),
                        };
                        metrics.insert(format!("{name}_sum"), sum);
                    }
                }
                Figure::Other => {}
            }
        }
        metrics.into()
    }
}

/// What a top-level field contributes to the metrics.
enum Figure {
    Scalar(serde_json::Value),
    /// A list's length and, when every item is a number, their sum and whether all are
    /// non-negative integers.
    List {
        len: u64,
        sum: Option<(f64, bool)>,
    },
    Other,
}

/// Reads the top-level object's fields as [`Figure`]s, skipping every nested value unread.
struct TopFields;

impl<'de> Visitor<'de> for TopFields {
    type Value = Vec<(String, Figure)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a result object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            fields.push((name, map.next_value::<Figure>()?));
        }
        Ok(fields)
    }
}

impl<'de> Deserialize<'de> for Figure {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(FigureVisitor)
    }
}

struct FigureVisitor;

impl<'de> Visitor<'de> for FigureVisitor {
    type Value = Figure;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Figure, E> {
        Ok(Figure::Scalar(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Figure, E> {
        Ok(Figure::Scalar(v.into()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Figure, E> {
        Ok(Figure::Scalar(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Figure, E> {
        Ok(Figure::Scalar(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Figure, E> {
        Ok(Figure::Scalar(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Figure, E> {
        Ok(Figure::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Figure, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Figure::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Figure, A::Error> {
        let mut len = 0u64;
        let mut sum = Some((0.0, true));
        while let Some(item) = seq.next_element::<Item>()? {
            len += 1;
            sum = match (sum, item) {
                (Some((total, integral)), Item::Number(n, is_u64)) => {
                    Some((total + n, integral && is_u64))
                }
                _ => None,
            };
        }
        Ok(Figure::List { len, sum })
    }
}

/// A list item: a number (with whether it is a non-negative integer), or anything else, skipped.
enum Item {
    Number(f64, bool),
    Other,
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ItemVisitor)
    }
}

struct ItemVisitor;

impl<'de> Visitor<'de> for ItemVisitor {
    type Value = Item;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_u64<E>(self, v: u64) -> Result<Item, E> {
        Ok(Item::Number(v as f64, true))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Item, E> {
        Ok(Item::Number(v as f64, false))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Item, E> {
        Ok(Item::Number(v, false))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Item, E> {
        Ok(Item::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Item, E> {
        Ok(Item::Other)
    }
    fn visit_unit<E>(self) -> Result<Item, E> {
        Ok(Item::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Item, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Item::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Item, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Item::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures as the plain walk over a JSON value computes them: the reference.
    fn figures_of(payload: &serde_json::Value, matches: u64) -> serde_json::Value {
        let mut metrics = serde_json::Map::new();
        metrics.insert("matches".into(), matches.into());
        for (name, value) in payload.as_object().into_iter().flatten() {
            match value {
                serde_json::Value::Array(items) => {
                    metrics.insert(format!("{name}_len"), items.len().into());
                    let numbers: Option<Vec<f64>> =
                        items.iter().map(serde_json::Value::as_f64).collect();
                    if let Some(numbers) = numbers.filter(|n| !n.is_empty()) {
                        let sum: f64 = numbers.iter().sum();
                        let value = match items.iter().all(serde_json::Value::is_u64) {
                            true => (sum as u64).into(),
                            false => sum.into(),
                        };
                        metrics.insert(format!("{name}_sum"), value);
                    }
                }
                serde_json::Value::Object(_) | serde_json::Value::Null => {}
                scalar => {
                    metrics.insert(name.clone(), scalar.clone());
                }
            }
        }
        metrics.into()
    }

    #[test]
    fn metrics_read_from_the_text_are_the_figures_of_the_value() {
        let payloads = [
            serde_json::json!({"record": 3, "counts": [{"forward": 1, "reverse": 2}],
                "hits": [[1, 0, "+", "A"], [7, 0, "-", "T"]], "mismatches": [0, 2]}),
            serde_json::json!({"row": 7, "iterations": [1, 2, 300], "name": "band", "ok": true,
                "none": null, "nested": {"a": [1]}, "empty": []}),
            serde_json::json!({"energies": [1.5, -2.0, 3], "mixed": [1, "x"]}),
        ];
        for payload in payloads {
            let outcome = TaskOutcome::encode(&payload, 9).unwrap();
            assert_eq!(outcome.metrics(), figures_of(&payload, 9), "{payload}");
        }
    }

    #[test]
    fn a_large_payload_stays_text_and_a_small_one_travels_as_a_value() {
        let small = TaskOutcome::encode(&serde_json::json!({"hits": [1, 2]}), 2).unwrap();
        let result = small.into_chunk_result(4, "w".into(), TaskRun::default());
        assert_eq!(result.payload, serde_json::json!({"hits": [1, 2]}));
        assert!(result.encoded.is_none());
        let hits: Vec<u64> = (0..(RESULT_PART_BYTES as u64 / 4)).collect();
        let large = TaskOutcome::encode(&serde_json::json!({ "hits": hits }), 0).unwrap();
        let text = large.payload.clone();
        let result = large.into_chunk_result(4, "w".into(), TaskRun::default());
        assert!(result.payload.is_null());
        assert_eq!(result.encoded, Some(text));
    }
}
