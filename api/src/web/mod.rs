//! The web UI: server-rendered pages (maud) on the API's own origin, for the
//! people who deploy and watch deployments.
//!
//! Pages read through the same domain functions and role checks as GraphQL,
//! and their forms call the code of the same mutations. Live parts arrive as
//! server-sent events carrying HTML fragments, fed by the event stream
//! behind the subscriptions; `assets/app.js` swaps them in, and every page
//! reads fine without it. Browsers sign in to a server-side session
//! ([`crate::sessions`]); every form carries the session's CSRF token, and
//! every answer the security headers of [`security_headers`]. Every form
//! posted is recorded in the audit log (`audited`).

mod assets;
mod audited;
mod deployment;
mod layout;
mod live;
mod manage;
mod overview;
mod plan;
mod signin;

use axum::extract::{FromRequestParts, Request};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::auth::Role;
use crate::error::ApiError;
use crate::sessions::{self, Session};
use crate::state::AppState;

pub(crate) use assets::graphiql_page;

/// The cookie that holds a session's secret.
const SESSION_COOKIE: &str = "slipway_session";

/// The web UI's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(overview::overview))
        .route("/live", get(overview::live))
        .route("/login", get(signin::show).post(signin::submit))
        .route("/logout", post(signin::logout))
        .route("/apps/{app}", get(overview::application))
        .route("/apps/{app}/{env}", get(overview::environment))
        .route("/apps/{app}/{env}/live", get(overview::environment_live))
        .route(
            "/apps/{app}/{env}/deploy",
            get(manage::deploy_page).post(manage::deploy),
        )
        .route("/apps/{app}/{env}/lock", post(manage::lock))
        .route("/apps/{app}/{env}/unlock", post(manage::unlock))
        .route("/apps/{app}/{env}/resume", post(manage::resume))
        .route("/apps/{app}/{env}/rollback", post(manage::rollback))
        .route("/deployments/{id}", get(deployment::show))
        .route("/deployments/{id}/live", get(deployment::live))
        .route("/deployments/{id}/log.txt", get(deployment::raw))
        .route("/deployments/{id}/cancel", post(deployment::cancel))
        .route("/deployments/{id}/approve", post(deployment::approve))
        .route("/deployments/{id}/reject", post(deployment::reject))
        .route(
            "/deployments/{id}/override-freeze",
            post(deployment::override_freeze),
        )
        .route("/deployments/{id}/redeploy", post(deployment::redeploy))
        .route("/plans", post(plan::request))
        .route("/plans/{id}", get(plan::show))
        .route("/plans/{id}/live", get(plan::live))
        .route("/runners", get(manage::runners))
        .route("/setup", get(manage::setup))
        .route("/setup/applications", post(manage::create_application))
        .route("/setup/environments", post(manage::create_environment))
        .route("/assets/{file}", get(assets::serve))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            audited::record,
        ))
        .layer(middleware::from_fn(security_headers))
        .with_state(state)
}

/// The policy of every page: scripts, styles and connections from this
/// origin only, no inline script, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
     object-src 'none'";

/// Adds the security headers to an answer that has not set its own policy;
/// pages (which hold the session's CSRF token) are never cached.
pub(crate) async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    add_security_headers(headers, CSP);
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

pub(crate) fn add_security_headers(headers: &mut HeaderMap, csp: &'static str) {
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(csp));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A person signed in to the web UI: every page but sign-in takes one, and a
/// browser without a session is sent to sign in first (and back afterwards).
#[derive(Clone)]
pub(crate) struct SignedIn {
    pub session: Session,
    /// The request came from a page of this site, as far as the browser
    /// says (`Origin`, when it sends one, names this site).
    from_here: bool,
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let found = match cookie(&parts.headers, SESSION_COOKIE) {
            Some(secret) => sessions::find(state, secret).await,
            None => Ok(None),
        };
        match found {
            Ok(Some(session)) => {
                if let Some(acting) = parts.extensions.get::<audited::Acting>() {
                    acting.set(&session.subject, session.role);
                }
                Ok(SignedIn {
                    session,
                    from_here: same_origin(state, &parts.headers),
                })
            }
            Ok(None) => {
                let mut answer = to_sign_in(parts.uri.path_and_query().map_or("/", |p| p.as_str()));
                let refused = ApiError::Unauthenticated("not signed in".into());
                answer
                    .extensions_mut()
                    .insert(audited::Failure::of(&refused));
                Err(answer)
            }
            Err(err) => Err(WebError(err).into_response()),
        }
    }
}

/// Sends a browser to sign in, and back to `next` afterwards.
pub(crate) fn to_sign_in(next: &str) -> Response {
    Redirect::to(&format!("/login?next={}", encode(next))).into_response()
}

/// A form that carries nothing but the session's CSRF token.
#[derive(serde::Deserialize)]
pub(crate) struct CsrfForm {
    pub csrf: String,
}

/// Where an environment's page is.
pub(crate) fn environment_path(app: &str, env: &str) -> String {
    format!("/apps/{}/{}", encode(app), encode(env))
}

impl SignedIn {
    /// Whether the person's role is among `roles` (see [`crate::auth::roles`]).
    pub(crate) fn may(&self, roles: &[Role]) -> bool {
        roles.contains(&self.session.role)
    }

    /// Refuses what the person's role does not allow, as GraphQL does.
    pub(crate) fn require(&self, roles: &[Role]) -> Result<(), WebError> {
        if self.may(roles) {
            Ok(())
        } else {
            Err(WebError(ApiError::Forbidden(format!(
                "the {} role may not do this",
                self.session.role.as_str()
            ))))
        }
    }

    /// Checks a form's CSRF token (and, when the browser says where the form
    /// came from, that it came from here).
    pub(crate) fn check_form(&self, token: &str) -> Result<(), WebError> {
        let same_token: bool = self.session.csrf.as_bytes().ct_eq(token.as_bytes()).into();
        if same_token && self.from_here {
            Ok(())
        } else {
            Err(WebError(ApiError::Forbidden(
                "this form did not come from this Slipway page, or the page is older than \
                 your session: reload it and try again"
                    .into(),
            )))
        }
    }

    pub(crate) fn subject(&self) -> &str {
        &self.session.subject
    }
}

/// `Origin`, when a browser sends it, names this site: the API's public URL
/// when it is set (a proxy in front may rewrite `Host`), else `Host`.
fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    match &state.settings.public_url {
        Some(public) => {
            let public = public.trim_end_matches('/');
            let public_origin = public
                .split_once("://")
                .map(|(scheme, rest)| {
                    format!("{scheme}://{}", rest.split('/').next().unwrap_or(""))
                })
                .unwrap_or_default();
            origin == public_origin
        }
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            origin
                .split_once("://")
                .is_some_and(|(_, origin_host)| origin_host == host)
        }
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Percent-encodes a URL component.
pub(crate) fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// An error as a page: its status and its sentence.
#[derive(Debug)]
pub(crate) struct WebError(pub ApiError);

impl From<ApiError> for WebError {
    fn from(err: ApiError) -> Self {
        WebError(err)
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::BadInput(_) | ApiError::Lagged(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (status, layout::error_page(status, self.0.message())).into_response();
        response
            .extensions_mut()
            .insert(audited::Failure::of(&self.0));
        response
    }
}

pub(crate) type WebResult<T> = Result<T, WebError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; slipway_session=abc; b=2"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "slipway"), None);
    }

    #[test]
    fn a_form_from_another_origin_is_not_same_origin() {
        let state = |public_url: Option<&str>| {
            let db = sea_orm::DatabaseConnection::Disconnected;
            let settings = crate::Settings {
                public_url: public_url.map(str::to_owned),
                ..crate::Settings::default()
            };
            AppState::new(
                db,
                crate::auth::Keys::new(b"0123456789abcdef"),
                crate::Clock::system(),
                settings,
            )
        };
        let local = state(None);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8700"));
        assert!(same_origin(&local, &headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8700"),
        );
        assert!(same_origin(&local, &headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&local, &headers));

        // Behind a proxy the public URL names the site, whatever `Host` says.
        let proxied = state(Some("https://slipway.example.com/"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://slipway.example.com"),
        );
        assert!(same_origin(&proxied, &headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8700"),
        );
        assert!(!same_origin(&proxied, &headers));
    }

    #[test]
    fn encoding_keeps_nothing_that_breaks_a_query() {
        assert_eq!(encode("/apps/web?x=1&y"), "%2Fapps%2Fweb%3Fx%3D1%26y");
    }
}
