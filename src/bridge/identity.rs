//! User identifiers for X conversions (SPEC 1.5): E.164 phone numbers and
//! emails, normalised then hashed with lowercase hex SHA-256.
//!
//! Pure functions. Rejection reasons never echo the input (it is personal data).

use std::fmt;

use crate::runtime::digest::Sha256Hex;

/// Why an identifier cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// Nothing left after trimming.
    Empty,
    /// A character other than digits, spaces, dashes, dots, parentheses and one leading `+`.
    InvalidCharacter,
    /// Fewer than 8 digits.
    TooShort {
        /// Digits found.
        digits: usize,
    },
    /// More than 15 digits.
    TooLong {
        /// Digits found.
        digits: usize,
    },
    /// The number does not start with an assigned ITU country calling code.
    UnknownCountryCode,
    /// Not of the form `local@domain`.
    InvalidEmail,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::Empty => f.write_str("identifier is empty"),
            IdentityError::InvalidCharacter => f.write_str(
                "phone number contains characters other than digits, spaces, dashes, dots, parentheses and a leading +",
            ),
            IdentityError::TooShort { digits } => {
                write!(f, "phone number has {digits} digits, at least 8 required")
            }
            IdentityError::TooLong { digits } => {
                write!(f, "phone number has {digits} digits, at most 15 allowed")
            }
            IdentityError::UnknownCountryCode => {
                f.write_str("phone number does not start with a valid country calling code")
            }
            IdentityError::InvalidEmail => f.write_str("email address is not valid"),
        }
    }
}

impl std::error::Error for IdentityError {}

/// Assigned ITU-T E.164 country calling codes (geographic and global services).
const COUNTRY_CODES: &[u16] = &[
    1, 7, 20, 27, 30, 31, 32, 33, 34, 36, 39, 40, 41, 43, 44, 45, 46, 47, 48, 49, 51, 52, 53, 54,
    55, 56, 57, 58, 60, 61, 62, 63, 64, 65, 66, 81, 82, 84, 86, 90, 91, 92, 93, 94, 95, 98, 211,
    212, 213, 216, 218, 220, 221, 222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233, 234,
    235, 236, 237, 238, 239, 240, 241, 242, 243, 244, 245, 246, 247, 248, 249, 250, 251, 252, 253,
    254, 255, 256, 257, 258, 260, 261, 262, 263, 264, 265, 266, 267, 268, 269, 290, 291, 297, 298,
    299, 350, 351, 352, 353, 354, 355, 356, 357, 358, 359, 370, 371, 372, 373, 374, 375, 376, 377,
    378, 379, 380, 381, 382, 383, 385, 386, 387, 389, 420, 421, 423, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 509, 590, 591, 592, 593, 594, 595, 596, 597, 598, 599, 670, 672, 673, 674, 675,
    676, 677, 678, 679, 680, 681, 682, 683, 685, 686, 687, 688, 689, 690, 691, 692, 800, 808, 850,
    852, 853, 855, 856, 870, 878, 880, 881, 882, 883, 886, 888, 960, 961, 962, 963, 964, 965, 966,
    967, 968, 970, 971, 972, 973, 974, 975, 976, 977, 979, 992, 993, 994, 995, 996, 998,
];

fn has_country_code(digits: &str) -> bool {
    // No calling code starts with 0 (a trunk or international prefix).
    !digits.starts_with('0')
        && (1..=3).any(|len| {
            digits
                .get(..len)
                .and_then(|p| p.parse::<u16>().ok())
                .is_some_and(|code| COUNTRY_CODES.contains(&code))
        })
}

/// Normalise a phone number to E.164 (`+` and 8..15 digits with a valid country code).
///
/// Strips spaces, dashes, dots, parentheses and one leading `+` or `00`.
pub fn normalize_phone(input: &str) -> Result<String, IdentityError> {
    E164::parse(input).map(|n| n.as_str().to_string())
}

/// An E.164 number, held inline (`+` and at most 15 digits; room for a `00` prefix on top).
struct E164 {
    text: [u8; 18],
    len: usize,
}

impl E164 {
    fn parse(input: &str) -> Result<Self, IdentityError> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(IdentityError::Empty);
        }
        let rest = trimmed.strip_prefix('+').unwrap_or(trimmed);
        let mut number = E164 {
            text: [b'+'; 18],
            len: 1,
        };
        // Digits past the 17th are counted, not kept: the number is refused anyway.
        let mut digits = 0usize;
        for b in rest.bytes() {
            match b {
                b'0'..=b'9' => {
                    if let Some(slot) = number.text.get_mut(1 + digits) {
                        *slot = b;
                    }
                    digits += 1;
                }
                b' ' | b'-' | b'.' | b'(' | b')' => {}
                _ => return Err(IdentityError::InvalidCharacter),
            }
        }
        let mut skip = 0;
        if rest.len() == trimmed.len() && digits >= 2 && number.text[1..3] == *b"00" {
            skip = 2;
            digits -= 2;
        }
        if digits == 0 {
            return Err(IdentityError::Empty);
        }
        if digits < 8 {
            return Err(IdentityError::TooShort { digits });
        }
        if digits > 15 {
            return Err(IdentityError::TooLong { digits });
        }
        number.text.copy_within(1 + skip..1 + skip + digits, 1);
        number.len = 1 + digits;
        if !has_country_code(&number.as_str()[1..]) {
            return Err(IdentityError::UnknownCountryCode);
        }
        Ok(number)
    }

    fn as_str(&self) -> &str {
        // Only ever `+` and ASCII digits (built above).
        std::str::from_utf8(&self.text[..self.len]).unwrap_or_default()
    }
}

/// The identifier X takes for a phone number: the SHA-256 of its E.164 form; a value that
/// already is a SHA-256 in hex is taken as it is (lowercased).
pub fn hash_phone(input: &str) -> Result<Sha256Hex, IdentityError> {
    let trimmed = input.trim();
    if let Some(hash) = Sha256Hex::parse(trimmed) {
        return Ok(hash);
    }
    E164::parse(trimmed).map(|e164| Sha256Hex::of(e164.as_str().as_bytes()))
}

/// Normalise an email: trimmed, lowercased, `local@domain`.
pub fn normalize_email(input: &str) -> Result<String, IdentityError> {
    let email = input.trim().to_lowercase();
    if email.is_empty() {
        return Err(IdentityError::Empty);
    }
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    };
    if !valid {
        return Err(IdentityError::InvalidEmail);
    }
    Ok(email)
}

/// The identifier X takes for an email: the SHA-256 of its normalised form, or the value
/// itself when it already is a SHA-256 in hex.
pub fn hash_email(input: &str) -> Result<Sha256Hex, IdentityError> {
    let trimmed = input.trim();
    if let Some(hash) = Sha256Hex::parse(trimmed) {
        return Ok(hash);
    }
    normalize_email(trimmed).map(|e| Sha256Hex::of(e.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE_HASH: &str = "1fa6b8d986d9b9cd01bf36951815158bbde9f520c0567c835dfe34783d0a4231";
    const EMAIL_HASH: &str = "d360d510a224510f373931ce2d6215a799f5a9c1cef221b0149b6b6b50cced62";

    #[test]
    fn phone_vectors() {
        assert_eq!(Sha256Hex::of(b"+11234567890"), PHONE_HASH);
        for input in [
            "+11234567890",
            "11234567890",
            "0011234567890",
            "+1 123-456-7890",
            "(1) 123.456.7890",
            " 11234567890 ",
        ] {
            assert_eq!(
                normalize_phone(input).as_deref(),
                Ok("+11234567890"),
                "{input}"
            );
            assert_eq!(
                hash_phone(input).map(|h| h.to_string()).as_deref(),
                Ok(PHONE_HASH),
                "{input}"
            );
        }
        assert_eq!(
            normalize_phone("4915112345678").as_deref(),
            Ok("+4915112345678")
        );
    }

    #[test]
    fn email_vectors() {
        assert_eq!(
            hash_email("test@twitter.com")
                .map(|h| h.to_string())
                .as_deref(),
            Ok(EMAIL_HASH)
        );
        assert_eq!(
            hash_email(" TEST@twitter.com ")
                .map(|h| h.to_string())
                .as_deref(),
            Ok(EMAIL_HASH)
        );
        assert_eq!(hash_email("no-at-sign"), Err(IdentityError::InvalidEmail));
        assert_eq!(hash_email("a@b@c"), Err(IdentityError::InvalidEmail));
        assert_eq!(hash_email("   "), Err(IdentityError::Empty));
    }

    #[test]
    fn hashes_are_kept() {
        assert_eq!(
            hash_phone(PHONE_HASH).map(|h| h.to_string()).as_deref(),
            Ok(PHONE_HASH)
        );
        assert_eq!(
            hash_email(EMAIL_HASH).map(|h| h.to_string()).as_deref(),
            Ok(EMAIL_HASH)
        );
        // Uppercase hex is a hash too, sent in X's lowercase form.
        assert_eq!(
            hash_email(&PHONE_HASH.to_uppercase())
                .map(|h| h.to_string())
                .as_deref(),
            Ok(PHONE_HASH)
        );
        assert_eq!(
            hash_phone(&EMAIL_HASH.to_uppercase())
                .map(|h| h.to_string())
                .as_deref(),
            Ok(EMAIL_HASH)
        );
    }

    #[test]
    fn phone_rejections() {
        assert_eq!(
            normalize_phone("1234567"),
            Err(IdentityError::TooShort { digits: 7 })
        );
        assert_eq!(
            normalize_phone("1234567890123456"),
            Err(IdentityError::TooLong { digits: 16 })
        );
        assert_eq!(
            normalize_phone("1123abc7890"),
            Err(IdentityError::InvalidCharacter)
        );
        assert_eq!(
            normalize_phone("++11234567890"),
            Err(IdentityError::InvalidCharacter)
        );
        assert_eq!(
            normalize_phone("99912345678"),
            Err(IdentityError::UnknownCountryCode)
        );
        assert_eq!(
            normalize_phone("+0011234567890"),
            Err(IdentityError::UnknownCountryCode)
        );
        assert_eq!(normalize_phone(""), Err(IdentityError::Empty));
        // A 00 prefix does not count towards the 15 digits; everything else does.
        assert_eq!(
            normalize_phone("00441234567890123").as_deref(),
            Ok("+441234567890123")
        );
        assert_eq!(
            normalize_phone("0044123456789012345"),
            Err(IdentityError::TooLong { digits: 17 })
        );
        assert_eq!(
            normalize_phone("+1 (234) 567-8901-2345-6789"),
            Err(IdentityError::TooLong { digits: 19 })
        );
        assert_eq!(normalize_phone("+"), Err(IdentityError::Empty));
        assert_eq!(
            IdentityError::TooShort { digits: 7 }.to_string(),
            "phone number has 7 digits, at least 8 required"
        );
        assert_eq!(
            IdentityError::UnknownCountryCode.to_string(),
            "phone number does not start with a valid country calling code"
        );
    }
}
