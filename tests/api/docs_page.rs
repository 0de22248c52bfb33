//! `GET /docs` (Swagger UI) and the files it loads, as a browser gets them: types, caching,
//! the Content-Security-Policy, relative URLs; and `GET /openapi.json` as the checked-in file.
//! That the page renders is the browser test's (`scripts/docs-browser.sh`).

use reqwest::Response;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use user_service_tests::{TestApp, assert_problem};

fn header(response: &Response, name: impl reqwest::header::AsHeaderName) -> String {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The values of `attribute="..."` in `html`, in order.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let start = format!(" {attribute}=\"");
    html.match_indices(&start)
        .filter_map(|(at, _)| {
            let rest = &html[at + start.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

#[tokio::test]
async fn the_page_and_every_file_it_loads_are_served_with_their_types() {
    let app = TestApp::spawn().await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(header(&page, CACHE_CONTROL), "no-cache");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let policy = header(&page, CONTENT_SECURITY_POLICY);
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} in {policy:?}");
    }
    assert!(!policy.contains("unsafe"), "{policy:?}");
    let html = page.text().await.expect("the page");

    let scripts = attribute_values(&html, "src");
    let stylesheets: Vec<&str> = attribute_values(&html, "href")
        .into_iter()
        .filter(|href| href.contains(".css"))
        .collect();
    assert_eq!(scripts.len(), 2, "Swagger UI and its start-up: {scripts:?}");
    assert_eq!(stylesheets.len(), 1, "{stylesheets:?}");
    for (url, content_type) in scripts
        .iter()
        .map(|url| (url, "text/javascript; charset=utf-8"))
        .chain(
            stylesheets
                .iter()
                .map(|url| (url, "text/css; charset=utf-8")),
        )
    {
        // Relative to the page, so that it works under an API Gateway stage path too.
        assert!(url.starts_with("docs/") && url.contains("?v="), "{url}");
        let file = app.get(&format!("/{url}")).await;
        assert_eq!(file.status(), 200, "{url}");
        assert_eq!(header(&file, CONTENT_TYPE), content_type, "{url}");
        assert_eq!(
            header(&file, CACHE_CONTROL),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&file, "x-content-type-options"), "nosniff", "{url}");
        let body = file.text().await.expect("the file");
        assert!(body.len() > 500, "{url}: {} bytes", body.len());
    }
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert!(
        bundle
            .text()
            .await
            .expect("the bundle")
            .contains("SwaggerUIBundle"),
        "the bundle is Swagger UI's"
    );
}

#[tokio::test]
async fn a_file_the_page_does_not_load_is_not_found() {
    let app = TestApp::spawn().await;
    for path in [
        "/docs/index.html",
        "/docs/swagger-ui.js",
        "/docs/..%2Fopenapi.json",
    ] {
        assert_problem(app.get(path).await, 404, "not_found").await;
    }
}

#[tokio::test]
async fn the_document_served_is_the_checked_in_file() {
    let app = TestApp::spawn().await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, CONTENT_TYPE), "application/json");
    let served = response.text().await.expect("the document");
    let checked_in = crate::docs::workspace_root().join("openapi.json");
    let checked_in = std::fs::read_to_string(&checked_in).expect("openapi.json");
    assert!(
        served == checked_in,
        "GET /openapi.json is not openapi.json"
    );
}
