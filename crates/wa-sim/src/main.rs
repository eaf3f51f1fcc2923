//! `wa-sim --listen 127.0.0.1:PORT`: run the WhatsApp simulator.

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "WhatsApp server simulator for whatsapp-rust clients (loopback only)"
)]
struct Args {
    /// Address to listen on; must be a loopback address.
    #[arg(long, default_value = "127.0.0.1:8088")]
    listen: std::net::SocketAddr,
    /// QR refs handed to each new device (WhatsApp: 6).
    #[arg(long, default_value_t = 6)]
    qr_refs: usize,
    /// Received messages and receipts each phone keeps for the control API.
    #[arg(long, default_value_t = 10_000)]
    keep_received: usize,
    /// A scenario file (JSON, see the README) to load at start.
    #[arg(long)]
    scenario: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "wa_sim=info".into()))
        .init();
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "wa-sim only listens on loopback addresses, got {}",
            args.listen
        );
    }
    let config = wa_sim::SimConfig {
        qr_refs: args.qr_refs,
        keep_received: args.keep_received,
        ..Default::default()
    };
    let running = wa_sim::start(&args.listen.to_string(), config).await?;
    if let Some(path) = &args.scenario {
        let summary = wa_sim::scenario::load_file(&running.sim, path)?;
        tracing::info!("scenario {} loaded: {summary}", path.display());
    }
    tracing::info!(
        "wa-sim listening: websocket {} control {}/control",
        running.ws_url(),
        running.http_base()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
