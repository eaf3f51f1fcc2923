//! Pagination parameters: the clamped page size and the opaque keyset cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A page size, clamped to 1–200; omitted or 0 means 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit(u32);

impl Limit {
    pub const DEFAULT: u32 = 50;
    pub const MAX: u32 = 200;

    /// Parses the raw query value. Non-numeric text is an error; numbers are clamped.
    pub fn parse(raw: Option<&str>) -> Result<Self, String> {
        Self::parse_range(raw, Self::DEFAULT, Self::MAX).map(Limit)
    }

    /// A page size in 1..=`max`: omitted or 0 gives `default`, other numbers are clamped to the
    /// nearest bound (however large), anything but an integer is an error.
    pub fn parse_range(raw: Option<&str>, default: u32, max: u32) -> Result<u32, String> {
        let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(default);
        };
        let digits = raw.strip_prefix(['-', '+']).unwrap_or(raw);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{raw}` is not an integer"));
        }
        // An integer too large for i64 is still an integer: it clamps to the nearest bound.
        let n: i64 = raw.parse().unwrap_or(if raw.starts_with('-') {
            i64::MIN
        } else {
            i64::MAX
        });
        Ok(match n {
            0 => default,
            n if n < 1 => 1,
            n if n > max as i64 => max,
            n => n as u32,
        })
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl Default for Limit {
    fn default() -> Self {
        Limit(Self::DEFAULT)
    }
}

/// A keyset position: the sort key values of the last row of the previous page.
///
/// Encoded as URL-safe base64 of `<kind>:<v1>:<v2>...`; the kind tag keeps a chats cursor from
/// being accepted by the messages list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub kind: char,
    pub keys: Vec<i64>,
}

impl Cursor {
    pub fn new(kind: char, keys: Vec<i64>) -> Self {
        Cursor { kind, keys }
    }

    pub fn encode(&self) -> String {
        let mut s = String::new();
        s.push(self.kind);
        for k in &self.keys {
            s.push(':');
            s.push_str(&k.to_string());
        }
        URL_SAFE_NO_PAD.encode(s)
    }

    /// Decodes a cursor that must be of `kind` with exactly `arity` keys.
    pub fn decode(raw: &str, kind: char, arity: usize) -> Result<Self, String> {
        let bad = || "the cursor is not one this endpoint issued".to_owned();
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.split(':');
        let tag = parts.next().ok_or_else(bad)?;
        if tag.len() != 1 || !tag.starts_with(kind) {
            return Err(bad());
        }
        let keys = parts
            .map(|p| p.parse::<i64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        if keys.len() != arity {
            return Err(bad());
        }
        Ok(Cursor { kind, keys })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_clamps() {
        assert_eq!(Limit::parse(None).unwrap().get(), 50);
        assert_eq!(Limit::parse(Some("0")).unwrap().get(), 50);
        assert_eq!(Limit::parse(Some("-5")).unwrap().get(), 1);
        assert_eq!(Limit::parse(Some("1000")).unwrap().get(), 200);
        assert_eq!(Limit::parse(Some("7")).unwrap().get(), 7);
        assert!(Limit::parse(Some("ten")).is_err());
        assert_eq!(
            Limit::parse(Some("99999999999999999999999")).unwrap().get(),
            200
        );
        assert_eq!(
            Limit::parse(Some("-99999999999999999999999"))
                .unwrap()
                .get(),
            1
        );
        assert!(Limit::parse(Some("1e3")).is_err());
        assert!(Limit::parse(Some("-")).is_err());
    }

    #[test]
    fn cursor_round_trip_and_rejects() {
        let c = Cursor::new('m', vec![1719662400000, 42]);
        assert_eq!(Cursor::decode(&c.encode(), 'm', 2).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), 'c', 2).is_err());
        assert!(Cursor::decode(&c.encode(), 'm', 3).is_err());
        assert!(Cursor::decode("!!!", 'm', 2).is_err());
        assert!(Cursor::decode("", 'm', 2).is_err());
    }
}
