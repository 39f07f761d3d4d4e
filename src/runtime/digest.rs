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

/// FNV-1a, 64 bit: a hash that stays the same across builds and processes (the std hasher
/// does not promise that), for places and shards that every replica must agree on.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
