//! Signing in and out: a one-time link (`/login?code=…`), or a token pasted
//! once and turned into a session (the browser never keeps the token).

use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::sessions::{self, Opened};
use crate::state::AppState;

use super::audited::{Acting, Failure};
use super::layout::{page, Section};
use super::{cookie, SignedIn, WebResult, SESSION_COOKIE};

/// The cookie that ties a sign-in form to the browser that was shown it.
const LOGIN_COOKIE: &str = "slipway_login";

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    code: Option<String>,
    next: Option<String>,
}

/// `GET /login`: the sign-in form — with a sign-in link's code, a button
/// that spends it (a GET never does: a link previewer would), otherwise a
/// field for a token. A browser signed in already goes on to `next`.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if query.code.is_none() {
        if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
            if let Ok(Some(_)) = sessions::find(&state, secret).await {
                return Redirect::to(next).into_response();
            }
        }
    }
    form(&state, &headers, next, query.code.as_deref(), None)
}

/// The sign-in form, with a fresh login cookie and its twin in the form.
fn form(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    code: Option<&str>,
    error: Option<&str>,
) -> Response {
    let Ok(nonce) = sessions::random_secret() else {
        return super::WebError(ApiError::Internal).into_response();
    };
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let body = html! {
        div.signin.panel {
            h1 { "Sign in to Slipway" }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            form method="post" action="/login" {
                input type="hidden" name="login" value=(nonce);
                input type="hidden" name="next" value=(next);
                @if let Some(code) = code {
                    input type="hidden" name="code" value=(code);
                    p { "This sign-in link works once. Continue to open a session in this browser." }
                    button.primary type="submit" { "Continue" }
                } @else {
                    div.field {
                        label for="token" { "Token" }
                        input #token type="password" name="token" autocomplete="off" required;
                        small {
                            "An admin makes one with "
                            code { "slipway token --role viewer --subject NAME" }
                            ". It is turned into a session here and not kept in the browser."
                        }
                    }
                    button.primary type="submit" { "Sign in" }
                }
            }
            @if code.is_none() {
                p.muted { "Started with " code { "slipway up" } "? Open the sign-in link it printed." }
            }
        }
    };
    let cookie = format!(
        "{LOGIN_COOKIE}={nonce}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        secure(state, headers)
    );
    (
        status,
        [(header::SET_COOKIE, cookie)],
        page("Sign in", None, Section::None, body),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    token: Option<String>,
    code: Option<String>,
    login: String,
    next: Option<String>,
}

/// `POST /login`: a sign-in link's code or a token becomes a session.
pub(super) async fn submit(
    State(state): State<AppState>,
    acting: Option<Extension<Acting>>,
    headers: HeaderMap,
    Form(input): Form<LoginForm>,
) -> Response {
    let next = safe_next(input.next.as_deref());
    let code = input.code.as_deref().filter(|c| !c.is_empty());
    let same: bool = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|nonce| nonce.as_bytes().ct_eq(input.login.as_bytes()).into());
    if !same || !super::same_origin(&state, &headers) {
        let expired = "this sign-in form has expired: try again";
        let mut answer = form(&state, &headers, next, code, Some(expired));
        let refused = ApiError::Forbidden(expired.into());
        answer.extensions_mut().insert(Failure::of(&refused));
        return answer;
    }
    let opened = match (code, input.token.as_deref()) {
        (Some(code), _) => sessions::open_with_code(&state, code).await,
        (None, Some(token)) => sessions::open_with_token(&state, token).await,
        (None, None) => Err(ApiError::BadInput("give a token to sign in".into())),
    };
    match opened {
        Ok(opened) => {
            if let Some(Extension(acting)) = acting {
                acting.set(&opened.session.subject, opened.session.role);
            }
            signed_in(&state, &headers, opened, next)
        }
        // A code that does not open a session will not later: show the
        // token form.
        Err(err) => {
            let mut answer = form(&state, &headers, next, None, Some(err.message()));
            answer.extensions_mut().insert(Failure::of(&err));
            answer
        }
    }
}

#[derive(Deserialize)]
pub(super) struct LogoutForm {
    csrf: String,
}

/// `POST /logout`: ends the session for good.
pub(super) async fn logout(
    State(state): State<AppState>,
    who: SignedIn,
    headers: HeaderMap,
    Form(input): Form<LogoutForm>,
) -> WebResult<Response> {
    who.check_form(&input.csrf)?;
    sessions::end(&state, &who.session.id).await?;
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state, &headers)
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

fn signed_in(state: &AppState, headers: &HeaderMap, opened: Opened, next: &str) -> Response {
    let max_age = (opened.session.expires_at - state.clock.now())
        .num_seconds()
        .max(0);
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
        opened.secret,
        secure(state, headers)
    );
    let mut response = Redirect::to(next).into_response();
    let set = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        set.append(header::SET_COOKIE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0")) {
        set.append(header::SET_COOKIE, value);
    }
    response
}

/// `; Secure` when people reach the API over TLS: its public URL is https,
/// or the proxy in front says the request came so.
fn secure(state: &AppState, headers: &HeaderMap) -> &'static str {
    let public_https = state
        .settings
        .public_url
        .as_deref()
        .is_some_and(|url| url.starts_with("https://"));
    let forwarded_https = headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto == "https");
    if public_https || forwarded_https {
        "; Secure"
    } else {
        ""
    }
}

/// Where to go after signing in: a path of this site, never another site.
/// Only visible ASCII is taken: browsers drop tabs and newlines from a
/// `Location`, which would turn `/\t/evil.example` into `//evil.example`.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && path.bytes().all(|b| (0x21..=0x7e).contains(&b))
                && !path.contains('\\')
                && !path.starts_with("/login") =>
        {
            path
        }
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn only_paths_of_this_site_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some("/apps/web")), "/apps/web");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(Some("/apps/web?x=1 2")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
