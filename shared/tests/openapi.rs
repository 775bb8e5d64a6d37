//! The OpenAPI document is generated from the code, checked in, and complete: the committed
//! `docs/openapi.json` is exactly what the code generates, and every route the routers declare
//! is in it with its methods (and nothing else is).

use std::collections::BTreeSet;

use orderly::http::openapi::document;
use serde_json::Value;

const REGENERATE: &str = "cargo run -p orderly-local -- openapi > docs/openapi.json";

#[test]
fn the_committed_document_is_the_generated_one() {
    let committed = include_str!("../../docs/openapi.json");
    let committed: Value = serde_json::from_str(committed).expect("docs/openapi.json is JSON");
    let generated = serde_json::to_value(document()).expect("document");
    assert!(committed == generated, "docs/openapi.json differs from the code's document; regenerate it: {REGENERATE}");
}

/// What `GET /openapi.json` serves (the committed file, compacted at build time) is the same
/// document.
#[test]
fn the_served_document_is_the_generated_one() {
    let served: Value = serde_json::from_str(orderly::http::docs::DOCUMENT).expect("served document is JSON");
    assert!(served == serde_json::to_value(document()).expect("document"), "GET /openapi.json serves another document");
    assert!(!orderly::http::docs::DOCUMENT.contains("\n  "), "served compact");
}

/// (METHOD, path) of every `.route("path", get(..).post(..))` in the routers' sources.
fn declared_routes() -> BTreeSet<(String, String)> {
    let sources = [
        include_str!("../src/http/admin.rs"),
        include_str!("../src/http/auth.rs"),
        include_str!("../src/http/customers.rs"),
        include_str!("../src/http/orders.rs"),
        include_str!("../src/http/payments.rs"),
        include_str!("../src/http/products.rs"),
        include_str!("../src/http/docs.rs"),
    ];
    let mut routes = BTreeSet::new();
    for source in sources {
        for (start, _) in source.match_indices(".route(\"") {
            let rest = &source[start + ".route(\"".len()..];
            let path = &rest[..rest.find('"').expect("closing quote")];
            // The route's method chain: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let chain: String = rest
                .chars()
                .take_while(|c| {
                    depth += match c {
                        '(' => 1,
                        ')' => -1,
                        _ => 0,
                    };
                    depth > 0
                })
                .collect();
            for method in ["get", "post", "put", "patch", "delete"] {
                let called = chain.match_indices(&format!("{method}(")).any(|(i, _)| {
                    i == 0 || !chain.as_bytes()[i - 1].is_ascii_alphanumeric() && chain.as_bytes()[i - 1] != b'_'
                });
                if called {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    routes
}

#[test]
fn every_route_is_documented_and_nothing_else() {
    let doc = serde_json::to_value(document()).expect("document");
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let mut declared = declared_routes();
    // Served by swagger-ui-dist's router (its page at /docs; script and style beneath it).
    declared.insert(("GET".into(), "/docs".into()));
    declared.insert(("GET".into(), "/docs/{file}".into()));
    assert!(declared.len() > 40, "the source scan found too few routes: {declared:?}");
    let missing: Vec<_> = declared.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&declared).collect();
    assert!(missing.is_empty() && extra.is_empty(), "undocumented: {missing:?}; documented but not routed: {extra:?}");
}

#[test]
fn operations_declare_security_and_problem_answers() {
    let doc = serde_json::to_value(document()).expect("document");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("item") {
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path}: no success answer");
            assert!(responses.contains_key("500"), "{method} {path}: no 500");
            if operation.get("requestBody").is_some() {
                assert!(responses.contains_key("415") && responses.contains_key("413"), "{method} {path}");
            }
        }
    }
}
