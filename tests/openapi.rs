//! `GET /openapi.json`: served without authentication, an OpenAPI 3.1 document, and it lists
//! exactly the routes the router serves (schemathesis checks the answers against it:
//! tests/contract/schemathesis.sh).

mod common;

use std::collections::BTreeSet;

use common::TestApp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Every route of the API: method and path template.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/events"),
    ("POST", "/v1/ack"),
    ("GET", "/v1/inbox"),
    ("GET", "/v1/inbox/{id}"),
    ("PUT", "/v1/devices/{device_id}"),
    ("DELETE", "/v1/devices/{device_id}"),
    ("POST", "/v1/notify"),
    ("POST", "/v1/notify/batch"),
    ("POST", "/v1/broadcast"),
    ("GET", "/v1/presence/{user_id}"),
    ("GET", "/v1/notifications/{id}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/console"),
    ("GET", "/v1/console/stats"),
    ("GET", "/v1/console/notifications/{id}"),
    ("GET", "/v1/console/presence/{user_id}"),
    ("POST", "/v1/console/test-notify"),
];

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

async fn document(app: &TestApp) -> (String, Value) {
    let resp = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let text = resp.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap();
    (text, json)
}

/// The value a JSON pointer in `#/...` form names, if any.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    doc.pointer(reference.strip_prefix('#')?)
}

fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get("$ref") {
                out.push(r);
            }
            map.values().for_each(|v| refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_without_auth_and_parses_as_openapi_3_1() {
    let app = TestApp::spawn().await;
    let (text, doc) = document(&app).await;

    let spec = oas3::from_json(&text).expect("an OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3.1."), "{}", spec.openapi);
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(
        all.len() > 20,
        "the document shares its schemas and answers"
    );
    for r in all {
        assert!(resolve(&doc, r).is_some(), "{r} does not resolve");
    }
    for scheme in ["producer_key", "client_jwt", "access_token", "operator_key"] {
        assert!(
            doc["components"]["securitySchemes"][scheme].is_object(),
            "{scheme}"
        );
    }
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error"]), "{error}");
}

#[tokio::test]
async fn the_document_lists_every_route_the_router_serves_and_no_other() {
    let app = TestApp::spawn().await;
    let (_, doc) = document(&app).await;

    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|k| METHODS.iter().any(|m| m.eq_ignore_ascii_case(k)))
                .map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(documented, expected);

    // Each documented method is served there; every other method answers 405.
    let paths: BTreeSet<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    for template in paths {
        let path = template
            .replace("{device_id}", "phone")
            .replace("{user_id}", "alice")
            .replace("{id}", "0190a5d2-0000-7000-8000-000000000000");
        for method in METHODS {
            let resp = app
                .http
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&path),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if expected.contains(&(method.to_string(), template.to_string())) {
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_ne!(body["error"]["code"], "not_found", "{method} {path}");
            } else {
                assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                assert_eq!(body["error"]["code"], "method_not_allowed");
            }
        }
    }
}

#[tokio::test]
async fn malformed_path_parameters_answer_400_in_the_error_shape() {
    let app = TestApp::spawn().await;
    for (path, says) in [
        ("/v1/presence/a%20b", "user_id must be"),
        ("/v1/presence/%FF%FE", "Invalid URL"),
        ("/v1/notifications/not-an-id", "is not a notification id"),
    ] {
        let (status, body) = app.producer(Method::GET, path, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{path}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
    }
    let resp = app
        .http
        .delete(app.url("/v1/devices/a@b"))
        .bearer_auth(app.token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("device_id must be"));
}

/// The operation's answer for `status`, its `$ref` resolved.
fn answer<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> Option<&'a Value> {
    let answer = &doc["paths"][path][method]["responses"][status];
    match answer["$ref"].as_str() {
        Some(r) => resolve(doc, r),
        None => Some(answer).filter(|a| a.is_object()),
    }
}

#[tokio::test]
async fn the_limits_and_checks_of_the_edge_are_declared_on_their_operations() {
    let app = TestApp::spawn().await;
    let (_, doc) = document(&app).await;
    let says = |method: &str, path: &str, status: &str, code: &str| {
        let a = answer(&doc, method, path, status)
            .unwrap_or_else(|| panic!("{method} {path} does not declare {status}"));
        let description = a["description"].as_str().unwrap();
        assert!(
            description.contains(&format!("`{code}`")),
            "{method} {path} {status}: {description}"
        );
        if status == "429" || status == "503" {
            assert!(
                a["headers"]["Retry-After"].is_object(),
                "{method} {path} {status} has Retry-After"
            );
        }
    };
    for (method, path) in ROUTES {
        let method = method.to_lowercase();
        let producer = doc["paths"][path][&method]["security"][0]["producer_key"].is_array();
        if producer {
            says(&method, path, "429", "rate_limited");
        }
        // The connection cap answers before any route is chosen.
        says(&method, path, "503", "too_many_connections");
    }
    says("get", "/v1/events", "429", "too_many_reconnects");
    says("get", "/v1/events", "429", "too_many_streams");
    says("put", "/v1/devices/{device_id}", "409", "too_many_devices");
    says("get", "/readyz", "503", "not_ready");
    let ready = answer(&doc, "get", "/readyz", "200").unwrap();
    assert_eq!(
        ready["content"]["application/json"]["example"],
        serde_json::json!({"status": "ready"}),
        "no node details in the readiness answer"
    );

    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "too_many_devices",
        "not_ready",
        "rate_limited",
        "too_many_reconnects",
        "too_many_connections",
    ] {
        assert!(
            codes.as_array().unwrap().iter().any(|c| c == code),
            "{code}"
        );
    }
}

#[tokio::test]
async fn the_stream_schema_does_not_ask_a_broadcast_for_an_id_line() {
    let app = TestApp::spawn().await;
    let (_, doc) = document(&app).await;
    let events = doc["components"]["schemas"]["StreamEvent"]["oneOf"]
        .as_array()
        .unwrap();
    let broadcast = events
        .iter()
        .find(|e| e["properties"]["event"]["enum"][0] == "broadcast")
        .unwrap();
    assert!(
        !broadcast["required"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "id"),
        "{broadcast}"
    );
}
