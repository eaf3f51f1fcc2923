//! Downloads a file a caller named by URL (`media.url` of a send), within a size cap and a time
//! limit, without following redirects, and by default only from public addresses (the gateway
//! must not become a way into its own network; the check is [`crate::net`]'s, made when the
//! connection is made).
//!
//! One [`MediaFetcher`] per application: one pooled client, and a bound on the downloads in
//! flight (each holds up to `media_url_max_bytes` in memory until its send is in the outbox).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::net::Refused;

/// A downloaded file.
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The server's `Content-Type`, parameters kept.
    pub content_type: Option<String>,
    /// The last path segment, when it looks like a file name.
    pub filename: Option<String>,
    /// One of the fetcher's slots, held while the file is in memory: keep it until the file
    /// is stored.
    pub slot: OwnedSemaphorePermit,
}

/// The `media.url` downloader: a shared client and a bound on concurrent downloads.
pub struct MediaFetcher {
    client: reqwest::Client,
    slots: Arc<Semaphore>,
    max_bytes: usize,
    allow_private: bool,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_body(Some("media.url"), message)
}

/// A failed download as the caller sees it.
fn failed(e: reqwest::Error) -> ApiError {
    if let Some(refused) = Refused::of(&e) {
        return match refused {
            Refused::NotPublic { .. } => bad(format!(
                "{refused}: loopback, private, link-local and other non-public addresses are refused"
            )),
            Refused::NoAddress { .. } => bad(refused.to_string()),
        };
    }
    if e.is_timeout() {
        bad("the download took too long")
    } else if e.is_connect() {
        bad(format!("the server cannot be reached: {e}"))
    } else {
        bad(format!("the download failed: {e}"))
    }
}

impl MediaFetcher {
    pub fn new(cfg: &Config) -> Self {
        let client = crate::net::client(
            cfg.media_url_allow_private,
            Duration::from_secs(cfg.media_url_timeout_secs),
        )
        // Only a TLS back end that cannot start fails here: nothing a request can cause.
        .expect("the media.url HTTP client builds");
        MediaFetcher {
            client,
            slots: Arc::new(Semaphore::new(cfg.media_url_max_concurrent.max(1))),
            max_bytes: cfg.media_url_max_bytes,
            allow_private: cfg.media_url_allow_private,
        }
    }

    /// Downloads `raw`, waiting for a free slot first (the request's own time limit bounds
    /// the wait).
    pub async fn fetch(&self, raw: &str) -> ApiResult<Fetched> {
        let url = reqwest::Url::parse(raw).map_err(|e| bad(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http and https URLs"));
        }
        if url.host_str().is_none() {
            return Err(bad("the URL has no host"));
        }
        crate::net::check_host(&url, self.allow_private).map_err(|r| {
            bad(format!(
                "{r}: loopback, private, link-local and other non-public addresses are refused"
            ))
        })?;
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ApiError::Internal(e.into()))?;
        let mut resp = self.client.get(url.clone()).send().await.map_err(failed)?;
        if !resp.status().is_success() {
            return Err(bad(format!(
                "the server answered {} (redirects are not followed)",
                resp.status()
            )));
        }
        let cap = self.max_bytes;
        let too_large = || {
            ApiError::PayloadTooLarge(format!(
                "the file at media.url is larger than {cap} bytes (media_url_max_bytes)"
            ))
        };
        let announced = resp.content_length();
        if announced.is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .filter(|t| !t.is_empty() && t != "application/octet-stream");
        // Sized once when the server says how much comes (no doubling growth).
        let mut bytes = Vec::with_capacity(announced.map_or(0, |n| n as usize));
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    if bytes.len() + chunk.len() > cap {
                        return Err(too_large());
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(failed(e)),
            }
        }
        if bytes.is_empty() {
            return Err(bad("the file is empty"));
        }
        let filename = url
            .path_segments()
            .and_then(|mut s| s.next_back())
            .filter(|n| n.contains('.') && n.len() <= 255)
            .map(|n| {
                percent_encoding::percent_decode_str(n)
                    .decode_utf8_lossy()
                    .into_owned()
            });
        Ok(Fetched {
            bytes,
            content_type,
            filename,
            slot,
        })
    }
}
