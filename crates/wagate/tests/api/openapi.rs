use axum::http::Method;

use crate::support::{Backend, TestApp};

/// Every route the gateway serves, as (method, path in the document).
const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/sessions"),
    ("post", "/api/v1/sessions"),
    ("get", "/api/v1/sessions/{sid}"),
    ("patch", "/api/v1/sessions/{sid}"),
    ("delete", "/api/v1/sessions/{sid}"),
    ("post", "/api/v1/sessions/{sid}:start"),
    ("post", "/api/v1/sessions/{sid}:stop"),
    ("post", "/api/v1/sessions/{sid}:restart"),
    ("post", "/api/v1/sessions/{sid}:logout"),
    ("get", "/api/v1/sessions/{sid}/qr"),
    ("post", "/api/v1/sessions/{sid}/pairing-code"),
    ("get", "/api/v1/sessions/{sid}/me"),
    ("get", "/api/v1/sessions/{sid}/chats"),
    ("get", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("patch", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("delete", "/api/v1/sessions/{sid}/chats/{cid}"),
    ("post", "/api/v1/sessions/{sid}/chats/{cid}/read"),
    ("put", "/api/v1/sessions/{sid}/chats/{cid}/presence"),
    ("get", "/api/v1/sessions/{sid}/chats/{cid}/messages"),
    ("post", "/api/v1/sessions/{sid}/messages"),
    ("get", "/api/v1/sessions/{sid}/messages/{mid}"),
    ("patch", "/api/v1/sessions/{sid}/messages/{mid}"),
    ("delete", "/api/v1/sessions/{sid}/messages/{mid}"),
    ("get", "/api/v1/sessions/{sid}/messages/{mid}/media"),
    ("post", "/api/v1/sessions/{sid}/messages/{mid}/reaction"),
    ("post", "/api/v1/sessions/{sid}/messages/{mid}/forward"),
    ("post", "/api/v1/sessions/{sid}/messages/{mid}/vote"),
    ("get", "/api/v1/sessions/{sid}/contacts"),
    ("get", "/api/v1/sessions/{sid}/contacts/check"),
    ("post", "/api/v1/sessions/{sid}/contacts/check"),
    ("get", "/api/v1/sessions/{sid}/contacts/{jid}/picture"),
    ("get", "/api/v1/sessions/{sid}/contacts/{jid}/about"),
    ("put", "/api/v1/sessions/{sid}/presence"),
    ("get", "/api/v1/api-keys"),
    ("post", "/api/v1/api-keys"),
    ("delete", "/api/v1/api-keys/{id}"),
    ("get", "/api/v1/events"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
];

#[tokio::test]
async fn every_route_is_documented_and_served() {
    let app = TestApp::new(Backend::Sqlite).await;
    let r = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    r.expect(200);
    let doc = r.json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let paths = doc["paths"].as_object().unwrap();
    for (method, path) in ROUTES {
        let op = &paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} missing from the document"))[*method];
        assert!(op.is_object(), "{method} {path} missing from the document");
        assert!(
            op["description"].as_str().is_some_and(|d| d.len() > 20),
            "{method} {path} needs a description"
        );
        assert!(
            op["responses"].as_object().is_some_and(|r| !r.is_empty()),
            "{method} {path} lists no responses"
        );
        // The router answers the route (a real 404 envelope for an unknown route says "no such route").
        let uri = path
            .replace("{sid}", "01HZZZZZZZZZZZZZZZZZZZZZZZ")
            .replace("{cid}", "1@s.whatsapp.net")
            .replace("{jid}", "1@lid")
            .replace("{id}", "x");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let resp = app
            .call(
                m,
                &uri,
                Some(&app.admin_key.clone()),
                Some(serde_json::json!({})),
            )
            .await;
        assert_ne!(resp.status.as_u16(), 405, "{method} {path}");
        if resp.status.as_u16() == 404 {
            assert_ne!(
                resp.json()["error"]["message"],
                "no such route",
                "{method} {path} is not routed"
            );
        }
    }
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "the document lists routes this test does not know: update ROUTES"
    );
    for schema in [
        "Chat",
        "ChatPage",
        "Message",
        "MessagePage",
        "Contact",
        "ContactPage",
        "Session",
        "ErrorEnvelope",
        "OnWhatsApp",
        "EventPage",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// What `scripts/contract-test` checks against the running server, checked here on the
/// document alone: shared error answers, parameter constraints, resolvable references.
#[tokio::test]
async fn the_document_states_the_shared_contract() {
    let app = TestApp::new(Backend::Sqlite).await;
    let doc = app
        .call(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .json();
    let text = doc.to_string();
    // Every reference resolves (`Health` was once referenced and never defined).
    for (i, _) in text.match_indices("\"$ref\":\"#/") {
        let target = &text[i + 10..];
        let target = &target[..target.find('"').unwrap()];
        let node = target.split('/').fold(&doc, |n, part| &n[part]);
        assert!(node.is_object(), "#/{target} does not resolve");
    }
    assert!(doc["components"]["schemas"]["Health"].is_object());
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let has = |code: &str| responses.contains_key(code);
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            assert_eq!(
                secured,
                path.starts_with("/api/v1/"),
                "{method} {path}: security"
            );
            if secured {
                for code in ["401", "403", "503"] {
                    assert!(has(code), "{method} {path} does not document {code}");
                }
            }
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            if !params.is_empty() {
                assert!(has("400"), "{method} {path} does not document 400");
            }
            for p in &params {
                let schema = &p["schema"];
                match p["name"].as_str().unwrap() {
                    "sid" => assert_eq!(schema["$ref"], "#/components/schemas/SessionId"),
                    "cid" => assert_eq!(schema["$ref"], "#/components/schemas/ChatJid"),
                    name => assert!(
                        schema.get("pattern").is_some()
                            || schema.get("enum").is_some()
                            || schema.get("$ref").is_some()
                            || schema.get("maxLength").is_some()
                            || schema["type"] == "integer"
                            || schema["type"] == "boolean"
                            || schema["type"] == "array",
                        "{method} {path}: parameter {name} is unconstrained: {schema}"
                    ),
                }
            }
            if op.get("requestBody").is_some() {
                assert!(has("413") && has("422"), "{method} {path}: body errors");
            }
            for (code, resp) in responses {
                if !code.starts_with('2') && path != "/metrics" {
                    assert_eq!(
                        resp["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorEnvelope",
                        "{method} {path} {code} is not the error envelope"
                    );
                }
            }
        }
    }
    let create = &doc["paths"]["/api/v1/sessions"]["post"];
    assert_eq!(
        create["requestBody"]["required"], false,
        "POST /sessions takes no body"
    );
    assert!(create["responses"]["201"]["links"]["get_session"].is_object());
    let pattern = doc["components"]["schemas"]["SessionId"]["pattern"]
        .as_str()
        .unwrap();
    let sid = app.session().await;
    assert!(
        regex::Regex::new(pattern).unwrap().is_match(&sid),
        "{sid} ~ {pattern}"
    );
}

/// Behaviours the contract test found the server and the document disagreeing on.
#[tokio::test]
async fn what_the_document_promises_the_server_does() {
    let app = TestApp::new(Backend::Sqlite).await;
    let sid = app.session().await;
    let key = Some(app.admin_key.clone());
    // JSON Schema counts 20.0 and 1e3 as integers.
    let r = app
        .call(
            Method::PATCH,
            &format!("/api/v1/sessions/{sid}"),
            key.as_deref(),
            Some(serde_json::json!({"ratePerMin": 20.0, "ratePerHour": 1e3})),
        )
        .await;
    r.expect(200);
    assert_eq!(
        (
            r.json()["ratePerMin"].as_i64(),
            r.json()["ratePerHour"].as_i64()
        ),
        (Some(20), Some(1000))
    );
    app.call(
        Method::PATCH,
        &format!("/api/v1/sessions/{sid}"),
        key.as_deref(),
        Some(serde_json::json!({"ratePerMin": 20.5})),
    )
    .await
    .expect_error(422, "validation_error");
    // The actions take POST only, and say so; the session resource lists its own methods.
    let r = app
        .call(
            Method::GET,
            &format!("/api/v1/sessions/{sid}:start"),
            key.as_deref(),
            None,
        )
        .await;
    r.expect_error(405, "method_not_allowed");
    assert_eq!(r.headers["allow"], "POST");
    let r = app
        .call(
            Method::PUT,
            &format!("/api/v1/sessions/{sid}"),
            key.as_deref(),
            None,
        )
        .await;
    r.expect_error(405, "method_not_allowed");
    assert_eq!(r.headers["allow"], "GET, HEAD, PATCH, DELETE");
    // A create without a body is a create with every default.
    app.call(Method::POST, "/api/v1/sessions", key.as_deref(), None)
        .await
        .expect(201);
    // Parameters are as strict as their patterns: no surrounding spaces, no empty filters.
    for bad in ["source=", "group=", "limit=", "limit=%205"] {
        app.get(&format!("/api/v1/sessions/{sid}/contacts?{bad}"))
            .await
            .expect_error(400, "validation_error");
    }
    for bad in ["event=", "event=message,", "after=+1", "session="] {
        app.get(&format!("/api/v1/events?{bad}"))
            .await
            .expect_error(400, "validation_error");
    }
    app.get(&format!("/api/v1/sessions/{sid}/chats/%201@s.whatsapp.net"))
        .await
        .expect_error(400, "validation_error");
    // Any cursor the pattern allows is a position, however far.
    app.get(&format!(
        "/api/v1/sessions/{sid}/chats?cursor=c.0.9999999999999999999.-1"
    ))
    .await
    .expect(200);
    app.get(&format!("/api/v1/sessions/{sid}/chats?cursor=m.1.2"))
        .await
        .expect_error(400, "validation_error");
    // Texts that may not be blank say so with `\S`, and the server's idea of blank is that
    // pattern's: a form feed with a letter is text, the separators U+001C-U+001F are space.
    let doc = wagate::http::document();
    for (schema, field) in [
        ("EditMessage", "text"),
        ("ContactInput", "displayName"),
        ("PollInput", "question"),
        ("CreateApiKey", "name"),
        ("MediaInput", "mimetype"),
    ] {
        assert_eq!(
            doc["components"]["schemas"][schema]["properties"][field]["pattern"],
            wagate::http::NOT_BLANK_PATTERN,
            "{schema}.{field}"
        );
    }
    let options = &doc["components"]["schemas"]["PollInput"]["properties"]["options"];
    assert_eq!(
        (
            &options["items"]["pattern"],
            &options["uniqueItems"],
            &options["minItems"],
            &options["maxItems"]
        ),
        (
            &serde_json::json!(wagate::http::NOT_BLANK_PATTERN),
            &serde_json::json!(true),
            &serde_json::json!(2),
            &serde_json::json!(12)
        )
    );
    let edit_path = format!("/api/v1/sessions/{sid}/messages/nosuchmessage");
    let not_blank = regex::Regex::new(wagate::http::NOT_BLANK_PATTERN).unwrap();
    for (text, status) in [
        ("\u{1d}", 422),
        ("\u{feff}", 404),
        ("\u{c}", 422),
        ("\u{1c}\u{a0}", 422),
        (" \u{1f}\n", 422),
        ("\u{c}x", 404),
    ] {
        let r = app
            .call(
                Method::PATCH,
                &edit_path,
                key.as_deref(),
                Some(serde_json::json!({ "text": text })),
            )
            .await;
        assert_eq!(r.status, status, "{text:?}: {}", r.json());
        // The document's pattern says the same (404: past the body check, no such message).
        assert_eq!(not_blank.is_match(text), status == 404, "{text:?}");
    }
}

/// The edges schemathesis found the document looser than the server (issue 17, defect 12):
/// each field carries the server's own pattern, and what the pattern allows the server takes.
#[tokio::test]
async fn body_fields_carry_the_patterns_the_server_enforces() {
    use wagate::domain::Phone;
    let app = TestApp::new(Backend::Sqlite).await;
    let sid = app.session().await;
    let key = Some(app.admin_key.clone());
    let doc = wagate::http::document();
    let schemas = &doc["components"]["schemas"];
    let pattern = |v: &serde_json::Value| regex::Regex::new(v.as_str().unwrap()).unwrap();
    let phones = pattern(&schemas["CheckNumbers"]["properties"]["phones"]["items"]["pattern"]);
    let pairing = pattern(&schemas["PairingCodeRequest"]["properties"]["phone"]["pattern"]);
    let to = pattern(&schemas["Forward"]["properties"]["to"]["pattern"]);
    assert_eq!(
        schemas["Forward"]["properties"]["to"]["pattern"],
        schemas["SendMessage"]["properties"]["to"]["pattern"]
    );
    for (raw, phone_ok) in [
        ("6281234567890", true),
        ("+62 812-3456-7890", true),
        ("(62) 8123.4567", true),
        ("0812345678", false),
        ("123", false),
        ("62812345678901234", false),
        ("62a812345678", false),
        ("", false),
    ] {
        assert_eq!(raw.parse::<Phone>().is_ok(), phone_ok, "{raw:?}");
        assert_eq!(phones.is_match(raw), phone_ok, "phones[]: {raw:?}");
        assert_eq!(pairing.is_match(raw), phone_ok, "phone: {raw:?}");
        assert_eq!(to.is_match(raw), phone_ok, "to: {raw:?}");
        // The batch check refuses exactly what the pattern refuses (422 names the index);
        // what it allows gets past the body check (501: no connected client).
        let r = app
            .call(
                Method::POST,
                &format!("/api/v1/sessions/{sid}/contacts/check"),
                key.as_deref(),
                Some(serde_json::json!({ "phones": [raw] })),
            )
            .await;
        assert_eq!(
            r.status,
            if phone_ok { 501 } else { 422 },
            "{raw:?}: {}",
            r.json()
        );
    }
    for (raw, ok) in [
        ("6281234567890@s.whatsapp.net", true),
        ("123@lid", true),
        ("1234-5678@g.us", true),
        ("status@broadcast", false),
        ("1@newsletter", false),
        ("x@s.whatsapp.net", false),
    ] {
        assert_eq!(to.is_match(raw), ok, "to: {raw:?}");
        assert_eq!(
            wagate::http::send::recipient(raw).is_ok(),
            ok,
            "recipient({raw:?})"
        );
    }
    // A voice flag in a form is the text true or false, as the server reads it.
    assert_eq!(schemas["SendMessageForm"]["additionalProperties"], false);
    let voice = &schemas["SendMessageForm"]["properties"]["voice"];
    assert_eq!(voice["pattern"], "^(true|false)$");
    assert_eq!(voice["type"], "string", "not nullable: {voice}");
    // The emoji pattern is the server's check (a unit test compares them on every character).
    assert_eq!(
        schemas["React"]["properties"]["emoji"]["pattern"],
        wagate::http::messages::EMOJI_PATTERN
    );
    let emoji = pattern(&schemas["React"]["properties"]["emoji"]["pattern"]);
    assert!(
        emoji.is_match("👍")
            && emoji.is_match("")
            && !emoji.is_match("👍 ")
            && !emoji.is_match("\u{85}")
    );
    // A past expiry is allowed by the document, and taken by the server.
    assert_eq!(
        schemas["CreateApiKey"]["properties"]["expiresAt"]["minimum"],
        0
    );
    app.call(
        Method::POST,
        "/api/v1/api-keys",
        key.as_deref(),
        Some(
            serde_json::json!({"name": "neg", "capabilities": ["read"], "expiresAt": -9.3e18_f64}),
        ),
    )
    .await
    .expect_error(422, "validation_error");
    app.call(
        Method::POST,
        "/api/v1/api-keys",
        key.as_deref(),
        Some(serde_json::json!({"name": "old", "capabilities": ["read"], "expiresAt": 0})),
    )
    .await
    .expect(201);
    // Every operation documents the time limit's 504.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(op["responses"]["504"].is_object(), "{method} {path}: 504");
        }
    }
}
