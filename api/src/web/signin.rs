//! Signing in and out: a one-time link (`/login?code=…`), or a token pasted
//! once and turned into a session (the browser never keeps the token).

use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::sessions::{self, Opened};
use crate::state::AppState;

use super::layout::{page, Section};
use super::{cookie, SignedIn, WebResult, SESSION_COOKIE};

/// The cookie that ties a sign-in form to the browser that was shown it.
const LOGIN_COOKIE: &str = "slipway_login";

#[derive(Deserialize)]
pub(super) struct LoginQuery {
    code: Option<String>,
    next: Option<String>,
}

/// `GET /login`: opens a session with a sign-in link's code, or shows the
/// form that takes a token.
pub(super) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if let Some(code) = query.code {
        return match sessions::open_with_code(&state, &code).await {
            Ok(opened) => signed_in(&state, &headers, opened, next),
            Err(err) => form(&state, next, Some(err.message())),
        };
    }
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Ok(Some(_)) = sessions::find(&state, secret).await {
            return Redirect::to(next).into_response();
        }
    }
    form(&state, next, None)
}

/// The sign-in form, with a fresh login cookie and its twin in the form.
fn form(state: &AppState, next: &str, error: Option<&str>) -> Response {
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
            p.muted { "Started with " code { "slipway up" } "? Open the sign-in link it printed." }
        }
    };
    let cookie = format!(
        "{LOGIN_COOKIE}={nonce}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        secure(state)
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
    token: String,
    login: String,
    next: Option<String>,
}

/// `POST /login`: a token becomes a session.
pub(super) async fn submit(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(input): Form<LoginForm>,
) -> Response {
    let next = safe_next(input.next.as_deref());
    let same: bool = cookie(&headers, LOGIN_COOKIE)
        .is_some_and(|nonce| nonce.as_bytes().ct_eq(input.login.as_bytes()).into());
    if !same || !super::same_origin(&headers) {
        return form(
            &state,
            next,
            Some("this sign-in form has expired: try again"),
        );
    }
    match sessions::open_with_token(&state, &input.token).await {
        Ok(opened) => signed_in(&state, &headers, opened, next),
        Err(err) => form(&state, next, Some(err.message())),
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
    who.check_form(&headers, &input.csrf)?;
    sessions::end(&state, &who.0.id).await?;
    let cookie = format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{}",
        secure(&state)
    );
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to("/login")).into_response())
}

fn signed_in(state: &AppState, headers: &HeaderMap, opened: Opened, next: &str) -> Response {
    let max_age = (opened.session.expires_at - state.clock.now())
        .num_seconds()
        .max(0);
    let mut secure = secure(state);
    if headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto == "https")
    {
        secure = "; Secure";
    }
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
        opened.secret
    );
    let mut response = Redirect::to(next).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        headers.append(header::SET_COOKIE, value);
    }
    headers.append(
        header::SET_COOKIE,
        HeaderValue::from_static("slipway_login=; Path=/login; Max-Age=0"),
    );
    response
}

/// `; Secure` when people reach the API over TLS.
fn secure(state: &AppState) -> &'static str {
    match &state.settings.public_url {
        Some(url) if url.starts_with("https://") => "; Secure",
        _ => "",
    }
}

/// Where to go after signing in: a path of this site, never another site.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
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
        assert_eq!(safe_next(None), "/");
    }
}
