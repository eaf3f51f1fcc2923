//! Pagination parameters: the clamped page size and the opaque keyset cursor.

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
        let Some(raw) = raw else {
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
/// Written as `<kind>.<v1>.<v2>...` with decimal keys: clients treat it as opaque, and because
/// it is a regular language the OpenAPI document can give its exact pattern (see
/// [`Cursor::pattern`]), so any string a client or fuzzer draws from that pattern is a valid
/// position. The kind tag keeps a chats cursor from being accepted by the messages list.
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
            s.push('.');
            s.push_str(&k.to_string());
        }
        s
    }

    /// The cursors [`Cursor::decode`] accepts for `kind` and `arity`, plus the empty string
    /// (first page), as an ECMA-262 pattern.
    pub fn pattern(kind: char, arity: usize) -> String {
        format!("^({kind}(\\.-?[0-9]{{1,19}}){{{arity}}})?$")
    }

    /// Decodes a cursor that must be of `kind` with exactly `arity` keys. A key beyond the
    /// 64-bit range is a position past every row in that direction, so it saturates.
    pub fn decode(raw: &str, kind: char, arity: usize) -> Result<Self, String> {
        let bad = || "the cursor is not one this endpoint issued".to_owned();
        let mut parts = raw.split('.');
        if parts.next() != Some(kind.encode_utf8(&mut [0; 4])) {
            return Err(bad());
        }
        let keys = parts
            .map(|p| {
                let digits = p.strip_prefix('-').unwrap_or(p);
                if digits.is_empty()
                    || digits.len() > 19
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad());
                }
                let n: i128 = p.parse().map_err(|_| bad())?;
                Ok(n.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
            })
            .collect::<Result<Vec<_>, _>>()?;
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
        assert!(Limit::parse(Some("")).is_err());
        assert!(Limit::parse(Some(" 5")).is_err());
    }

    #[test]
    fn cursor_round_trip_and_rejects() {
        let c = Cursor::new('m', vec![1719662400000, 42]);
        assert_eq!(Cursor::decode(&c.encode(), 'm', 2).unwrap(), c);
        assert!(Cursor::decode(&c.encode(), 'c', 2).is_err());
        assert!(Cursor::decode(&c.encode(), 'm', 3).is_err());
        assert!(Cursor::decode("!!!", 'm', 2).is_err());
        assert!(Cursor::decode("", 'm', 2).is_err());
        let max = Cursor::decode("m.9999999999999999999.-9999999999999999999", 'm', 2).unwrap();
        assert_eq!(max.keys, vec![i64::MAX, i64::MIN]);
        let edge = Cursor::new('c', vec![1, i64::MIN, i64::MAX]);
        assert_eq!(Cursor::decode(&edge.encode(), 'c', 3).unwrap(), edge);
    }

    #[test]
    fn cursor_pattern_agrees_with_decoder() {
        let re = regex::Regex::new(&Cursor::pattern('m', 2)).unwrap();
        let mut samples: Vec<String> = [
            "m.1.2",
            "m.-1.-2",
            "m.1",
            "m.1.2.3",
            "c.1.2",
            "m..2",
            "m.1.",
            ".1.2",
            "m1.2",
            "m.--1.2",
            "m.+1.2",
            "m.1.2 ",
            "m.01.002",
            "m.9999999999999999999.1",
            "m.99999999999999999999.1",
            "mm.1.2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for c in (0u8..128).map(char::from) {
            samples.push(format!("m.1{c}.2"));
            samples.push(format!("{c}.1.2"));
        }
        for s in samples {
            assert_eq!(re.is_match(&s), Cursor::decode(&s, 'm', 2).is_ok(), "{s:?}");
        }
        assert!(re.is_match(""), "the empty cursor means the first page");
    }
}
