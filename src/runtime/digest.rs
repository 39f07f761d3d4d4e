//! SHA-256 as the operator writes it: lowercase hex (X's identifiers, `urlSha256`).

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of the UTF-8 string.
pub fn sha256_hex(value: &str) -> String {
    // Into a buffer: `hex::encode` goes through a char iterator, which is slower on the
    // bridge's hot path.
    let mut text = [0u8; 64];
    if hex::encode_to_slice(Sha256::digest(value.as_bytes()), &mut text).is_err() {
        unreachable!("a SHA-256 digest is 32 bytes");
    }
    text.iter().copied().map(char::from).collect()
}
