//! Assembly: the application state from the configuration, the store and the engine, and the
//! one function that builds the router, used by `main` and tests. The state's type and the
//! HTTP layer's caches live in [`crate::http::state`].

use std::sync::Arc;

use axum::Router;

use crate::auth::{ApiKeyService, Authenticator, JwtVerifier};
use crate::config::Config;
use crate::engine::sender::Sender;
use crate::engine::Engine;
use crate::store::Store;

pub use crate::http::AppState;

impl AppState {
    pub fn new(config: Config, store: Store, engine: Arc<dyn Engine>) -> Self {
        let auth = Authenticator {
            jwt: config.jwt().map(JwtVerifier::new),
            keys: ApiKeyService::new(store.clone()),
        };
        let sender = Sender::start(store.clone(), engine.clone());
        AppState::from_parts(config, store, auth, engine, sender)
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    crate::http::router(state)
}
