//! SHA-256 as the operator writes it: lowercase hex (X's identifiers, `urlSha256`).

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of the UTF-8 string.
pub fn sha256_hex(value: &str) -> String {
    Sha256Hex::of(value.as_bytes()).as_str().to_string()
}

/// A SHA-256 digest as 64 lowercase hex digits, held inline: the bridge makes one or two per
/// event, and a heap string each would cost more than the hashing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex([u8; 64]);

impl Sha256Hex {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        let mut text = [0u8; 64];
        for (pair, byte) in text.chunks_exact_mut(2).zip(Sha256::digest(bytes)) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        Sha256Hex(text)
    }

    /// `text` when it already is a digest in hex (either case); lowercased.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes: [u8; 64] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(u8::is_ascii_hexdigit)
            .then(|| Sha256Hex(bytes.map(|b| b.to_ascii_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        // Only ever ASCII hex digits (built above).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl PartialEq<str> for Sha256Hex {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Sha256Hex {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// FNV-1a, 64 bit: a hash that stays the same across builds and processes (the std hasher
/// does not promise that), for places and shards that every replica must agree on.
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_read_as_lowercase_hex() {
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(Sha256Hex::of(b"abc"), abc);
        assert_eq!(sha256_hex("abc"), abc);
        assert_eq!(
            Sha256Hex::parse(&abc.to_uppercase()),
            Some(Sha256Hex::of(b"abc"))
        );
        assert_eq!(Sha256Hex::parse(&abc[1..]), None);
        assert_eq!(Sha256Hex::parse(&format!("g{}", &abc[1..])), None);
    }
}
