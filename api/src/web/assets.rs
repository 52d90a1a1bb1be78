//! The web UI's assets, embedded in the binary and served under names that
//! carry a hash of their content (`/assets/app.3f2c1a9b.css`), so a browser
//! may keep them for a year and still never runs a stale one. GraphiQL and
//! the React it runs on are vendored in `assets/vendor` (with their licences):
//! nothing is fetched from a CDN.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    /// The name pages ask for (`app.css`).
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        name: "graphiql.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/graphiql.js"),
    },
    Asset {
        name: "react.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/react.production.min.js"),
    },
    Asset {
        name: "react-dom.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/react-dom.production.min.js"),
    },
    Asset {
        name: "graphiql-ui.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/vendor/graphiql.min.js"),
    },
    Asset {
        name: "graphiql-ui.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/vendor/graphiql.min.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_bytes!("../../assets/icon.svg"),
    },
];

struct Served {
    /// By name → its hashed name.
    urls: HashMap<&'static str, String>,
    /// By hashed name → the asset.
    files: HashMap<String, &'static Asset>,
}

fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let mut urls = HashMap::new();
        let mut files = HashMap::new();
        for asset in ASSETS {
            let hash = hex::encode(&Sha256::digest(asset.body)[..6]);
            let (stem, ext) = asset.name.rsplit_once('.').unwrap_or((asset.name, ""));
            let file = format!("{stem}.{hash}.{ext}");
            urls.insert(asset.name, format!("/assets/{file}"));
            files.insert(file, asset);
        }
        Served { urls, files }
    })
}

/// Where a page finds asset `name`.
pub(crate) fn url(name: &str) -> &'static str {
    served()
        .urls
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("no asset named {name}"))
}

/// `GET /assets/{file}`: an asset by its hashed name, cached for good.
pub(super) async fn serve(Path(file): Path<String>) -> Response {
    let Some(asset) = served().files.get(&file) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
        ],
        asset.body,
    )
        .into_response()
}

/// GraphiQL drives GraphQL from the browser; React sets inline styles, so its
/// page allows them (scripts stay this origin's only).
const GRAPHIQL_CSP: &str =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; \
     frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// GraphiQL, from the embedded assets.
pub(crate) fn graphiql_page() -> Response {
    let page = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "GraphiQL · Slipway" }
                link rel="icon" href=(url("icon.svg"));
                link rel="stylesheet" href=(url("graphiql-ui.css"));
                link rel="stylesheet" href=(url("app.css"));
            }
            body.graphiql {
                div #graphiql data-endpoint="/graphql" data-subscriptions="/graphql/ws" {
                    p { "GraphiQL needs JavaScript." }
                }
                script src=(url("react.js")) {}
                script src=(url("react-dom.js")) {}
                script src=(url("graphiql-ui.js")) {}
                script src=(url("graphiql.js")) {}
            }
        }
    };
    let mut response = Html(page.into_string()).into_response();
    super::add_security_headers(response.headers_mut(), GRAPHIQL_CSP);
    response
}
