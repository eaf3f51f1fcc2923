//! International phone numbers as WhatsApp uses them: digits only, country code first.

use std::fmt;
use std::str::FromStr;

/// A plausible international number, normalised to its digits (E.164 without the `+`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    /// What the parser accepts, as an ECMA-262 pattern for the OpenAPI document; a unit test
    /// keeps the two equal.
    pub const PATTERN: &'static str = "^\\+?[ .()-]*[1-9]([ .()-]*[0-9]){6,14}[ .()-]*$";

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl FromStr for Phone {
    type Err = String;
    /// Accepts `+62 812-3456-7890`, `(62) 8123.4567`, `6281234567890`; separators are dropped.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix('+').unwrap_or(s);
        let mut digits = String::with_capacity(s.len());
        for ch in s.chars() {
            match ch {
                '0'..='9' => digits.push(ch),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => {
                    return Err(
                        "a phone number has only digits, optionally a leading + and separators"
                            .into(),
                    )
                }
            }
        }
        if digits.len() < 7 || digits.len() > 15 {
            return Err("a phone number has 7 to 15 digits including the country code".into());
        }
        if digits.starts_with('0') {
            return Err("a phone number starts with its country code, not 0".into());
        }
        Ok(Phone(digits))
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_rejects() {
        assert_eq!(
            "+62 812-3456-7890".parse::<Phone>().unwrap().digits(),
            "6281234567890"
        );
        assert_eq!(
            "6281234567890".parse::<Phone>().unwrap().digits(),
            "6281234567890"
        );
        assert!("081234567".parse::<Phone>().is_err());
        assert!("12345".parse::<Phone>().is_err());
        assert!("62812abc".parse::<Phone>().is_err());
        assert!("1234567890123456".parse::<Phone>().is_err());
        assert!("".parse::<Phone>().is_err());
        assert!(" 6281234567890\t".parse::<Phone>().is_err());
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(Phone::PATTERN).unwrap();
        let mut samples: Vec<String> = [
            "+62 812-3456-7890",
            "(62) 8123.4567",
            "1234567",
            "123456",
            "123456789012345",
            "1234567890123456",
            "+",
            "",
            "++1234567",
            "1+234567",
            " +1234567",
            "0123456",
            "(0)1234567",
            "--1234567--",
            "1234567 ",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for c in (0u8..128).map(char::from) {
            samples.push(format!("{c}6281234567"));
            samples.push(format!("628{c}1234567"));
            samples.push(format!("6281234567{c}"));
        }
        for s in samples {
            assert_eq!(re.is_match(&s), s.parse::<Phone>().is_ok(), "{s:?}");
        }
    }
}
