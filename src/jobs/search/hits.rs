//! A search chunk's list of matches, held column by column: about 18 bytes a hit instead of a
//! tuple with its own string (or a tree of JSON values), so a chunk of millions of hits costs
//! tens of megabytes wherever it is built or read. On the wire and in the store it is the same
//! JSON list of `[start, pattern, strand, matched]` it has always been.

use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::search::Strand;

/// One match as stored in a chunk result: start, pattern index, strand, matched bases.
pub type StoredHit = (u64, u32, Strand, String);

/// One match read from a [`Hits`] list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HitRef<'a> {
    /// 0-based start in the record.
    pub start: u64,
    /// The job's index of the pattern.
    pub pattern: u32,
    /// Strand the match is on.
    pub strand: Strand,
    /// The matched bases as printed (reverse-complemented on `-`).
    pub matched: &'a str,
}

/// Matches in the order they were found, stored column by column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hits {
    starts: Vec<u64>,
    patterns: Vec<u32>,
    strands: Vec<Strand>,
    /// Where each hit's matched bases end in `matched`.
    matched_ends: Vec<usize>,
    matched: String,
}

impl Hits {
    /// Adds a match at the end.
    pub fn push(&mut self, start: u64, pattern: u32, strand: Strand, matched: &str) {
        self.starts.push(start);
        self.patterns.push(pattern);
        self.strands.push(strand);
        self.matched.push_str(matched);
        self.matched_ends.push(self.matched.len());
    }

    /// How many matches the list holds.
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    /// The match at `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<HitRef<'_>> {
        let begin = match index {
            0 => 0,
            i => *self.matched_ends.get(i - 1)?,
        };
        Some(HitRef {
            start: *self.starts.get(index)?,
            pattern: self.patterns[index],
            strand: self.strands[index],
            matched: &self.matched[begin..self.matched_ends[index]],
        })
    }

    /// The matches in order.
    pub fn iter(&self) -> impl Iterator<Item = HitRef<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Appends every match of `other`.
    pub fn append(&mut self, other: &Hits) {
        for hit in other.iter() {
            self.push(hit.start, hit.pattern, hit.strand, hit.matched);
        }
    }

    /// The matches as owned tuples.
    pub fn to_stored(&self) -> Vec<StoredHit> {
        self.iter()
            .map(|h| (h.start, h.pattern, h.strand, h.matched.to_string()))
            .collect()
    }
}

impl FromIterator<StoredHit> for Hits {
    fn from_iter<I: IntoIterator<Item = StoredHit>>(iter: I) -> Self {
        let mut hits = Hits::default();
        for (start, pattern, strand, matched) in iter {
            hits.push(start, pattern, strand, &matched);
        }
        hits
    }
}

impl Serialize for Hits {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for hit in self.iter() {
            seq.serialize_element(&AsTuple(hit))?;
        }
        seq.end()
    }
}

/// A hit written as the 4-element list it is stored as.
struct AsTuple<'a>(HitRef<'a>);

impl Serialize for AsTuple<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut tuple = serializer.serialize_tuple(4)?;
        tuple.serialize_element(&self.0.start)?;
        tuple.serialize_element(&self.0.pattern)?;
        tuple.serialize_element(&self.0.strand)?;
        tuple.serialize_element(self.0.matched)?;
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Hits {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(HitsVisitor)
    }
}

struct HitsVisitor;

impl<'de> Visitor<'de> for HitsVisitor {
    type Value = Hits;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [start, pattern, strand, matched] hits")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Hits, A::Error> {
        let mut hits = Hits::default();
        while seq.next_element_seed(HitSeed(&mut hits))?.is_some() {}
        Ok(hits)
    }
}

/// Reads one `[start, pattern, strand, matched]` straight into the columns: no string per hit.
struct HitSeed<'a>(&'a mut Hits);

impl<'de> DeserializeSeed<'de> for HitSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_tuple(4, self)
    }
}

impl<'de> Visitor<'de> for HitSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a hit [start, pattern, strand, matched]")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        use serde::de::Error;
        let missing = |what| A::Error::custom(format!("a hit without its {what}"));
        let start: u64 = seq.next_element()?.ok_or_else(|| missing("start"))?;
        let pattern: u32 = seq.next_element()?.ok_or_else(|| missing("pattern"))?;
        let strand: Strand = seq.next_element()?.ok_or_else(|| missing("strand"))?;
        let hits = self.0;
        seq.next_element_seed(AppendStr(&mut hits.matched))?
            .ok_or_else(|| missing("matched bases"))?;
        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
            return Err(A::Error::custom("a hit of more than 4 fields"));
        }
        hits.starts.push(start);
        hits.patterns.push(pattern);
        hits.strands.push(strand);
        hits.matched_ends.push(hits.matched.len());
        Ok(())
    }
}

/// Appends a string to a buffer instead of allocating one.
struct AppendStr<'a>(&'a mut String);

impl<'de> DeserializeSeed<'de> for AppendStr<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for AppendStr<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the matched bases")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.0.push_str(text);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_stored_as_the_list_of_tuples_they_always_were() {
        let tuples: Vec<StoredHit> = vec![
            (5, 0, Strand::Forward, "ACGT".into()),
            (9, 2, Strand::Reverse, "acgN".into()),
            (12, 1, Strand::Forward, String::new()),
        ];
        let hits: Hits = tuples.iter().cloned().collect();
        let text = serde_json::to_string(&hits).unwrap();
        assert_eq!(text, serde_json::to_string(&tuples).unwrap());
        let back: Hits = serde_json::from_str(&text).unwrap();
        assert_eq!(back.to_stored(), tuples);
        let from_value: Hits = serde_json::from_value(serde_json::json!(tuples)).unwrap();
        assert_eq!(from_value, hits);
    }

    #[test]
    fn a_malformed_hit_is_an_error_not_a_guess() {
        for bad in [
            r#"[[1, 0, "+"]]"#,
            r#"[[1, 0, "+", "A", 7]]"#,
            r#"[[1, 0, "x", "A"]]"#,
            r#"[[-1, 0, "+", "A"]]"#,
            r#"[{"start": 1}]"#,
        ] {
            assert!(serde_json::from_str::<Hits>(bad).is_err(), "{bad}");
        }
    }
}
