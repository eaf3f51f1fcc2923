//! Scale benchmark (not a test): starts the `wa-sim` binary as its own
//! process, connects N real whatsapp-rust clients to it (pairing each by QR
//! over the control API), and reports the time to get them all `Connected`
//! and the simulator's resident memory per connection. Then restarts every
//! client with its store and measures plain logins.
//!
//! `cargo bench -p wa-sim --bench connect_many -- --clients 1000`

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::store::traits::Backend;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

struct Args {
    clients: usize,
    concurrency: usize,
    relogin: bool,
}

fn args() -> Args {
    let mut a = Args {
        clients: 1000,
        concurrency: 200,
        relogin: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--clients" => a.clients = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.clients),
            "--concurrency" => {
                a.concurrency = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(a.concurrency)
            }
            "--no-relogin" => a.relogin = false,
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn control_post(base: &str, path: &str, body: serde_json::Value) -> Result<(), String> {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .send_json(&body)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap()
}

async fn wait_ready(base: &str) {
    let url = format!("{base}/control/health");
    for _ in 0..100 {
        let u = url.clone();
        if tokio::task::spawn_blocking(move || ureq::get(&u).call().is_ok())
            .await
            .unwrap()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("wa-sim did not come up");
}

/// Starts one client; returns its handle and a channel of interesting events.
async fn start_client(
    ws: &str,
    backend: Arc<dyn Backend>,
) -> (BotHandle, mpsc::UnboundedReceiver<Arc<Event>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let bot = Bot::builder()
        .with_backend_arc(backend)
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws))
        .with_http_client(UreqHttpClient::new())
        .with_runtime(whatsapp_rust::TokioRuntime)
        .with_version((2, 3000, 1_000_000_000))
        .with_wanted_pre_key_count(5)
        .skip_history_sync()
        .on_event(move |e, _| {
            let tx = tx.clone();
            async move {
                if matches!(&*e, Event::PairingQrCode(_) | Event::Connected(_)) {
                    let _ = tx.send(e);
                }
            }
        })
        .build()
        .await
        .expect("build bot");
    (bot.spawn(), rx)
}

async fn wait_connected(rx: &mut mpsc::UnboundedReceiver<Arc<Event>>) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if matches!(&*e, Event::Connected(_)) {
            return true;
        }
    }
    false
}

#[tokio::main]
async fn main() {
    let a = args();
    let port = free_port();
    let ws = format!("ws://127.0.0.1:{port}/ws/chat");
    let base = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wa-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "wa_sim=warn")
        .spawn()
        .expect("spawn wa-sim");
    let pid = child.id();
    wait_ready(&base).await;
    let rss0 = rss_kib(pid);
    println!(
        "wa-sim pid {pid}, idle RSS {rss0} KiB; pairing {} clients",
        a.clients
    );

    let sem = Arc::new(Semaphore::new(a.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..a.clients {
        let ws = ws.clone();
        let base = base.clone();
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.unwrap();
            let backend: Arc<dyn Backend> = Arc::new(InMemoryBackend::new());
            let (handle, mut rx) = start_client(&ws, backend.clone()).await;
            let qr = loop {
                match rx.recv().await {
                    Some(e) => {
                        if let Event::PairingQrCode(q) = &*e {
                            break q.code.clone();
                        }
                    }
                    None => return None,
                }
            };
            let phone = format!("4470{:08}", i);
            control_post(
                &base,
                "/control/scan",
                serde_json::json!({"qr": qr, "phone": phone, "name": format!("bench{i}")}),
            )
            .await
            .ok()?;
            wait_connected(&mut rx).await.then_some((handle, backend))
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        if let Some(c) = t.await.unwrap() {
            clients.push(c);
        }
    }
    let pair_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib(pid);
    let n = clients.len();
    println!(
        "paired+connected {n}/{} clients in {pair_secs:.1} s (QR scan, pair-success, 515, login, key share, critical sync)",
        a.clients
    );
    println!(
        "wa-sim RSS {rss1} KiB with {n} connections: {:.1} KiB per connection",
        (rss1.saturating_sub(rss0)) as f64 / n.max(1) as f64
    );

    if a.relogin {
        // Restart every client with its store: plain logins, no pairing.
        let mut backends = Vec::new();
        let shutdowns: Vec<_> = clients
            .into_iter()
            .map(|(h, b)| {
                backends.push(b);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(30), h.shutdown()).await;
                })
            })
            .collect();
        for s in shutdowns {
            let _ = s.await;
        }
        let started = Instant::now();
        let mut tasks = Vec::new();
        for b in backends {
            let ws = ws.clone();
            let sem = sem.clone();
            tasks.push(tokio::spawn(async move {
                let _permit = sem.acquire_owned().await.unwrap();
                let (handle, mut rx) = start_client(&ws, b).await;
                wait_connected(&mut rx).await.then_some(handle)
            }));
        }
        let mut handles = Vec::new();
        for t in tasks {
            if let Some(h) = t.await.unwrap() {
                handles.push(h);
            }
        }
        let secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss2 = rss_kib(pid);
        println!(
            "re-login of {} clients (same stores): all Connected in {secs:.1} s; wa-sim RSS {rss2} KiB ({:.1} KiB per connection over idle)",
            handles.len(),
            (rss2.saturating_sub(rss0)) as f64 / handles.len().max(1) as f64
        );
        for h in handles {
            h.abort();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
}
