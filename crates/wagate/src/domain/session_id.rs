//! Session ids are ULIDs.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(ulid::Ulid);

impl SessionId {
    /// What the parser accepts, as an ECMA-262 pattern for the OpenAPI document (Crockford
    /// base32 without I, L, O, U, either case; a unit test keeps the two equal).
    pub const PATTERN: &'static str = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$";

    pub fn new() -> Self {
        SessionId(ulid::Ulid::new())
    }
}

impl Default for SessionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for SessionId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Canonical ULIDs are 26 Crockford base32 characters; accept any case.
        // 26 characters, and the first at most '7' (a larger value does not fit 128 bits).
        if s.len() != 26 || !matches!(s.as_bytes()[0], b'0'..=b'7') {
            return Err("a session id is a 26-character ULID".into());
        }
        ulid::Ulid::from_string(s)
            .map(SessionId)
            .map_err(|_| "a session id is a 26-character ULID".into())
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let id = SessionId::new();
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
        assert_eq!(
            id.to_string().to_lowercase().parse::<SessionId>().unwrap(),
            id
        );
        assert!("sess_01HZX".parse::<SessionId>().is_err());
        assert!("".parse::<SessionId>().is_err());
        assert!("ZZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<SessionId>().is_err());
        assert!("01UUUUUUUUUUUUUUUUUUUUUUUU".parse::<SessionId>().is_err());
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(SessionId::PATTERN).unwrap();
        let base = "01HZX3K5M7P9R1T3V5W7Y9A1C3";
        let mut samples = vec![base.to_owned(), String::new(), base[1..].to_owned()];
        samples.push(format!("{base}0"));
        for c in (0u8..128).map(char::from) {
            samples.push(format!("{c}{}", &base[1..]));
            samples.push(format!("{}{c}", &base[..25]));
        }
        for s in samples {
            assert_eq!(re.is_match(&s), s.parse::<SessionId>().is_ok(), "{s:?}");
        }
    }
}
