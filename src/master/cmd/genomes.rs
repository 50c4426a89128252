//! `list_genomes` and `remove_genomes`: what the backend stores, and deleting it on request.
//! Names may be unique hash prefixes; every name is resolved before anything is deleted, and a
//! genome an unfinished job uses is kept (the backend checks and deletes in one atomic step).

use super::{Conn, HandlerError};
use crate::master::MasterState;
use crate::protocol::{ErrorCode, GenomeRemovalOutcome, Message};

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
