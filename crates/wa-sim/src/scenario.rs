//! Scenario files: one JSON format for accounts, people, contacts, groups,
//! history and a script of inbound messages over time. `wa-sim --scenario F`
//! loads one at start; `POST /control/scenario` loads one at run time.
//! The format is documented in the README.

use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::history::History;
use crate::people::SendBody;
use crate::state::Sim;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Accounts whose devices will link (by QR or code) during the run.
    #[serde(default)]
    pub accounts: Vec<ScenarioAccount>,
    /// People the simulator drives.
    #[serde(default)]
    pub people: Vec<ScenarioPerson>,
    /// Numbers that are on WhatsApp (directory entries without an account).
    #[serde(default)]
    pub contacts: Vec<String>,
    #[serde(default)]
    pub groups: Vec<ScenarioGroup>,
    /// Inbound traffic: what people send, and when.
    #[serde(default)]
    pub script: Vec<ScriptStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioAccount {
    pub phone: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub history: Option<History>,
    /// Chat settings as the phone has them (become app-state mutations).
    #[serde(default, rename = "chatSettings")]
    pub chat_settings: Vec<crate::appstate::ChatSettingsChange>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioPerson {
    pub phone: String,
    #[serde(default)]
    pub name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioGroup {
    /// A fixed group id (`120363...`), so the script and tests can name it;
    /// random when absent.
    #[serde(default)]
    pub id: Option<String>,
    pub creator: String,
    pub subject: String,
    #[serde(default)]
    pub participants: Vec<String>,
    /// `pn` (default) or `lid`.
    #[serde(default)]
    pub addressing: Option<String>,
}

/// One step; unknown fields are caught when the send body is read.
#[derive(Deserialize)]
pub struct ScriptStep {
    /// Milliseconds after the scenario was loaded.
    #[serde(default)]
    pub at: u64,
    /// The sender: a person (or an account's phone).
    pub from: String,
    /// What to send: the body of `POST /control/people/{from}/send`.
    #[serde(flatten)]
    pub send: ScriptSend,
}

#[derive(Deserialize)]
pub struct ScriptSend {
    pub to: String,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, Value>,
}

fn digits(p: &str) -> String {
    crate::nodes::split_jid(&crate::people::chat_jid(p))
        .0
        .to_string()
}

/// Loads `s` into `sim`; the script runs in the background. Returns a
/// summary (including the groups' JIDs).
pub fn load(sim: &Sim, s: Scenario) -> Result<Value> {
    let mut w = sim.world();
    for c in &s.contacts {
        w.lid_for(&digits(c));
    }
    for p in &s.people {
        drop(w);
        crate::people::create_person(sim, &digits(&p.phone), p.name.as_deref());
        w = sim.world();
    }
    for a in &s.accounts {
        let phone = digits(&a.phone);
        let acc = w.account_mut(&phone);
        if let Some(n) = &a.name {
            acc.push_name = n.clone();
        }
        acc.history = a.history.clone();
        for c in &a.chat_settings {
            crate::appstate::apply_change(&mut w, &phone, c)?;
        }
    }
    let mut groups = Vec::new();
    for g in &s.groups {
        let creator = digits(&g.creator);
        if !w.accounts.contains_key(&creator) {
            bail!(
                "group {:?}: creator {creator} is neither a person nor an account",
                g.subject
            );
        }
        let lid = match g.addressing.as_deref() {
            None | Some("pn") => false,
            Some("lid") => true,
            Some(o) => bail!("group {:?}: addressing {o:?}", g.subject),
        };
        let members: Vec<String> = g.participants.iter().map(|p| digits(p)).collect();
        for m in &members {
            w.lid_for(m);
        }
        let fixed = g.id.as_deref().map(digits);
        if fixed.as_ref().is_some_and(|id| w.groups.contains_key(id)) {
            bail!("group id {:?} is taken", g.id);
        }
        let jid =
            crate::groups::create(&mut w, &creator, None, &g.subject, &members, lid, fixed).jid();
        groups.push(json!({"subject": g.subject, "jid": jid}));
    }
    drop(w);
    let mut steps = Vec::new();
    for st in s.script {
        let mut body = st.send.rest;
        body.insert("to".into(), json!(st.send.to));
        let send: SendBody = serde_json::from_value(Value::Object(body))
            .map_err(|e| anyhow!("script step at {} ms: {e}", st.at))?;
        steps.push((st.at, digits(&st.from), send));
    }
    let n = steps.len();
    if n > 0 {
        let sim = sim.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (at, from, send) in steps {
                tokio::time::sleep_until(start + Duration::from_millis(at)).await;
                if let Err(e) = crate::people::send_as_person(&sim, &from, &send).await {
                    tracing::warn!(
                        "scenario step at {at} ms from {from} failed: {}",
                        e.message()
                    );
                }
                sim.world().script_sent += 1;
            }
        });
    }
    Ok(json!({
        "accounts": s.accounts.len(),
        "people": s.people.len(),
        "contacts": s.contacts.len(),
        "groups": groups,
        "script": n,
    }))
}

/// Reads and loads a scenario file.
pub fn load_file(sim: &Sim, path: &std::path::Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("reading scenario {}: {e}", path.display()))?;
    let s: Scenario =
        serde_json::from_str(&text).map_err(|e| anyhow!("scenario {}: {e}", path.display()))?;
    load(sim, s)
}
