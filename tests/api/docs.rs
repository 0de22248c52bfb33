//! The written contract keeps up with the generated one: every operation of `openapi.json`
//! (the checked-in OpenAPI document, generated from the code) is mentioned in `docs/api.md`
//! as "`METHOD /path`" (for example "`POST /v1/auth/login`"). Reads both files as text; no
//! server, database or build of the service is needed.

use std::path::{Path, PathBuf};

/// The methods an OpenAPI path item may hold operations under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The workspace root: the tests crate's parent. Read when the test runs (`cargo test` sets
/// the variable), not with `env!` at compile time: a test binary that the shared build cache
/// kept from another clone would read that clone's files.
pub(crate) fn workspace_root() -> PathBuf {
    let tests_crate = std::env::var_os("CARGO_MANIFEST_DIR").expect("run by cargo test");
    Path::new(&tests_crate)
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = workspace_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// "`METHOD /path`" in the text, the path ending the code span or followed by a space (a
/// body after it) or a `?` (a query).
fn mentions(text: &str, method: &str, path: &str) -> bool {
    let start = format!("`{method} {path}");
    text.match_indices(&start).any(|(at, _)| {
        matches!(
            text[at + start.len()..].chars().next(),
            Some('`' | ' ' | '?')
        )
    })
}

#[test]
fn every_operation_of_the_openapi_document_is_in_docs_api_md() {
    let document: serde_json::Value =
        serde_json::from_str(&read("openapi.json")).expect("openapi.json is JSON");
    let api_md = read("docs/api.md");
    let paths = document["paths"]
        .as_object()
        .expect("openapi.json has an object of paths");
    let mut operations = 0;
    let mut missing = Vec::new();
    for (path, item) in paths {
        for method in METHODS {
            if item.get(method).is_none() {
                continue;
            }
            operations += 1;
            let method = method.to_ascii_uppercase();
            if !mentions(&api_md, &method, path) {
                missing.push(format!("`{method} {path}`"));
            }
        }
    }
    assert!(operations > 0, "openapi.json lists no operation");
    assert!(
        missing.is_empty(),
        "docs/api.md does not mention these operations of openapi.json: {}",
        missing.join(", ")
    );
}

#[test]
fn a_mention_ends_at_the_path() {
    let text = "see `POST /v1/auth/login` and `PATCH /v1/admin/users/{id} {\"x\": 1}`";
    assert!(mentions(text, "POST", "/v1/auth/login"));
    assert!(mentions(text, "PATCH", "/v1/admin/users/{id}"));
    assert!(!mentions(text, "POST", "/v1/auth/log"));
    assert!(!mentions(text, "GET", "/v1/auth/login"));
}
