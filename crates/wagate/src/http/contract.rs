//! Completes the generated OpenAPI document with what every operation shares, so that the
//! document says exactly what the server does (it is checked by `scripts/contract-test`).
//!
//! Handlers document their own success answers and the errors particular to them. This pass
//! adds, by rule, what follows from the machinery they all share:
//!
//! - every parameter's real constraints, by name (`sid` is a ULID, `cid` a JID, `cursor` a
//!   cursor of that list, ...), taken from the parsers' own patterns, which unit tests keep equal
//!   to the parsers;
//! - the error answers of the shared extractors: 401 for a missing or rejected credential, 403
//!   for a missing capability, 400 for a malformed path or query parameter, 404 for a session
//!   that is unknown or another organization's, 413 and 422 for request bodies, 503 when the
//!   database cannot be reached;
//! - links from a created session or key to the operations that take its id, for clients and
//!   stateful fuzzers.
//!
//! A parameter name without a rule makes [`complete`] panic, so a new parameter cannot reach
//! the document unconstrained (a unit test builds the document).

use serde_json::{json, Map, Value};

use crate::domain::{Cursor, Jid, Phone, SessionId};
use crate::store::event_kind;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Request bodies the server accepts empty (an update that changes nothing, a create with
/// every setting defaulted): documented as optional.
const OPTIONAL_BODIES: &[(&str, &str)] = &[
    ("post", "/api/v1/sessions"),
    ("patch", "/api/v1/sessions/{sid}"),
    ("patch", "/api/v1/sessions/{sid}/chats/{cid}"),
];

fn error(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorEnvelope"}}}
    })
}

/// The schema of a parameter, by where it is and its name.
fn parameter_schema(path: &str, location: &str, name: &str) -> Value {
    match (location, name) {
        ("path", "sid") | ("query", "session") => json!({"$ref": "#/components/schemas/SessionId"}),
        ("path", "cid") => json!({"$ref": "#/components/schemas/ChatJid"}),
        ("path", "jid") => json!({"type": "string", "pattern": Jid::PERSON_PATTERN}),
        ("path", "mid") => {
            json!({"type": "string", "pattern": super::messages::MESSAGE_REF_PATTERN})
        }
        ("path", "id") if path.starts_with("/api/v1/api-keys/") => {
            json!({"type": "string", "minLength": 1, "maxLength": 200})
        }
        ("query", "limit") => json!({"type": "integer"}),
        ("query", "cursor") => {
            let (kind, arity) = if path.ends_with("/chats") {
                ('c', 3)
            } else if path.ends_with("/messages") {
                ('m', 2)
            } else if path.ends_with("/contacts") {
                ('p', 1)
            } else {
                panic!("no cursor kind for {path}")
            };
            json!({"type": "string", "pattern": Cursor::pattern(kind, arity)})
        }
        ("query", "source") => json!({"type": "string", "enum": ["dm", "group"]}),
        ("query", "group") => json!({"type": "string", "pattern": Jid::GROUP_PATTERN}),
        ("query", "q") => json!({"type": "string", "maxLength": 100}),
        ("query", "phone") => json!({"type": "string", "pattern": Phone::PATTERN}),
        ("query", "format") => json!({"type": "string", "enum": ["json", "svg", "png"]}),
        ("query", "after") => {
            json!({"type": "integer", "format": "int64", "minimum": 0, "maximum": i64::MAX})
        }
        ("query", "event") => json!({
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "enum": event_kind::ALL},
        }),
        ("query", "async") => json!({"type": "boolean"}),
        ("header", "Idempotency-Key") => {
            json!({"type": "string", "minLength": 1, "maxLength": 200, "pattern": "^[!-~]+$"})
        }
        _ => panic!("no constraint rule for the {location} parameter `{name}` of {path}"),
    }
}

/// Standard base64 with padding, as `base64::STANDARD` decodes it (the last character before
/// the padding carries no stray bits).
const BASE64_PATTERN: &str =
    "^([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$";

/// Shared schemas the parameters refer to.
fn add_schemas(doc: &mut Value) {
    let schemas = doc["components"]["schemas"]
        .as_object_mut()
        .expect("the document has component schemas");
    schemas.insert(
        "SessionId".into(),
        json!({
            "type": "string",
            "description": "A session id: a ULID (26 characters of Crockford base32, either case).",
            "pattern": SessionId::PATTERN,
            "example": "01JD8X5V3N4Q6R7S8T9V0W1X2Y",
        }),
    );
    schemas.insert(
        "ChatJid".into(),
        json!({
            "type": "string",
            "description": "A chat's WhatsApp address: `<digits>@s.whatsapp.net` (or the legacy `@c.us`) for a person by \
number, `<digits>@lid` for a person by privacy id, `<digits>@g.us` or `<digits>-<digits>@g.us` for a group, \
`<digits>@newsletter`, `<digits>@broadcast`, `status@broadcast`. Percent-encoding is allowed in paths.",
            "pattern": Jid::PATTERN,
            "example": "6281234567890@s.whatsapp.net",
        }),
    );
}

/// Body fields whose constraint is a parser's pattern: (schema, property, items?, pattern).
fn body_patterns() -> Vec<(&'static str, &'static str, bool, String)> {
    let recipient = super::send::recipient_pattern();
    vec![
        ("CheckNumbers", "phones", true, Phone::PATTERN.to_owned()),
        (
            "PairingCodeRequest",
            "phone",
            false,
            Phone::PATTERN.to_owned(),
        ),
        ("Forward", "to", false, recipient.clone()),
        ("SendMessage", "to", false, recipient.clone()),
        ("SendMessageForm", "to", false, recipient),
        (
            "React",
            "emoji",
            false,
            super::messages::EMOJI_PATTERN.to_owned(),
        ),
    ]
}

/// Puts the parsers' patterns on the body fields they check, and the server's exact class of
/// blank characters wherever a handler wrote `\S` ("not only spaces").
fn add_body_patterns(doc: &mut Value) {
    for (schema, prop, items, pattern) in body_patterns() {
        let field = &mut doc["components"]["schemas"][schema]["properties"][prop];
        assert!(field.is_object(), "{schema}.{prop} is not in the document");
        let target = if items { &mut field["items"] } else { field };
        target["pattern"] = json!(pattern);
    }
    // A send's `type` decides which other field it needs, given and not null (what
    // `content_of` refuses as "required for this type"); a text must not be blank.
    let needs = |kinds: Value, field: &str, shape: Value| {
        json!({
            "if": {"properties": {"type": kinds}, "required": ["type"]},
            "then": {"required": [field], "properties": {field: shape}},
        })
    };
    let object = || json!({"type": "object"});
    doc["components"]["schemas"]["SendMessage"]["allOf"] = json!([
        needs(
            json!({"const": "text"}),
            "text",
            json!({"type": "string", "pattern": "\\S"})
        ),
        needs(
            json!({"enum": ["image", "video", "audio", "document", "sticker"]}),
            "media",
            object()
        ),
        needs(json!({"const": "location"}), "location", object()),
        needs(json!({"const": "contact"}), "contact", object()),
        needs(json!({"const": "poll"}), "poll", object()),
    ]);
    // A file is inline (`data`, standard base64 as the server decodes it, with its `mimetype`)
    // or fetched (`url`), exactly one of them.
    doc["components"]["schemas"]["MediaInput"]["oneOf"] = json!([
        {
            "required": ["data", "mimetype"],
            "properties": {
                "data": {"type": "string", "minLength": 4, "pattern": BASE64_PATTERN},
                "mimetype": {"type": "string"},
                "url": {"type": "null"},
            },
        },
        {
            "required": ["url"],
            "properties": {"url": {"type": "string"}, "data": {"type": "null"}},
        },
    ]);
    // A form takes only its documented fields (the server names an unknown one in a 422), as
    // the JSON bodies do through `deny_unknown_fields`.
    doc["components"]["schemas"]["SendMessageForm"]["additionalProperties"] = json!(false);
    fn not_blank(v: &mut Value) {
        match v {
            Value::Object(map) => {
                if map.get("pattern").and_then(Value::as_str) == Some("\\S") {
                    map.insert("pattern".into(), json!(super::NOT_BLANK_PATTERN));
                }
                map.values_mut().for_each(not_blank);
            }
            Value::Array(items) => items.iter_mut().for_each(not_blank),
            _ => {}
        }
    }
    not_blank(&mut doc["components"]);
}

/// Adds `status` to `responses` unless the handler documented it already.
fn ensure(responses: &mut Map<String, Value>, status: u16, description: &str) {
    responses
        .entry(status.to_string())
        .or_insert_with(|| error(description));
}

fn complete_operation(path: &str, method: &str, op: &mut Value) {
    let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
    let mut has_path_params = false;
    let mut has_query_params = false;
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params {
            let location = p["in"].as_str().unwrap_or_default().to_owned();
            let name = p["name"].as_str().unwrap_or_default().to_owned();
            p["schema"] = parameter_schema(path, &location, &name);
            if p["schema"]["type"] == "array" {
                // Several values, comma-separated: `event=message,chat.update`.
                p["style"] = json!("form");
                p["explode"] = json!(false);
            }
            match location.as_str() {
                "path" => has_path_params = true,
                "query" | "header" => has_query_params = true,
                _ => {}
            }
        }
    }
    let has_body = op.get("requestBody").is_some();
    if has_body {
        let optional = OPTIONAL_BODIES.contains(&(method, path));
        op["requestBody"]["required"] = json!(!optional);
    }
    let sid_in_path = path.contains("{sid}");
    let responses = op["responses"]
        .as_object_mut()
        .expect("every operation has responses");
    if has_path_params || has_query_params {
        ensure(responses, 400, "A path or query parameter is malformed.");
    }
    if secured {
        ensure(
            responses,
            401,
            "No credential, or one that is malformed, forged, expired or revoked.",
        );
        ensure(
            responses,
            403,
            "The caller lacks the capability this operation needs.",
        );
        ensure(
            responses,
            503,
            "The database cannot be reached right now, or the gateway is answering as many requests as it \
takes (`max_concurrent_requests`; then with `Retry-After`); retry later.",
        );
    }
    ensure(
        responses,
        504,
        "The request took longer than the gateway's time limit (`request_timeout_secs`).",
    );
    if sid_in_path {
        ensure(
            responses,
            404,
            "Unknown session, or a session of another organization.",
        );
    }
    if has_body {
        ensure(
            responses,
            413,
            "The request body is larger than this gateway accepts.",
        );
        ensure(
            responses,
            422,
            "The body is not valid JSON or a field is missing or invalid.",
        );
    }
}

/// Links from the answer of a create call to the operations that take the new id.
fn add_links(doc: &mut Value) {
    let paths = doc["paths"].as_object().expect("paths").clone();
    let mut session_ops = Map::new();
    for (path, item) in &paths {
        if !path.contains("{sid}") {
            continue;
        }
        for method in METHODS {
            if let Some(id) = item[method]["operationId"].as_str() {
                session_ops.insert(
                    id.to_owned(),
                    json!({"operationId": id, "parameters": {"sid": "$response.body#/id"}}),
                );
            }
        }
    }
    doc["paths"]["/api/v1/sessions"]["post"]["responses"]["201"]["links"] =
        Value::Object(session_ops);
    if let Some(revoke) = paths
        .get("/api/v1/api-keys/{id}")
        .and_then(|i| i["delete"]["operationId"].as_str())
    {
        doc["paths"]["/api/v1/api-keys"]["post"]["responses"]["201"]["links"] = json!({
            revoke: {"operationId": revoke, "parameters": {"id": "$response.body#/id"}}
        });
    }
}

/// Applies the rules above to the whole document.
pub fn complete(doc: &mut Value) {
    add_schemas(doc);
    add_body_patterns(doc);
    let paths: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    for path in paths {
        for method in METHODS {
            // (`get_mut`: indexing a missing key mutably would insert a null operation.)
            if let Some(op) = doc["paths"][&path].get_mut(method) {
                complete_operation(&path, method, op);
            }
        }
    }
    add_links(doc);
}

#[cfg(test)]
mod tests {
    /// The document's base64 pattern accepts exactly what the server's decoder takes.
    #[test]
    fn the_base64_pattern_is_the_decoders() {
        use base64::Engine as _;
        let re = regex::Regex::new(super::BASE64_PATTERN).unwrap();
        let decodes = |s: &str| base64::engine::general_purpose::STANDARD.decode(s).is_ok();
        let alphabet = b"AQgwBRhxEIMUYcos048+/=";
        let mut n = 0;
        for len in 0..=8usize {
            // Every string of this length over a small alphabet that covers the edge cases.
            let total = alphabet.len().pow(len.min(4) as u32);
            for k in 0..total {
                let mut s = String::new();
                let mut x = k;
                for _ in 0..len.min(4) {
                    s.push(alphabet[x % alphabet.len()] as char);
                    x /= alphabet.len();
                }
                let s = format!("{}{s}", "AAAA".repeat(len / 4 * (len >= 4) as usize));
                assert_eq!(re.is_match(&s), decodes(&s), "{s:?}");
                n += 1;
            }
        }
        assert!(n > 1000);
    }

    #[test]
    fn every_parameter_has_a_rule_and_every_ref_resolves() {
        let doc = super::super::document();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                assert!(op.is_object(), "{method} {path} is not an operation");
            }
        }
        let text = doc.to_string();
        for (i, _) in text.match_indices("\"$ref\":\"") {
            let target = &text[i + 8..];
            let target = &target[..target.find('"').unwrap()];
            let mut node = &doc;
            for part in target.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            assert!(node.is_object(), "{target} does not resolve");
        }
    }
}
