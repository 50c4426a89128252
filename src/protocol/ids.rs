//! The one rule for ids that name jobs and workers: 1 to [`MAX_ID_LEN`] ASCII letters, digits,
//! '-', '_', '.' or ':'. Ids become file names, Redis keys, log fields and socket names, so a
//! space, a control character, a look-alike letter or a 60,000-byte name is refused wherever
//! an id enters.

use thiserror::Error;

/// Longest id, in bytes. Ids name files on the master (hex-encoded, so twice as long), and this
/// keeps every such name well below the usual 255-byte file-name limit.
pub const MAX_ID_LEN: usize = 100;

/// Whether `id` follows the id rule.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
}

/// A worker id that breaks the id rule, shown cut short if it is long.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error(
    "worker id {shown}: use 1-{MAX_ID_LEN} ASCII letters, digits, '-', '_', '.' or ':' \
     (pick another --id / --worker-id)"
)]
pub struct BadWorkerId {
    /// The id, quoted and escaped, its first characters only when long.
    pub shown: String,
}

/// Checks a worker id against the id rule.
pub fn check_worker_id(id: &str) -> Result<(), BadWorkerId> {
    if valid_id(id) {
        return Ok(());
    }
    let head: String = id.chars().take(MAX_ID_LEN).collect();
    let shown = if head.len() < id.len() {
        format!("{head:?}... ({} bytes)", id.len())
    } else {
        format!("{head:?}")
    };
    Err(BadWorkerId { shown })
}

/// A stored genomes' directory id as lease requests carry it: 32 lowercase hex digits.
pub fn store_id_text(id: u128) -> String {
    format!("{id:032x}")
}

/// The directory id `text` names, if it is one ([`store_id_text`]'s form).
pub fn parse_store_id(text: &str) -> Option<u128> {
    let hex = text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit());
    hex.then(|| u128::from_str_radix(text, 16).ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_and_long_ids_are_refused() {
        for good in ["w1", "host-1234", "a.b:c_d", &"x".repeat(MAX_ID_LEN)] {
            assert!(check_worker_id(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "w1 ",
            " w1",
            "w\u{0131}",
            "w/1",
            "w1\n",
            &"x".repeat(MAX_ID_LEN + 1),
        ] {
            assert!(check_worker_id(bad).is_err(), "{bad:?}");
        }
        let message = check_worker_id("w1 ").unwrap_err().to_string();
        assert!(
            message.starts_with("worker id \"w1 \": use 1-100"),
            "{message}"
        );
        let long = check_worker_id(&"y".repeat(60_000))
            .unwrap_err()
            .to_string();
        assert!(long.contains("60000 bytes"), "{long}");
        assert!(
            long.len() < 400,
            "the message repeats the whole id: {} bytes",
            long.len()
        );
    }
}
