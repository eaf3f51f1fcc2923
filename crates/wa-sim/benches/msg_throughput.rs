//! Throughput benchmark (not a test): starts the `wa-sim` binary as its own
//! process, pairs 2×N real whatsapp-rust clients (N pairs), then measures
//! how many end-to-end encrypted messages per second the simulator routes
//!  1. between the pairs (each client sends M texts to its partner while
//!     the partner does the same), and
//!  2. from P simulated people (scenario scripts, no client involved) to
//!     the clients.
//!
//! A message counts once the receiving client decrypted it. Also reports
//! the simulator's resident memory.
//!
//! `cargo bench -p wa-sim --bench msg_throughput -- --pairs 100 --messages 20 --people 20 --per-person 50 --fanout 5`

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, Semaphore};
use whatsapp_rust::bot::{Bot, BotHandle};
use whatsapp_rust::types::events::Event;
use whatsapp_rust::wacore::store::InMemoryBackend;
use whatsapp_rust::{Client, Jid};
use whatsapp_rust_tokio_transport::TokioWebSocketTransportFactory;
use whatsapp_rust_ureq_http_client::UreqHttpClient;

struct Args {
    pairs: usize,
    messages: usize,
    people: usize,
    per_person: usize,
    /// How many distinct clients each person writes to (the first message
    /// to each opens a Signal session with X3DH on both ends).
    fanout: usize,
    concurrency: usize,
}

fn args() -> Args {
    let mut a = Args {
        pairs: 100,
        messages: 20,
        people: 20,
        per_person: 50,
        fanout: 5,
        concurrency: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = |d: usize| it.next().and_then(|v| v.parse().ok()).unwrap_or(d);
        match k.as_str() {
            "--pairs" => a.pairs = num(a.pairs),
            "--messages" => a.messages = num(a.messages),
            "--people" => a.people = num(a.people),
            "--per-person" => a.per_person = num(a.per_person),
            "--fanout" => a.fanout = num(a.fanout),
            "--concurrency" => a.concurrency = num(a.concurrency),
            _ => {}
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

async fn post(
    base: &str,
    path: &str,
    body: serde_json::Value,
) -> Result<serde_json::Value, String> {
    let url = format!("{base}{path}");
    tokio::task::spawn_blocking(move || {
        ureq::post(&url)
            .send_json(&body)
            .map_err(|e| e.to_string())
            .and_then(|mut r| r.body_mut().read_json().map_err(|e| e.to_string()))
    })
    .await
    .unwrap()
}

struct Paired {
    handle: BotHandle,
    client: Arc<Client>,
    phone: String,
}

async fn pair(ws: &str, base: &str, phone: String, received: Arc<AtomicUsize>) -> Option<Paired> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let bot = Bot::builder()
        .with_backend(InMemoryBackend::new())
        .with_transport_factory(TokioWebSocketTransportFactory::new().with_url(ws))
        .with_http_client(UreqHttpClient::new())
        .with_runtime(whatsapp_rust::TokioRuntime)
        .with_version((2, 3000, 1_000_000_000))
        .with_wanted_pre_key_count(5)
        .skip_history_sync()
        .on_event(move |e, _| {
            let tx = tx.clone();
            let received = received.clone();
            async move {
                match &*e {
                    Event::Messages(b) => {
                        let n = b
                            .messages
                            .iter()
                            .filter(|m| m.message.conversation.is_some())
                            .count();
                        received.fetch_add(n, Ordering::Relaxed);
                    }
                    Event::PairingQrCode(_) | Event::Connected(_) => {
                        let _ = tx.send(e);
                    }
                    _ => {}
                }
            }
        })
        .build()
        .await
        .ok()?;
    let client = bot.client();
    let handle = bot.spawn();
    let qr = loop {
        if let Event::PairingQrCode(q) = &*rx.recv().await? {
            break q.code.clone();
        }
    };
    post(
        base,
        "/control/scan",
        serde_json::json!({"qr": qr, "phone": phone, "name": phone}),
    )
    .await
    .ok()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while let Ok(Some(e)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if matches!(&*e, Event::Connected(_)) {
            return Some(Paired {
                handle,
                client,
                phone,
            });
        }
    }
    None
}

async fn wait_count(c: &AtomicUsize, target: usize, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while c.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

#[tokio::main]
async fn main() {
    let a = args();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = format!("ws://127.0.0.1:{port}/ws/chat");
    let base = format!("http://127.0.0.1:{port}");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wa-sim"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "wa_sim=warn")
        .spawn()
        .expect("spawn wa-sim");
    let pid = child.id();
    for _ in 0..100 {
        if post(
            &base,
            "/control/directory",
            serde_json::json!({"phones": []}),
        )
        .await
        .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rss0 = rss_kib(pid);

    let received = Arc::new(AtomicUsize::new(0));
    let sem = Arc::new(Semaphore::new(a.concurrency));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..2 * a.pairs {
        let (ws, base, sem, received) = (ws.clone(), base.clone(), sem.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.unwrap();
            pair(&ws, &base, format!("4471{i:08}"), received).await
        }));
    }
    let mut clients = Vec::new();
    for t in tasks {
        clients.push(t.await.unwrap().expect("client paired"));
    }
    println!(
        "paired {} clients ({} pairs) in {:.1} s; wa-sim RSS idle {rss0} KiB -> {} KiB",
        clients.len(),
        a.pairs,
        started.elapsed().as_secs_f64(),
        rss_kib(pid)
    );
    let clients = Arc::new(clients);

    // Warm-up: one message each way per pair (sessions via pkmsg).
    let send_round = |tag: &'static str, count: usize| {
        let clients = clients.clone();
        async move {
            let mut tasks = Vec::new();
            for i in 0..clients.len() {
                let clients = clients.clone();
                tasks.push(tokio::spawn(async move {
                    let me = &clients[i];
                    let partner = &clients[i ^ 1];
                    for k in 0..count {
                        me.client
                            .send_text(Jid::pn(&partner.phone), format!("{tag} {k}"))
                            .await
                            .expect("send");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    let base_count = received.load(Ordering::Relaxed);
    send_round("warm", 1).await;
    assert!(
        wait_count(
            &received,
            base_count + clients.len(),
            Duration::from_secs(120)
        )
        .await,
        "warm-up messages did not all arrive"
    );

    let total = clients.len() * a.messages;
    let before = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    send_round("bench", a.messages).await;
    let sent_secs = t0.elapsed().as_secs_f64();
    let ok = wait_count(&received, before + total, Duration::from_secs(600)).await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "client↔client: {total} messages ({} pairs × 2 × {}) sent in {sent_secs:.2} s, all decrypted by the receivers in {secs:.2} s: {:.0} msg/s{}; each message reaches 3 devices (partner's companion, partner's phone, sender's phone), 2 of them decrypted by the simulator",
        a.pairs,
        a.messages,
        total as f64 / secs,
        if ok { "" } else { " (INCOMPLETE)" }
    );
    let rss1 = rss_kib(pid);
    println!("wa-sim RSS after client traffic: {rss1} KiB");

    // Simulated people → clients, driven by scenario scripts (one task per person).
    let mut scenarios = Vec::new();
    for p in 0..a.people {
        let phone = format!("4472{p:08}");
        let script: Vec<_> = (0..a.per_person)
            .map(|k| {
                let to = &clients[(p + k % a.fanout.max(1)) % clients.len()].phone;
                serde_json::json!({"at": 0, "from": phone, "to": to, "text": format!("from person {p} #{k}")})
            })
            .collect();
        scenarios.push(serde_json::json!({"people": [{"phone": phone, "name": format!("P{p}")}], "script": script}));
    }
    let total = a.people * a.per_person;
    let before = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    for s in scenarios {
        post(&base, "/control/scenario", s).await.expect("scenario");
    }
    let ok = wait_count(&received, before + total, Duration::from_secs(600)).await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "people→clients: {total} messages from {} simulated people (each to {} clients), all decrypted by the clients in {secs:.2} s: {:.0} msg/s{}",
        a.people,
        a.fanout,
        total as f64 / secs,
        if ok { "" } else { " (INCOMPLETE)" }
    );
    println!("wa-sim RSS at the end: {} KiB", rss_kib(pid));

    let clients = Arc::try_unwrap(clients).ok().expect("no other owners");
    for c in clients {
        c.handle.abort();
    }
    let _ = child.kill();
    let _ = child.wait();
}
