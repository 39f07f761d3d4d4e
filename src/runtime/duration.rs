//! Durations as users write them in specs and annotations.

use std::time::Duration;

/// Parses a Go-style duration (`90s`, `10m`, `1h30m`) into a positive std duration.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: kube::core::Duration = text
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 90s, 10m or 1h: {e}"))?;
    if parsed.is_negative() {
        return Err(format!("{text:?} is negative"));
    }
    let d: Duration = parsed.into();
    if d.is_zero() {
        return Err(format!("{text:?} is zero"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_kubernetes() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("-5s").is_err());
    }
}
