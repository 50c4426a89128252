//! The wire protocol: length-prefixed frames (4-byte big-endian length, then a JSON object with a
//! `"type"` field, or raw bytes that the previous JSON frame announced), shared by every role.
