//! `list_genomes`, `remove_genomes` and `export_genome`: what the backend stores, deleting it
//! on request, and writing one out as a UCSC `.2bit` file. Names may be unique hash prefixes;
//! every name is resolved before anything is deleted, and a genome an unfinished job uses is kept
//! (the backend checks and deletes in one atomic step).
//!
//! An export reads the stored sequence twice, a piece at a time: once to find its N runs and
//! lower-case runs (the file's record headers hold them before the bases), once to pack it. So
//! neither side holds the genome, and the client knows the file's size before its first byte.

use super::{Conn, HandlerError};
use crate::backend::{GenomeRecord, GenomeStore, StoredKind};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, GenomeRemovalOutcome, Message};
use crate::search::twobit::{self, RecordLayout, RunScanner, TwoBitWriter};
use crate::search::RecordInfo;

/// Bases read from the store per step of an export.
const EXPORT_PIECE: u64 = 1 << 20;

/// Answers `list_genomes`.
pub async fn list(conn: &mut Conn, state: &MasterState) -> Result<(), HandlerError> {
    let genomes = state.genome_store()?.genomes().await?;
    conn.write_message(&Message::Genomes { genomes }).await?;
    Ok(())
}

/// Answers `remove_genomes`.
pub async fn remove(
    conn: &mut Conn,
    state: &MasterState,
    names: Vec<String>,
) -> Result<(), HandlerError> {
    let stored: Vec<String> = state
        .genome_store()?
        .genomes()
        .await?
        .into_iter()
        .map(|genome| genome.hash)
        .collect();
    let mut hashes = Vec::new();
    for name in &names {
        hashes.push(resolve(name, &stored)?);
    }
    let mut outcomes = Vec::new();
    for hash in hashes {
        let removal = state.genome_store()?.remove_genome(&hash).await?;
        tracing::info!(component = "master", genome = %hash, outcome = ?removal, "genome removal asked");
        outcomes.push(GenomeRemovalOutcome { hash, removal });
    }
    conn.write_message(&Message::GenomesRemoved { outcomes })
        .await?;
    Ok(())
}

/// Answers `export_genome`: the header, then the `.2bit` file in data frames.
pub async fn export(conn: &mut Conn, state: &MasterState, name: &str) -> Result<(), HandlerError> {
    let store = state.genome_store()?;
    let stored = store.genomes().await?;
    let hashes: Vec<String> = stored.iter().map(|genome| genome.hash.clone()).collect();
    let hash = resolve(name, &hashes)?;
    let Some(genome) = stored.into_iter().find(|genome| genome.hash == hash) else {
        return Err(refused(format!("genome {hash} was removed meanwhile")));
    };
    if genome.kind != StoredKind::Genome {
        return Err(refused(format!(
            "{hash} is a command input, stored as uploaded, not a genome; nothing to export"
        )));
    }
    let layouts = scan(store, &genome).await?;
    conn.send_message(&Message::GenomeExport {
        hash: hash.clone(),
        bytes: twobit::file_len(&layouts),
    })
    .await?;
    // Frames are under way from here: a failure cannot be a reply the client reads in step,
    // so it closes the connection.
    let fatal = |what: String| HandlerError::fatal(ErrorCode::Internal, what);
    let mut writer = TwoBitWriter::new(Vec::new(), layouts)
        .map_err(|e| fatal(format!("exporting {hash}: {e}")))?;
    let mut offset = 0;
    while offset < genome.bases {
        let len = EXPORT_PIECE.min(genome.bases - offset);
        let bases = store
            .read_genome(&hash, offset, len)
            .await
            .map_err(|e| fatal(format!("reading genome {hash}: {e}")))?;
        writer
            .push(&bases)
            .map_err(|e| fatal(format!("exporting {hash}: {e}")))?;
        conn.send_frame(writer.get_mut()).await?;
        writer.get_mut().clear();
        offset += len;
    }
    let rest = writer
        .finish()
        .map_err(|e| fatal(format!("exporting {hash}: {e}")))?;
    if !rest.is_empty() {
        conn.send_frame(&rest).await?;
    }
    conn.flush().await?;
    tracing::info!(component = "master", genome = %hash, "genome exported as .2bit");
    Ok(())
}

/// The records of a stored genome laid out for a `.2bit` file: names and lengths from its
/// record, N runs and lower-case runs from a first read of its sequence.
async fn scan(
    store: &dyn GenomeStore,
    genome: &GenomeRecord,
) -> Result<Vec<RecordLayout>, HandlerError> {
    let records: Vec<RecordInfo> = serde_json::from_value(genome.records.clone())
        .map_err(|e| refused(format!("genome {}: unreadable records: {e}", genome.hash)))?;
    if let Some(bad) = records.iter().find(|r| {
        r.name.is_empty() || r.name.len() > 255 || !r.name.bytes().all(|b| b.is_ascii_graphic())
    }) {
        return Err(refused(format!(
            "record name {:?} cannot be written in a .2bit file (1 to 255 printable ASCII              characters)",
            bad.name
        )));
    }
    let mut scanner = RunScanner::new(records.into_iter().map(|r| (r.name, r.length)));
    let mut offset = 0;
    while offset < genome.bases {
        let len = EXPORT_PIECE.min(genome.bases - offset);
        let bases = store.read_genome(&genome.hash, offset, len).await?;
        scanner
            .push(&bases)
            .map_err(|e| refused(format!("genome {}: {e}", genome.hash)))?;
        offset += len;
    }
    scanner
        .finish()
        .map_err(|e| refused(format!("genome {}: {e}", genome.hash)))
}

fn refused(message: String) -> HandlerError {
    HandlerError::refused(ErrorCode::BadMessage, message)
}

/// The one stored hash `name` is, or starts.
fn resolve(name: &str, stored: &[String]) -> Result<String, HandlerError> {
    let name = name.trim().to_ascii_lowercase();
    let matching: Vec<&String> = match name.is_empty() {
        true => Vec::new(),
        false => stored
            .iter()
            .filter(|hash| hash.starts_with(&name))
            .collect(),
    };
    match matching.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!("no stored genome has a hash starting with {name:?}; see `gridwatch genomes`"),
        )),
        many => Err(HandlerError::refused(
            ErrorCode::BadMessage,
            format!(
                "{name:?} starts {} stored genome hashes; give more digits",
                many.len()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn a_name_resolves_only_when_it_is_a_unique_prefix() {
        let stored = vec!["abc1".to_string(), "abc2".to_string(), "def".to_string()];
        assert_eq!(resolve("ABC1", &stored).ok(), Some("abc1".to_string()));
        assert_eq!(resolve("d", &stored).ok(), Some("def".to_string()));
        assert!(resolve("abc", &stored).is_err());
        assert!(resolve("x", &stored).is_err());
        assert!(resolve("", &stored).is_err());
    }
}
