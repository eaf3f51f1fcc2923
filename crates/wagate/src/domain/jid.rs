//! WhatsApp addresses (JIDs) as the API accepts them.
//!
//! Accepted forms: `<digits>@s.whatsapp.net` (a person by phone number; the legacy `@c.us`
//! is normalised to it), `<digits>@lid` (a person by privacy id), `<digits>@g.us` or
//! `<digits>-<digits>@g.us` (a group), `<digits>@newsletter`, `<digits>@broadcast` and
//! `status@broadcast`. A device suffix (`:12`) or agent (`.0`) is accepted and dropped by
//! [`Jid::parse_user`], the parser for addresses of people reported by WhatsApp.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Server {
    User,
    Lid,
    Group,
    Newsletter,
    Broadcast,
}

impl Server {
    fn suffix(self) -> &'static str {
        match self {
            Server::User => "s.whatsapp.net",
            Server::Lid => "lid",
            Server::Group => "g.us",
            Server::Newsletter => "newsletter",
            Server::Broadcast => "broadcast",
        }
    }
}

/// What kind of conversation a chat JID names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatKind {
    Dm,
    Group,
    Newsletter,
    Broadcast,
    Status,
}

impl ChatKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Dm => "dm",
            ChatKind::Group => "group",
            ChatKind::Newsletter => "newsletter",
            ChatKind::Broadcast => "broadcast",
            ChatKind::Status => "status",
        }
    }
}

/// A validated, normalised JID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Jid {
    user: String,
    server: Server,
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

impl Jid {
    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn server(&self) -> Server {
        self.server
    }

    pub fn phone(digits: &str) -> Self {
        Jid {
            user: digits.to_owned(),
            server: Server::User,
        }
    }

    pub fn is_person(&self) -> bool {
        matches!(self.server, Server::User | Server::Lid)
    }

    pub fn is_lid(&self) -> bool {
        self.server == Server::Lid
    }

    pub fn is_phone(&self) -> bool {
        self.server == Server::User
    }

    pub fn is_group(&self) -> bool {
        self.server == Server::Group
    }

    pub fn chat_kind(&self) -> ChatKind {
        match self.server {
            Server::User | Server::Lid => ChatKind::Dm,
            Server::Group => ChatKind::Group,
            Server::Newsletter => ChatKind::Newsletter,
            Server::Broadcast if self.user == "status" => ChatKind::Status,
            Server::Broadcast => ChatKind::Broadcast,
        }
    }

    /// Parses the address of a person or chat as WhatsApp reports it, dropping any device or
    /// agent part (`123:4@s.whatsapp.net` → `123@s.whatsapp.net`).
    pub fn parse_user(s: &str) -> Result<Self, String> {
        let (user, server) = s
            .split_once('@')
            .ok_or_else(|| format!("`{s}` is not a JID (missing @)"))?;
        let user = user.split(':').next().unwrap_or(user);
        let user = user.split('.').next().unwrap_or(user);
        format!("{user}@{server}").parse()
    }
}

impl Jid {
    /// The accepted forms as an ECMA-262 pattern, for the OpenAPI document; a unit test keeps it
    /// equal to the parser.
    pub const PATTERN: &'static str = "^([0-9]{1,32}@(s\\.whatsapp\\.net|c\\.us|lid|newsletter)|[0-9]{1,32}(-[0-9]{1,32})?@g\\.us|([0-9]{1,32}|status)@broadcast)$";
    /// People only (by phone number or LID).
    pub const PERSON_PATTERN: &'static str = "^[0-9]{1,32}@(s\\.whatsapp\\.net|c\\.us|lid)$";
    /// Group JIDs only.
    pub const GROUP_PATTERN: &'static str = "^[0-9]{1,32}(-[0-9]{1,32})?@g\\.us$";
}

impl FromStr for Jid {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("`{s}` is not a valid chat JID (expected e.g. 6281234567890@s.whatsapp.net or 123-456@g.us)")
        };
        let (user, server) = s.split_once('@').ok_or_else(bad)?;
        let server = match server {
            "s.whatsapp.net" | "c.us" => Server::User,
            "lid" => Server::Lid,
            "g.us" => Server::Group,
            "newsletter" => Server::Newsletter,
            "broadcast" => Server::Broadcast,
            _ => return Err(bad()),
        };
        let ok = match server {
            Server::User | Server::Lid | Server::Newsletter => all_digits(user),
            Server::Group => match user.split_once('-') {
                Some((a, b)) => all_digits(a) && all_digits(b),
                None => all_digits(user),
            },
            Server::Broadcast => user == "status" || all_digits(user),
        };
        if !ok {
            return Err(bad());
        }
        Ok(Jid {
            user: user.to_owned(),
            server,
        })
    }
}

impl fmt::Display for Jid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.user, self.server.suffix())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind() {
        let j: Jid = "6281234567890@s.whatsapp.net".parse().unwrap();
        assert_eq!(j.chat_kind(), ChatKind::Dm);
        assert!(j.is_phone());
        assert_eq!("6281234567890@c.us".parse::<Jid>().unwrap(), j);
        assert_eq!(
            "12345-67890@g.us".parse::<Jid>().unwrap().chat_kind(),
            ChatKind::Group
        );
        assert_eq!(
            "120363012345@g.us".parse::<Jid>().unwrap().chat_kind(),
            ChatKind::Group
        );
        assert!("205227043110953@lid".parse::<Jid>().unwrap().is_lid());
        assert_eq!(
            "status@broadcast".parse::<Jid>().unwrap().chat_kind(),
            ChatKind::Status
        );
        assert_eq!(
            "1203@newsletter".parse::<Jid>().unwrap().chat_kind(),
            ChatKind::Newsletter
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "abc",
            "abc@s.whatsapp.net",
            "123@example.com",
            "@g.us",
            "1-2-3@g.us",
            "12:3@s.whatsapp.net",
            "status@g.us",
            " 1@s.whatsapp.net",
            "1@S.WHATSAPP.NET",
            "1@s.whatsapp.net\n",
        ] {
            assert!(bad.parse::<Jid>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn pattern_agrees_with_parser() {
        let re = regex::Regex::new(Jid::PATTERN).unwrap();
        let group = regex::Regex::new(Jid::GROUP_PATTERN).unwrap();
        let person = regex::Regex::new(Jid::PERSON_PATTERN).unwrap();
        let mut samples: Vec<String> = [
            "1@s.whatsapp.net",
            "1@c.us",
            "1@lid",
            "1@newsletter",
            "1@g.us",
            "1-2@g.us",
            "1@broadcast",
            "status@broadcast",
            "x@lid",
            "1@x",
            "1-@g.us",
            "-1@g.us",
            "1-2@lid",
            "status@lid",
            "@lid",
            "1@",
            "1",
            "",
            "1@@lid",
            "1@lid@lid",
            "1.0@lid",
            "1:2@lid",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        samples.push(format!("{}@lid", "9".repeat(32)));
        samples.push(format!("{}@lid", "9".repeat(33)));
        samples.push(format!("1-{}@g.us", "9".repeat(33)));
        for c in (0u8..128).map(char::from) {
            samples.push(format!("1{c}@lid"));
            samples.push(format!("{c}1@g.us"));
            samples.push(format!("1@lid{c}"));
        }
        for s in samples {
            let parsed = s.parse::<Jid>();
            assert_eq!(re.is_match(&s), parsed.is_ok(), "{s:?}");
            assert_eq!(
                person.is_match(&s),
                parsed.as_ref().is_ok_and(|j| j.is_person()),
                "{s:?}"
            );
            assert_eq!(
                group.is_match(&s),
                parsed.is_ok_and(|j| j.is_group()),
                "{s:?}"
            );
        }
    }

    #[test]
    fn parse_user_drops_device() {
        assert_eq!(
            Jid::parse_user("123:7@s.whatsapp.net").unwrap().to_string(),
            "123@s.whatsapp.net"
        );
        assert_eq!(Jid::parse_user("99.0:1@lid").unwrap().to_string(), "99@lid");
    }
}
