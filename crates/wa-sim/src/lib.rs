//! `wa-sim`: a WhatsApp server simulator on loopback.
//!
//! Unmodified `whatsapp-rust` clients connect to [`serve`]'s WebSocket
//! (`ws://HOST:PORT/ws/chat`); the JSON control API under `/control/...` on
//! the same port plays the phone (scan a QR, confirm a pairing code), edits
//! the number directory, injects faults and lists what was recorded.

pub mod appstate;
pub mod conn;
pub mod control;
pub mod groups;
pub mod history;
pub mod iq;
pub mod media;
pub mod nodes;
pub mod noise;
pub mod pairing;
pub mod people;
pub mod phone;
pub mod route;
pub mod scenario;
pub mod signal;
pub mod state;

use std::net::SocketAddr;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{any, get, post, put};
use axum::Router;
use tokio::net::TcpListener;

pub use state::{Sim, SimConfig};

/// The whole HTTP surface: the chat WebSocket and the control API.
pub fn app(sim: Sim) -> Router {
    Router::new()
        .route("/ws/chat", any(ws_chat))
        .route("/control/health", get(control::health))
        .route("/control/scan", post(control::scan))
        .route("/control/pair-code", post(control::confirm_pair_code))
        .route("/control/directory", get(control::list_directory))
        .route("/control/directory", post(control::add_directory))
        .route("/control/accounts", get(control::list_accounts))
        .route("/control/connections", get(control::list_connections))
        .route("/control/qr", get(control::list_qr))
        .route("/control/fault", post(control::fault))
        .route("/control/chatstates", get(control::list_chatstates))
        .route("/control/presences", get(control::list_presences))
        .route("/control/unhandled", get(control::list_unhandled))
        .route(
            "/control/accounts/{phone}/history",
            put(control::put_history),
        )
        .route(
            "/control/accounts/{phone}/chat-settings",
            post(control::post_chat_settings).get(control::get_chat_settings),
        )
        .route("/control/people", post(people::create))
        .route("/control/groups", post(people::create_group))
        .route("/control/scenario", post(control::post_scenario))
        .route("/control/stats", get(control::stats))
        .route("/control/people/{phone}/send", post(people::send))
        .route("/control/people/{phone}/burst", post(people::burst))
        .route("/control/people/{phone}/received", get(people::received))
        .route("/control/people/{phone}/receipts", get(people::receipts))
        .route("/control/people/{phone}/read", post(people::read))
        .route("/control/people/{phone}/chatstate", post(people::chatstate))
        // WhatsApp's media hosts take documents up to 100 MiB (axum's default is 2 MiB).
        .route(
            "/mms/{kind}/{token}",
            post(media::upload).layer(axum::extract::DefaultBodyLimit::max(100 << 20)),
        )
        .route("/v/{*rest}", get(media::download))
        .with_state(sim)
}

/// `GET /ws/chat`: the WhatsApp chat socket.
async fn ws_chat(State(sim): State<Sim>, ws: WebSocketUpgrade) -> Response {
    // Small socket buffers: stanzas are small and every send is flushed, and
    // the defaults (128 KiB each way) would dominate memory per connection.
    ws.max_message_size(1 << 25)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .on_upgrade(move |socket| conn::run(sim, socket))
}

/// A running simulator bound to a loopback port.
pub struct Running {
    pub sim: Sim,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// `ws://ADDR/ws/chat`, the URL to give the client's transport factory.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// `http://ADDR`, the base of the control API.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `sim` on an already bound listener until the task is dropped.
pub async fn serve(listener: TcpListener, sim: Sim) -> std::io::Result<()> {
    axum::serve(listener, app(sim)).await
}

/// Binds `addr` (use port 0 in tests) and serves in a background task.
pub async fn start(addr: &str, config: SimConfig) -> std::io::Result<Running> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let sim = Sim::new(config);
    sim.world().media_host = addr.to_string();
    let task = tokio::spawn({
        let sim = sim.clone();
        async move {
            if let Err(e) = serve(listener, sim).await {
                tracing::error!("wa-sim server stopped: {e}");
            }
        }
    });
    Ok(Running { sim, addr, task })
}
