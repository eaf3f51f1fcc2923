//! Application state and the one function that builds the router, used by `main` and tests.

use std::sync::Arc;

use axum::Router;

use crate::auth::{ApiKeyService, Authenticator, JwtVerifier};
use crate::config::Config;
use crate::engine::Engine;
use crate::http::metrics::Metrics;
use crate::store::Store;

struct Inner {
    owners: crate::http::SessionOwners,
    numbers: crate::http::contacts::NumberCache,
    sender: crate::engine::sender::Sender,
    config: Config,
    store: Store,
    auth: Authenticator,
    engine: Arc<dyn Engine>,
    metrics: Metrics,
    media_fetcher: crate::http::fetch::MediaFetcher,
}

/// Everything a handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(config: Config, store: Store, engine: Arc<dyn Engine>) -> Self {
        let auth = Authenticator {
            jwt: config.jwt().map(JwtVerifier::new),
            keys: ApiKeyService::new(store.clone()),
        };
        AppState(Arc::new(Inner {
            media_fetcher: crate::http::fetch::MediaFetcher::new(&config),
            owners: Default::default(),
            numbers: Default::default(),
            sender: crate::engine::sender::Sender::start(store.clone(), engine.clone()),
            config,
            store,
            auth,
            engine,
            metrics: Metrics::new(),
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
    pub fn owners(&self) -> &crate::http::SessionOwners {
        &self.0.owners
    }

    /// Recent number-check answers (a short-lived cache).
    pub fn numbers(&self) -> &crate::http::contacts::NumberCache {
        &self.0.numbers
    }

    /// The sender of queued messages.
    pub fn sender(&self) -> &crate::engine::sender::Sender {
        &self.0.sender
    }

    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }

    /// The `media.url` downloader (one pooled client, bounded downloads).
    pub fn media_fetcher(&self) -> &crate::http::fetch::MediaFetcher {
        &self.0.media_fetcher
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    crate::http::router(state)
}
