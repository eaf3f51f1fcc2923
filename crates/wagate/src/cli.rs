//! The `wagate` command line.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::app::{app, AppState};
use crate::auth::ApiKeyService;
use crate::config::Config;
use crate::domain::{now_ms, CapSet};
use crate::engine::whatsapp::{WaConfig, WaEngine};
use crate::store::Store;

#[derive(Debug, Parser)]
#[command(
    name = "wagate",
    version,
    about = "Self-hosted multi-tenant WhatsApp gateway"
)]
pub struct Cli {
    /// TOML configuration file (settings there are overridden by WAGATE_* variables).
    #[arg(long, global = true, env = "WAGATE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; the key alone is printed on the last line.
    Create {
        #[arg(long)]
        org: String,
        /// Comma-separated: read,send,manage,events.
        #[arg(long)]
        caps: String,
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the key expires.
        #[arg(long)]
        expires_in: Option<u32>,
    },
    /// List an organization's keys.
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by id.
    Revoke { id: String },
}

pub fn init_tracing(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("WAGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if cfg.log_format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

async fn open_store(cfg: &Config) -> anyhow::Result<Store> {
    let store = Store::connect(&cfg.database_url(), cfg.database_max_connections)
        .await?
        .with_media_dir(cfg.media_path());
    store.migrate().await?;
    Ok(store)
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let cfg = Config::load(cli.config.as_deref())?;
    init_tracing(&cfg);
    match cli.command {
        Command::Serve => serve(cfg).await,
        Command::Migrate => {
            open_store(&cfg).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Keys { command } => keys(cfg, command).await,
    }
}

async fn serve(cfg: Config) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    if let Some(path) = crate::bootstrap::ensure_admin_key(&store, &cfg.data_dir).await? {
        tracing::info!(path = %path.display(), "first start: an admin API key for org `default` was written to this file");
    }
    let addr = cfg.listen_addr();
    let sweeper = tokio::spawn(sweep_events(store.clone(), cfg.events_retention_days));
    if cfg!(feature = "simulator") {
        tracing::warn!(url = cfg.wa_url, "TEST BUILD (feature `simulator`): WhatsApp's certificates are NOT checked; talking to a simulator only");
    }
    let engine = WaEngine::new(
        store.clone(),
        WaConfig {
            url: cfg.wa_url.clone(),
            max_connect_failures: cfg.max_connect_failures,
            resume_concurrency: cfg.resume_concurrency,
            media_dir: cfg.media_path(),
            media_store_max_bytes: cfg.media_store_max_bytes,
        },
    );
    let resumed = engine.resume_all().await?;
    if resumed > 0 {
        tracing::info!(
            sessions = resumed,
            "reconnecting the sessions that were running"
        );
    }
    let state = AppState::new(cfg, store.clone(), Arc::new(engine.clone()));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    tracing::info!(%addr, "wagate listening");
    let sender = state.sender().clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    sweeper.abort();
    // The sender first (a send in flight is abandoned; its job stays queued), then the engine.
    sender.stop().await;
    engine.shutdown().await;
    store.close().await;
    Ok(())
}

/// Deletes outbox events older than the retention, at start and then every ten minutes.
async fn sweep_events(store: crate::store::Store, days: u64) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(600));
    loop {
        tick.tick().await;
        let before = crate::domain::now_ms() - (days as i64) * 86_400_000;
        match store.sweep_events(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "outbox retention: old events deleted"),
            Err(e) => tracing::warn!(error = %e, "outbox retention sweep failed"),
        }
        // Finished sends (and their idempotency keys) are kept 7 days, well over the 24 h promised.
        if let Err(e) = store
            .sweep_sends(crate::domain::now_ms() - 7 * 86_400_000)
            .await
        {
            tracing::warn!(error = %e, "sent-message retention sweep failed");
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn keys(cfg: Config, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = open_store(&cfg).await?;
    match cmd {
        KeysCommand::Create {
            org,
            caps,
            name,
            expires_in,
        } => {
            let caps = CapSet::parse_list(&caps).map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                !caps.is_empty(),
                "--caps needs at least one of read,send,manage,events"
            );
            anyhow::ensure!(!org.trim().is_empty(), "--org must not be empty");
            let expires = expires_in.map(|d| now_ms() + d as i64 * 86_400_000);
            let (rec, secret) = ApiKeyService::new(store.clone())
                .create(&org, &name, caps, expires, Some("cli".into()))
                .await?;
            println!(
                "id: {}  org: {}  caps: {}",
                rec.id, rec.org_id, rec.capabilities
            );
            println!("{secret}");
        }
        KeysCommand::List { org } => {
            for k in store.list_api_keys(&org).await? {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.expires_at.is_some_and(|e| e <= now_ms()) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    k.id, k.key_prefix, k.capabilities, state, k.name
                );
            }
        }
        KeysCommand::Revoke { id } => match store.revoke_api_key(None, &id).await? {
            Some(_) => println!("revoked {id}"),
            None => anyhow::bail!("no API key with id {id}"),
        },
    }
    store.close().await;
    Ok(())
}
