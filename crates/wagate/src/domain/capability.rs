//! Gateway capabilities (`read`, `send`, `manage`, `events`) and sets of them.

use std::fmt;
use std::str::FromStr;

/// One permission a caller can hold.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    Read,
    Send,
    Manage,
    Events,
}

impl Capability {
    pub const ALL: [Capability; 4] = [
        Capability::Read,
        Capability::Send,
        Capability::Manage,
        Capability::Events,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Read => "read",
            Capability::Send => "send",
            Capability::Manage => "manage",
            Capability::Events => "events",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Capability::Read => 1,
            Capability::Send => 2,
            Capability::Manage => 4,
            Capability::Events => 8,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Capability {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "read" => Ok(Capability::Read),
            "send" => Ok(Capability::Send),
            "manage" => Ok(Capability::Manage),
            "events" => Ok(Capability::Events),
            other => Err(format!(
                "unknown capability `{other}` (expected read, send, manage or events)"
            )),
        }
    }
}

/// A set of capabilities, stored as `read,send,...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CapSet(u8);

impl CapSet {
    pub fn all() -> Self {
        Capability::ALL.into_iter().collect()
    }

    pub fn contains(self, c: Capability) -> bool {
        self.0 & c.bit() != 0
    }

    pub fn is_subset_of(self, other: CapSet) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }

    /// Parses a comma-separated list such as `read,send`.
    pub fn parse_list(s: &str) -> Result<Self, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromIterator<Capability> for CapSet {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        CapSet(iter.into_iter().fold(0, |acc, c| acc | c.bit()))
    }
}

impl fmt::Display for CapSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<&str> = self.iter().map(Capability::as_str).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lists() {
        let s = CapSet::parse_list("send, read").unwrap();
        assert_eq!(s.to_string(), "read,send");
        assert!(s.contains(Capability::Read) && !s.contains(Capability::Manage));
        assert!(CapSet::parse_list("read,admin").is_err());
        assert!(s.is_subset_of(CapSet::all()));
        assert!(!CapSet::all().is_subset_of(s));
    }
}
