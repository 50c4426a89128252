//! A lease token on Redis: `{stream index}/{entry id}/{nonce}`, naming the stream entry a task
//! was delivered from and the random nonce recorded with that delivery. Read by the queue (acks,
//! extensions, nacks) and the store (results fenced by the lease) alike.

use super::keys::ALL_STREAMS;

/// A lease token's parts: which stream, which entry, and the delivery's nonce.
pub(super) struct Token<'a> {
    pub stream_index: usize,
    pub entry_id: &'a str,
    pub nonce: &'a str,
}

/// Splits `{stream index}/{entry id}/{nonce}`. Tokens of leases handed out before deliveries had
/// nonces have none; they parse with an empty nonce, which no delivery holds. Anything else (a
/// forged or mangled token) names a delivery that never exists, so the scripts treat it as any
/// stale lease: refused and counted, never an internal error.
pub(super) fn parse_token(token: &str) -> Token<'_> {
    let mut fields = token.splitn(3, '/');
    let parsed = (|| {
        let stream_index: usize = fields.next()?.parse().ok()?;
        let entry_id = fields.next()?;
        let nonce = fields.next().unwrap_or("");
        (1..=ALL_STREAMS.len())
            .contains(&stream_index)
            .then_some(Token {
                stream_index,
                entry_id,
                nonce,
            })
    })();
    parsed.unwrap_or(Token {
        stream_index: 1,
        entry_id: "0-0",
        nonce: "",
    })
}
