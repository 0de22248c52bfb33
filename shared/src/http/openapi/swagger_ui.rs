//! The interactive API docs at `GET /docs`: Swagger UI (npm `swagger-ui-dist`, vendored in
//! `shared/vendor/swagger-ui-dist/` by `scripts/vendor-swagger-ui.sh`) on the service's own
//! `openapi.json`, its files embedded in the binary and served at `GET /docs/{asset}`, so the
//! page needs nothing from outside.
//!
//! Every URL the page uses is relative (`docs/...`, `openapi.json`), so it works wherever the
//! service is mounted: at the root of the local server or under an API Gateway stage. The
//! page allows scripts, styles and requests from its own origin only (its
//! `Content-Security-Policy`); the files are cached for a year under a URL that changes with
//! their content (`?v=`), the page itself is revalidated on every visit.

use axum::extract::Path;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::{DOCS, DOCS_ASSET};
use crate::http::ApiError;

/// The `swagger-ui-dist` version vendored (its `VERSION` file).
const SWAGGER_UI_VERSION: &str =
    include_str!("../../../vendor/swagger-ui-dist/VERSION").trim_ascii();

/// The start-up script: Swagger UI's options (see the file).
const INIT_JS: &[u8] = include_bytes!("swagger-init.js");

/// What the page allows: its own scripts, styles, images (and the `data:` images of Swagger
/// UI's stylesheet), and requests to its own origin (the document and "Try it out"). No
/// inline script, no plugin, no form posted elsewhere, no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

/// The files' caching: a year, never revalidated. Their URLs carry [`asset_version`].
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// A file the page loads, served at `/docs/{asset}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
enum Asset {
    /// Swagger UI and its dependencies, one script.
    #[schema(rename = "swagger-ui-bundle.js")]
    Bundle,
    /// Swagger UI's stylesheet.
    #[schema(rename = "swagger-ui.css")]
    Stylesheet,
    /// The start-up script: which document, and the options.
    #[schema(rename = "init.js")]
    Init,
}

impl Asset {
    /// Every asset.
    const ALL: [Self; 3] = [Self::Stylesheet, Self::Bundle, Self::Init];

    /// The name in its URL (the `{asset}` segment).
    const fn name(self) -> &'static str {
        match self {
            Self::Bundle => "swagger-ui-bundle.js",
            Self::Stylesheet => "swagger-ui.css",
            Self::Init => "init.js",
        }
    }

    const fn content_type(self) -> &'static str {
        match self {
            Self::Bundle | Self::Init => "text/javascript; charset=utf-8",
            Self::Stylesheet => "text/css; charset=utf-8",
        }
    }

    const fn bytes(self) -> &'static [u8] {
        match self {
            Self::Bundle => include_bytes!("../../../vendor/swagger-ui-dist/swagger-ui-bundle.js"),
            Self::Stylesheet => include_bytes!("../../../vendor/swagger-ui-dist/swagger-ui.css"),
            Self::Init => INIT_JS,
        }
    }

    fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|asset| asset.name() == name)
    }

    /// Its URL relative to the page (`/docs` is a file name, so `docs/` is the folder).
    fn href(self) -> String {
        let folder = DOCS.trim_start_matches('/');
        format!("{folder}/{}?v={}", self.name(), asset_version())
    }
}

/// The `?v=` of every asset URL: the Swagger UI version and a hash of the start-up script,
/// so that either changing gives new URLs.
fn asset_version() -> String {
    format!("{SWAGGER_UI_VERSION}-{INIT_JS_HASH:016x}")
}

/// FNV-1a (64 bits) of the start-up script, computed at compile time.
const INIT_JS_HASH: u64 = {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < INIT_JS.len() {
        hash ^= INIT_JS[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
};

/// The page: Swagger UI's stylesheet and scripts, and the element it renders into.
fn page() -> String {
    let (stylesheet, bundle, init) = (
        Asset::Stylesheet.href(),
        Asset::Bundle.href(),
        Asset::Init.href(),
    );
    format!(
        "<!doctype html>\n\
         <html lang=\"en\">\n\
         <head>\n\
         <meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>user-service API</title>\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         <link rel=\"stylesheet\" href=\"{stylesheet}\">\n\
         </head>\n\
         <body>\n\
         <noscript>This page needs JavaScript. The OpenAPI document it renders is \
         <a href=\"openapi.json\">openapi.json</a>.</noscript>\n\
         <div id=\"swagger-ui\"></div>\n\
         <script src=\"{bundle}\"></script>\n\
         <script src=\"{init}\"></script>\n\
         </body>\n\
         </html>\n"
    )
}

/// `GET /docs`.
#[utoipa::path(
    get,
    path = DOCS,
    tag = "docs",
    summary = "Interactive API docs (Swagger UI) for this document",
    description = "Every operation with its parameters, schemas, examples and problem codes, \
        and \"Try it out\", which sends the request to this service. The page and its files \
        are served by the service itself (`/docs/{asset}`); nothing is loaded from elsewhere.",
    responses((status = 200, description = "HTML", content_type = "text/html"))
)]
pub(crate) async fn docs() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        nosniff(),
        page(),
    )
        .into_response()
}

/// `GET /docs/{asset}`.
#[utoipa::path(
    get,
    path = DOCS_ASSET,
    tag = "docs",
    summary = "A file of the interactive API docs page",
    description = "Cached for a year (`immutable`): the page's URLs carry a `v` query \
        parameter that changes with the file.",
    params(("asset" = inline(Asset), Path, description = "The file's name")),
    responses(
        (status = 200, description = "The file",
            content(("text/javascript"), ("text/css"))),
        (status = 404, description = "No such file (`not_found`)",
            body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn docs_asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let asset = Asset::named(&name).ok_or(ApiError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, asset.content_type()),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        nosniff(),
        asset.bytes(),
    )
        .into_response())
}

/// `X-Content-Type-Options: nosniff`: a browser takes each file for what its type says.
fn nosniff() -> [(HeaderName, HeaderValue); 1] {
    [(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    )]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_every_asset_by_a_relative_url() {
        let page = page();
        for asset in Asset::ALL {
            let href = format!("\"docs/{}?v={}\"", asset.name(), asset_version());
            assert!(page.contains(&href), "{href} in {page}");
        }
        assert!(!page.contains("=\"/"), "no root-relative URL: {page}");
        assert!(!page.contains("//"), "no absolute URL: {page}");
        assert!(!page.contains("<script>"), "no inline script: {page}");
    }

    #[test]
    fn the_vendored_version_is_a_version() {
        assert!(
            SWAGGER_UI_VERSION
                .split('.')
                .all(|part| part.parse::<u32>().is_ok())
                && SWAGGER_UI_VERSION.split('.').count() == 3,
            "{SWAGGER_UI_VERSION:?}"
        );
    }

    #[test]
    fn the_document_names_exactly_the_assets_served() {
        let document: serde_json::Value =
            serde_json::from_str(&crate::http::openapi::document_json())
                .expect("the document is JSON");
        let parameter = &document["paths"][DOCS_ASSET]["get"]["parameters"][0];
        assert_eq!(parameter["name"], "asset");
        let named: Vec<&str> = parameter["schema"]["enum"]
            .as_array()
            .expect("the asset is one of an enum")
            .iter()
            .filter_map(|name| name.as_str())
            .collect();
        let mut served: Vec<&str> = Asset::ALL.into_iter().map(Asset::name).collect();
        served.sort_unstable();
        let mut named = named;
        named.sort_unstable();
        assert_eq!(named, served);
    }
}
