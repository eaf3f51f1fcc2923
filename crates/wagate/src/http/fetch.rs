//! Downloads a file a caller named by URL (`media.url` of a send), within a size cap and a time
//! limit, without following redirects, and by default never from loopback, private or
//! link-local addresses (the gateway must not become a way into its own network).

use std::net::IpAddr;
use std::time::Duration;

use crate::config::Config;
use crate::error::{ApiError, ApiResult};

/// A downloaded file.
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// The server's `Content-Type`, parameters kept.
    pub content_type: Option<String>,
    /// The last path segment, when it looks like a file name.
    pub filename: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_body(Some("media.url"), message)
}

/// Addresses a public URL may not resolve to.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xC0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (v6.segments()[0] & 0xFE00) == 0xFC00
                || (v6.segments()[0] & 0xFFC0) == 0xFE80
        }
    }
}

pub async fn fetch(cfg: &Config, raw: &str) -> ApiResult<Fetched> {
    let url = reqwest::Url::parse(raw).map_err(|e| bad(format!("not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http and https URLs"));
    }
    let host = url
        .host_str()
        .ok_or_else(|| bad("the URL has no host"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((bare.as_str(), port))
        .await
        .map_err(|e| bad(format!("the host {host} cannot be resolved: {e}")))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| bad(format!("the host {host} has no address")))?;
    if !cfg.media_url_allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
        return Err(bad(
            "the URL points at a loopback, private or link-local address",
        ));
    }
    // The checked address is the one connected to (no second lookup to be fooled by).
    let client = reqwest::Client::builder()
        .resolve(&bare, addr)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(cfg.media_url_timeout_secs))
        .build()
        .map_err(|e| ApiError::Internal(e.into()))?;
    let mut resp = client.get(url.clone()).send().await.map_err(|e| {
        if e.is_timeout() {
            bad("the download took too long")
        } else {
            bad(format!("the download failed: {e}"))
        }
    })?;
    if !resp.status().is_success() {
        return Err(bad(format!(
            "the server answered {} (redirects are not followed)",
            resp.status()
        )));
    }
    let cap = cfg.media_url_max_bytes;
    let too_large = || {
        ApiError::PayloadTooLarge(format!(
            "the file at media.url is larger than {cap} bytes (media_url_max_bytes)"
        ))
    };
    if resp.content_length().is_some_and(|n| n as usize > cap) {
        return Err(too_large());
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|t| !t.is_empty() && t != "application/octet-stream");
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > cap {
                    return Err(too_large());
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) if e.is_timeout() => return Err(bad("the download took too long")),
            Err(e) => return Err(bad(format!("the download failed: {e}"))),
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
    })
}
