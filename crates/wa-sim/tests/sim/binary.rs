//! The `wa-sim` binary itself: refuses non-loopback addresses, and a real
//! client pairs against a spawned process.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use serde_json::json;

struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn refuses_non_loopback_listen_address() {
    let out = Command::new(env!("CARGO_BIN_EXE_wa-sim"))
        .args(["--listen", "0.0.0.0:0"])
        .output()
        .expect("run wa-sim");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spawned_binary_pairs_a_client() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_wa-sim"))
            .args(["--listen", &addr])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wa-sim"),
    );
    let base = format!("http://{addr}");
    let health_url = format!("{base}/control/health");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let u = health_url.clone();
        if tokio::task::spawn_blocking(move || ureq::get(&u).call().is_ok())
            .await
            .unwrap()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wa-sim did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let c = client_at(&format!("ws://{addr}/ws/chat"), new_backend()).await;
    let qr = qr_code(&c.events.wait("QR", WAIT, is_qr).await);
    let scan_url = format!("{base}/control/scan");
    let status = tokio::task::spawn_blocking(move || {
        ureq::post(&scan_url)
            .send_json(json!({"qr": qr, "phone": "15554000001", "name": "Proc"}))
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    })
    .await
    .unwrap();
    assert_eq!(status, 200);
    c.events.wait("Connected", WAIT, is_connected).await;
    c.shutdown().await;
}

/// `wa-sim --scenario FILE` loads the file at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_loads_a_scenario_file() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("wa-sim-scenario-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("demo.json");
    std::fs::write(
        &file,
        json!({
            "accounts": [{"phone": "15554100001", "name": "Demo",
                "history": {"conversations": [{"chat": "15554100099", "messages": [
                    {"from": "15554100099", "text": "hi", "timestamp": 1700000000}]}]}}],
            "people": [{"phone": "15554100099", "name": "Pat"}],
            "contacts": ["15554100050"],
            "groups": [{"creator": "15554100099", "subject": "G", "participants": ["15554100001"]}]
        })
        .to_string(),
    )
    .unwrap();
    let _child = Spawned(
        Command::new(env!("CARGO_BIN_EXE_wa-sim"))
            .args(["--listen", &addr, "--scenario", file.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wa-sim"),
    );
    let stats_url = format!("http://{addr}/control/stats");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let u = stats_url.clone();
        let got = tokio::task::spawn_blocking(move || {
            ureq::get(&u)
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<serde_json::Value>().ok())
        })
        .await
        .unwrap();
        if let Some(v) = got {
            break v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "wa-sim did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats["groups"], 1, "{stats}");
    assert_eq!(stats["accounts"], 2, "{stats}");
    let dir_url = format!("http://{addr}/control/directory");
    let directory = tokio::task::spawn_blocking(move || {
        ureq::get(&dir_url)
            .call()
            .unwrap()
            .body_mut()
            .read_json::<serde_json::Value>()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(directory.to_string().contains("15554100050"), "{directory}");
    let _ = std::fs::remove_dir_all(&dir);
}
