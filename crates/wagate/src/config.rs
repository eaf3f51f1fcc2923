//! Typed configuration, loaded once from an optional TOML file and `WAGATE_*` variables
//! (variables win), and validated before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

/// Every setting, with its default. Each key is also read from `WAGATE_<KEY>` (upper case).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Folder for the SQLite file, the admin key and engine state.
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means `sqlite://<data_dir>/wagate.db`.
    pub database_url: String,
    /// Pool size.
    pub database_max_connections: u32,
    /// The frontend's JWKS URL; empty disables login JWTs (API keys only).
    pub jwks_url: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_claim_sub: String,
    pub jwt_claim_org: String,
    pub jwt_claim_org_role: String,
    pub jwt_claim_role: String,
    /// Minimum seconds between two JWKS fetches caused by unknown key ids.
    pub jwks_refresh_interval_secs: u64,
    /// Seconds a fetched JWKS is trusted before it is fetched again.
    pub jwks_max_age_secs: u64,
    /// Largest accepted request body, bytes.
    pub body_limit_bytes: usize,
    /// `text` or `json`.
    pub log_format: String,
    /// Default send rate limits of new sessions.
    pub default_rate_per_min: i64,
    pub default_rate_per_hour: i64,
    /// How long outbox events are kept, days.
    pub events_retention_days: u64,
    /// WhatsApp's chat socket. Only a `simulator` build may point elsewhere, and only at loopback.
    pub wa_url: String,
    /// Consecutive failed connects after which a session is `failed` (the engine would retry
    /// forever).
    pub max_connect_failures: u32,
    /// Sessions reconnecting at once when the gateway starts.
    pub resume_concurrency: usize,
    /// Largest file the gateway downloads for a send's `media.url`, bytes.
    pub media_url_max_bytes: usize,
    /// Time limit of such a download, seconds.
    pub media_url_timeout_secs: u64,
    /// The on-disk media store (sessions with `downloadMedia`); empty means `<data_dir>/media`.
    pub media_dir: String,
    /// Largest incoming attachment the media store keeps, bytes (larger ones stay on
    /// WhatsApp's servers, fetchable while connected).
    pub media_store_max_bytes: u64,
    /// Let `media.url` point at loopback, private and link-local addresses (off: the gateway
    /// would otherwise fetch from inside its own network on a caller's behalf).
    pub media_url_allow_private: bool,
    /// `media.url` downloads in flight at once; more wait for a free slot (each holds up to
    /// `media_url_max_bytes` in memory until its send is stored).
    pub media_url_max_concurrent: usize,
    /// Time limit of one request, seconds: a request still unanswered then gets 504
    /// `gateway_timeout`. Must exceed `media_url_timeout_secs`; a synchronous send shortens its
    /// wait for WhatsApp to fit (it answers 202 in time).
    pub request_timeout_secs: u64,
    /// API requests in progress at once; more are refused at once with 503
    /// `gateway_unavailable` and `Retry-After` (load shedding). `/healthz`, `/readyz` and
    /// `/metrics` are not counted.
    pub max_concurrent_requests: usize,
}

/// WhatsApp's chat socket.
pub const WHATSAPP_URL: &str = "wss://web.whatsapp.com/ws/chat";

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: String::new(),
            database_max_connections: 8,
            jwks_url: String::new(),
            jwt_issuer: String::new(),
            jwt_audience: String::new(),
            jwt_claim_sub: "sub".into(),
            jwt_claim_org: "activeOrganizationId".into(),
            jwt_claim_org_role: "orgRole".into(),
            jwt_claim_role: "role".into(),
            jwks_refresh_interval_secs: 30,
            jwks_max_age_secs: 600,
            body_limit_bytes: 1024 * 1024,
            log_format: "text".into(),
            default_rate_per_min: 20,
            default_rate_per_hour: 600,
            events_retention_days: 7,
            wa_url: WHATSAPP_URL.into(),
            max_connect_failures: 5,
            resume_concurrency: 64,
            media_url_max_bytes: 64 * 1024 * 1024,
            media_url_timeout_secs: 30,
            media_url_allow_private: false,
            media_dir: String::new(),
            media_store_max_bytes: 64 * 1024 * 1024,
            media_url_max_concurrent: 4,
            request_timeout_secs: 60,
            max_concurrent_requests: 1024,
        }
    }
}

/// A setting that stops the start, named.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Defaults, then the TOML file (if any), then `WAGATE_*` variables; then validation.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    f.display()
                )));
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only variables naming a setting are read, so WAGATE_TEST_* and the like are ignored.
        let known: Vec<String> = serde_json::to_value(Config::default())
            .ok()
            .and_then(|v| v.as_object().map(|o| o.keys().cloned().collect()))
            .unwrap_or_default();
        fig = fig.merge(
            Env::prefixed("WAGATE_")
                .filter(move |k| known.iter().any(|n| k.as_str().eq_ignore_ascii_case(n))),
        );
        let cfg: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |m: String| Err(ConfigError(m));
        if self.listen.parse::<SocketAddr>().is_err() {
            return err(format!(
                "listen (WAGATE_LISTEN): `{}` is not an address like 127.0.0.1:8080",
                self.listen
            ));
        }
        let db = self.database_url();
        if !(db.starts_with("sqlite:")
            || db.starts_with("postgres://")
            || db.starts_with("postgresql://"))
        {
            return err(format!("database_url (WAGATE_DATABASE_URL): `{db}` must start with sqlite:// or postgres://"));
        }
        if self.database_max_connections == 0 {
            return err(
                "database_max_connections (WAGATE_DATABASE_MAX_CONNECTIONS) must be at least 1"
                    .into(),
            );
        }
        if !self.jwks_url.is_empty() {
            match url::Url::parse(&self.jwks_url) {
                Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
                _ => {
                    return err(format!(
                        "jwks_url (WAGATE_JWKS_URL): `{}` is not an http(s) URL",
                        self.jwks_url
                    ))
                }
            }
            if self.jwt_issuer.is_empty() {
                return err(
                    "jwt_issuer (WAGATE_JWT_ISSUER) is required when jwks_url is set".into(),
                );
            }
            if self.jwt_audience.is_empty() {
                return err(
                    "jwt_audience (WAGATE_JWT_AUDIENCE) is required when jwks_url is set".into(),
                );
            }
        }
        for (name, v) in [
            ("jwt_claim_sub", &self.jwt_claim_sub),
            ("jwt_claim_org", &self.jwt_claim_org),
            ("jwt_claim_org_role", &self.jwt_claim_org_role),
            ("jwt_claim_role", &self.jwt_claim_role),
        ] {
            if v.trim().is_empty() {
                return err(format!(
                    "{name} (WAGATE_{}) must not be empty",
                    name.to_uppercase()
                ));
            }
        }
        if self.body_limit_bytes < 1024 {
            return err("body_limit_bytes (WAGATE_BODY_LIMIT_BYTES) must be at least 1024".into());
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return err(format!(
                "log_format (WAGATE_LOG_FORMAT): `{}` must be text or json",
                self.log_format
            ));
        }
        if self.default_rate_per_min < 1 || self.default_rate_per_hour < 1 {
            return err("default_rate_per_min and default_rate_per_hour must be at least 1".into());
        }
        if !(1..=3650).contains(&self.events_retention_days) {
            return err(format!(
                "events_retention_days (WAGATE_EVENTS_RETENTION_DAYS): `{}` must be 1 to 3650",
                self.events_retention_days
            ));
        }
        let url = url::Url::parse(&self.wa_url).map_err(|e| {
            ConfigError(format!(
                "wa_url (WAGATE_WA_URL): `{}` is not a URL: {e}",
                self.wa_url
            ))
        })?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return err(format!(
                "wa_url (WAGATE_WA_URL): `{}` must be ws:// or wss://",
                self.wa_url
            ));
        }
        let loopback = matches!(
            url.host_str(),
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1")
        );
        if cfg!(feature = "simulator") && !loopback {
            return err(format!(
                "this is a TEST BUILD (feature `simulator`: WhatsApp's certificates are not checked); it only talks \
to a simulator on loopback, and WAGATE_WA_URL is `{}`",
                self.wa_url
            ));
        }
        if self.max_connect_failures < 1 || self.resume_concurrency < 1 {
            return err("max_connect_failures and resume_concurrency must be at least 1".into());
        }
        if self.media_url_max_concurrent < 1 || self.max_concurrent_requests < 1 {
            return err(
                "media_url_max_concurrent (WAGATE_MEDIA_URL_MAX_CONCURRENT) and max_concurrent_requests \
(WAGATE_MAX_CONCURRENT_REQUESTS) must be at least 1"
                    .into(),
            );
        }
        if self.request_timeout_secs <= self.media_url_timeout_secs {
            return err(format!(
                "request_timeout_secs (WAGATE_REQUEST_TIMEOUT_SECS) is {} and must exceed media_url_timeout_secs \
(WAGATE_MEDIA_URL_TIMEOUT_SECS, {}), so a slow download is answered as one",
                self.request_timeout_secs, self.media_url_timeout_secs
            ));
        }
        Ok(())
    }

    /// The database URL with the SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("wagate.db").display())
        } else {
            self.database_url.clone()
        }
    }

    /// The media store's folder.
    pub fn media_path(&self) -> PathBuf {
        if self.media_dir.is_empty() {
            self.data_dir.join("media")
        } else {
            PathBuf::from(&self.media_dir)
        }
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.listen.parse().expect("validated at load")
    }

    pub fn jwt(&self) -> Option<JwtConfig> {
        (!self.jwks_url.is_empty()).then(|| JwtConfig {
            jwks_url: self.jwks_url.clone(),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            claim_sub: self.jwt_claim_sub.clone(),
            claim_org: self.jwt_claim_org.clone(),
            claim_org_role: self.jwt_claim_org_role.clone(),
            claim_role: self.jwt_claim_role.clone(),
            refresh_interval: Duration::from_secs(self.jwks_refresh_interval_secs),
            max_age: Duration::from_secs(self.jwks_max_age_secs.max(1)),
        })
    }
}

/// What the login-JWT verifier (`auth::JwtVerifier`) checks and which claims it reads, made
/// from [`Config`] by [`Config::jwt`]. Defined here so the configuration is a leaf module.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub jwks_url: String,
    pub issuer: String,
    pub audience: String,
    pub claim_sub: String,
    pub claim_org: String,
    pub claim_org_role: String,
    pub claim_role: String,
    /// Minimum time between two JWKS fetches caused by unknown `kid`s.
    pub refresh_interval: Duration,
    /// Keys older than this are re-fetched on the next use.
    pub max_age: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_sqlite() {
        let c = Config::default();
        if cfg!(feature = "simulator") {
            // A test build refuses WhatsApp itself, loudly.
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains("TEST BUILD"), "{e}");
        } else {
            c.validate().unwrap();
        }
        assert_eq!(c.database_url(), "sqlite://./data/wagate.db");
    }

    #[test]
    fn the_chat_socket_is_checked() {
        let with = |url: &str| {
            Config {
                wa_url: url.into(),
                ..Config::default()
            }
            .validate()
        };
        assert!(with("ws://127.0.0.1:9/ws/chat").is_ok());
        assert!(with("http://127.0.0.1:9/")
            .unwrap_err()
            .to_string()
            .contains("WAGATE_WA_URL"));
        assert!(with("not a url").is_err());
        assert_eq!(
            with("wss://example.com/ws/chat").is_ok(),
            !cfg!(feature = "simulator")
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let ok = Config {
            wa_url: "ws://127.0.0.1:9/ws/chat".into(),
            ..Config::default()
        };
        let c = Config {
            listen: "nope".into(),
            ..ok.clone()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WAGATE_LISTEN"));
        let c = Config {
            database_url: "mysql://x".into(),
            ..ok.clone()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WAGATE_DATABASE_URL"));
        let c = Config {
            jwks_url: "https://id.example/jwks".into(),
            ..ok
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WAGATE_JWT_ISSUER"));
        let c = Config {
            request_timeout_secs: 30,
            media_url_timeout_secs: 30,
            wa_url: "ws://127.0.0.1:9/ws/chat".into(),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WAGATE_REQUEST_TIMEOUT_SECS"));
        let c = Config {
            max_concurrent_requests: 0,
            wa_url: "ws://127.0.0.1:9/ws/chat".into(),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("WAGATE_MAX_CONCURRENT_REQUESTS"));
    }

    #[test]
    #[allow(clippy::result_large_err)]
    fn env_and_file_are_read() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "w.toml",
                "listen = \"127.0.0.1:9000\"\nbody_limit_bytes = 4096",
            )?;
            jail.set_env("WAGATE_BODY_LIMIT_BYTES", "8192");
            jail.set_env("WAGATE_TEST_SOMETHING", "ignored");
            jail.set_env("WAGATE_WA_URL", "ws://127.0.0.1:9/ws/chat");
            let c = Config::load(Some(Path::new("w.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(c.listen, "127.0.0.1:9000");
            assert_eq!(c.body_limit_bytes, 8192);
            jail.set_env("WAGATE_BODY_LIMIT_BYTES", "lots");
            let e = Config::load(None).unwrap_err().to_string();
            assert!(e.to_lowercase().contains("body_limit_bytes"), "{e}");
            Ok(())
        });
    }
}
