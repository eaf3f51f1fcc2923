//! The router's state: what the layers below hand to the handlers (configuration, store,
//! authenticator, engine, sender) and the HTTP layer's own caches ([`HttpState`]).
//!
//! `app.rs` assembles it (`AppState::new`); the auth extractor reaches only the authenticator,
//! through `FromRef`.

use std::sync::Arc;

use axum::extract::FromRef;

use super::contacts::NumberCache;
use super::metrics::Metrics;
use super::SessionOwners;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::engine::sender::Sender;
use crate::engine::Engine;
use crate::store::Store;

/// The caches and counters that belong to the HTTP layer.
pub struct HttpState {
    /// The `media.url` downloader (one pooled client, bounded downloads).
    pub media_fetcher: super::fetch::MediaFetcher,
    /// Which organization owns which session (a short-lived cache).
    pub owners: SessionOwners,
    /// Recent number-check answers (a short-lived cache).
    pub numbers: NumberCache,
    pub metrics: Metrics,
}

struct Inner {
    http: HttpState,
    sender: Sender,
    config: Config,
    store: Store,
    auth: Arc<Authenticator>,
    engine: Arc<dyn Engine>,
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// The state from its parts; `AppState::new` (in `app.rs`) builds them from the
    /// configuration, the store and the engine.
    pub(crate) fn from_parts(
        config: Config,
        store: Store,
        auth: Authenticator,
        engine: Arc<dyn Engine>,
        sender: Sender,
    ) -> Self {
        AppState(Arc::new(Inner {
            http: HttpState {
                media_fetcher: super::fetch::MediaFetcher::new(&config),
                owners: Default::default(),
                numbers: Default::default(),
                metrics: Default::default(),
            },
            sender,
            config,
            store,
            auth: Arc::new(auth),
            engine,
        }))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub fn store(&self) -> &Store {
        &self.0.store
    }

    pub fn auth(&self) -> &Authenticator {
        &self.0.auth
    }

    pub fn engine(&self) -> &dyn Engine {
        self.0.engine.as_ref()
    }

    /// Which organization owns which session (a short-lived cache).
    pub fn owners(&self) -> &SessionOwners {
        &self.0.http.owners
    }

    /// Recent number-check answers (a short-lived cache).
    pub fn numbers(&self) -> &NumberCache {
        &self.0.http.numbers
    }

    /// The sender of queued messages.
    pub fn sender(&self) -> &Sender {
        &self.0.sender
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.http.metrics
    }

    /// The `media.url` downloader (one pooled client, bounded downloads).
    pub fn media_fetcher(&self) -> &super::fetch::MediaFetcher {
        &self.0.http.media_fetcher
    }
}

/// The auth extractor's sub-state: it needs the authenticator and nothing else.
impl FromRef<AppState> for Arc<Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.0.auth.clone()
    }
}
