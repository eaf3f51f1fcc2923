//! A gateway process killed with SIGKILL in the middle of a burst of asynchronous sends: after a
//! restart every message reaches the recipient exactly once.

use std::collections::HashMap;

use serde_json::json;

use crate::support::{eventually, World, CHILD_ENV};

/// The gateway as a process of its own: the parent test re-runs this binary with
/// [`CHILD_ENV`] set and `--exact crash::gateway_process --ignored`. Configured by `WAGATE_*`
/// variables like the real binary (`wagate serve`), in the test (simulator) build.
#[test]
#[ignore = "the gateway process of kill_nine_in_the_middle_of_async_sends_sends_each_once"]
fn gateway_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            wagate::cli::run(wagate::cli::Cli {
                config: None,
                command: wagate::cli::Command::Serve,
            })
            .await
            .expect("the gateway runs");
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_in_the_middle_of_async_sends_sends_each_once() {
    const N: usize = 120;
    let mut w = World::new_process().await;
    let sid = w.paired_session("6281100000061", "Crash").await;
    let (pjid, _) = w.person("6281200000062", "Fajar").await;
    let (s, v) = w
        .call(
            reqwest::Method::PATCH,
            &format!("/api/v1/sessions/{sid}"),
            Some(json!({"ratePerMin": 10000, "ratePerHour": 1000000})),
        )
        .await;
    assert_eq!(s, 200, "{v}");

    // The caller: each message once, with its own Idempotency-Key; a request that got no
    // answer (the gateway died under it) is repeated with the same key until it is accepted.
    let base = w.gw.as_ref().unwrap().base.clone();
    let key = w.gw.as_ref().unwrap().key.clone();
    let http = w.http.clone();
    let (base_tx, base_rx) = tokio::sync::watch::channel(base);
    let caller_sid = sid.clone();
    let caller = tokio::spawn(async move {
        let sid = caller_sid;
        let mut accepted = 0;
        for i in 0..N {
            loop {
                let base = base_rx.borrow().clone();
                let r = http
                    .post(format!("{base}/api/v1/sessions/{sid}/messages?async=true"))
                    .bearer_auth(&key)
                    .header("Idempotency-Key", format!("crash-{i}"))
                    .json(&json!({"to": pjid, "type": "text", "text": format!("crash {i}")}))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => break,
                    Ok(r) => panic!("unexpected answer {}", r.status()),
                    // Down: wait for the restart (a new address) and repeat.
                    Err(_) => {
                        let mut rx = base_rx.clone();
                        let _ = rx.changed().await;
                    }
                }
            }
            accepted += 1;
        }
        accepted
    });

    // Kill -9 once the person has some of the burst, not all.
    let received = |w: &World| {
        let w = w.sim.http_base();
        async move {
            let v: serde_json::Value =
                reqwest::get(format!("{w}/control/people/6281200000062/received"))
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
            v.as_array()
                .unwrap()
                .iter()
                .filter_map(|m| {
                    let t = m["text"].as_str()?;
                    t.starts_with("crash ").then(|| {
                        (
                            t.to_owned(),
                            m["id"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                })
                .collect::<Vec<(String, String)>>()
        }
    };
    eventually("part of the burst arrives", || async {
        let n = received(&w).await.len();
        (n >= 10).then_some(())
    })
    .await;
    w.kill_gateway();
    let at_kill = received(&w).await.len();
    w.start_gateway().await;
    base_tx.send(w.gw.as_ref().unwrap().base.clone()).unwrap();
    assert_eq!(caller.await.unwrap(), N);

    // Everything arrives, each text once under one WhatsApp id.
    let got = eventually("the whole burst arrives", || async {
        let got = received(&w).await;
        (got.len() >= N).then_some(got)
    })
    .await;
    let mut by_text: HashMap<String, Vec<String>> = HashMap::new();
    for (text, id) in got {
        by_text.entry(text).or_default().push(id);
    }
    assert_eq!(by_text.len(), N, "every message arrived");
    for (text, ids) in &by_text {
        assert_eq!(ids.len(), 1, "{text} arrived {} times: {ids:?}", ids.len());
    }
    assert!(
        at_kill < N,
        "the kill came in the middle of the burst ({at_kill} of {N} had arrived)"
    );
    // The stored copy agrees: N messages, all sent (or further).
    let chat = w.get(&format!("/api/v1/sessions/{sid}/chats")).await["data"][0]["jid"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("every stored message is sent", || async {
        let v = w
            .get(&format!(
                "/api/v1/sessions/{sid}/chats/{chat}/messages?limit=200"
            ))
            .await;
        let data = v["data"].as_array().unwrap();
        (data.len() == N && data.iter().all(|m| m["status"] != "pending")).then_some(())
    })
    .await;
}
