//! Browser sessions of the web UI and the one-time sign-in codes that open
//! them.
//!
//! A session is opened by a token (pasted once on the sign-in page; the
//! browser keeps only the session's cookie) or by a one-time code from a
//! sign-in link (`slipway up` prints one). The cookie holds a random secret;
//! the database holds its SHA-256, so reading the table signs nobody in.
//! Sessions expire, and signing out ends one for good.

use std::io::Read;

use chrono::{DateTime, Duration, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use sha2::{Digest, Sha256};

use crate::auth::Role;
use crate::db::entities::{session, sign_in_code};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// How long a session lasts at most (never longer than the token that opened it).
pub const SESSION_TTL: Duration = Duration::hours(12);
/// How long a sign-in link may wait to be opened.
pub const CODE_TTL: Duration = Duration::minutes(15);

/// A signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// SHA-256 (hex) of the cookie's secret.
    pub id: String,
    pub subject: String,
    pub role: Role,
    /// The token its forms carry.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// What a browser is given when a session opens: the cookie's secret (shown
/// once) and the session.
#[derive(Debug)]
pub struct Opened {
    pub secret: String,
    pub session: Session,
}

/// Opens a session for the bearer of `token`, lasting no longer than it.
pub async fn open_with_token(state: &AppState, token: &str) -> ApiResult<Opened> {
    let claims = state
        .keys
        .verify(token.trim())
        .map_err(ApiError::Unauthenticated)?;
    let now = state.clock.now();
    if claims.is_expired(now) {
        return Err(ApiError::Unauthenticated("the token has expired".into()));
    }
    let until = claims.expires_at().min(now + SESSION_TTL);
    open(state, &claims.sub, claims.role, until).await
}

/// A one-time sign-in code for `subject` with `role`, valid for [`CODE_TTL`].
pub async fn create_code(
    state: &AppState,
    subject: &str,
    role: Role,
    by: &str,
) -> ApiResult<(String, DateTime<Utc>)> {
    signs_in(role)?;
    let code = random_secret()?;
    let now = state.clock.now();
    let expires_at = now + CODE_TTL;
    sign_in_code::ActiveModel {
        id: Set(digest(&code)),
        subject: Set(subject.to_owned()),
        role: Set(role.as_str().to_owned()),
        created_by: Set(by.to_owned()),
        created_at: Set(now),
        expires_at: Set(expires_at),
        used_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    Ok((code, expires_at))
}

/// Opens a session with a sign-in code, which then is used up: a second use,
/// or one after it expired, is refused.
pub async fn open_with_code(state: &AppState, code: &str) -> ApiResult<Opened> {
    let now = state.clock.now();
    let used = sign_in_code::Entity::update_many()
        .col_expr(sign_in_code::Column::UsedAt, Expr::value(now))
        .filter(sign_in_code::Column::Id.eq(digest(code.trim())))
        .filter(sign_in_code::Column::UsedAt.is_null())
        .filter(sign_in_code::Column::ExpiresAt.gt(now))
        .exec_with_returning(&state.db)
        .await?
        .pop()
        .ok_or_else(|| {
            ApiError::Unauthenticated(
                "this sign-in link has been used or has expired: ask for a new one".into(),
            )
        })?;
    let role = parse_role(&used.role)?;
    open(state, &used.subject, role, now + SESSION_TTL).await
}

/// The session whose cookie holds `secret`, while it lasts.
pub async fn find(state: &AppState, secret: &str) -> ApiResult<Option<Session>> {
    let now = state.clock.now();
    let Some(row) = session::Entity::find_by_id(digest(secret))
        .filter(session::Column::EndedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(now))
        .one(&state.db)
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(Session {
        role: parse_role(&row.role)?,
        id: row.id,
        subject: row.subject,
        csrf: row.csrf,
        expires_at: row.expires_at,
    }))
}

/// Whether session `id` (the digest) still lasts: not signed out, not expired.
pub async fn lasts(state: &AppState, id: &str) -> ApiResult<bool> {
    Ok(session::Entity::find_by_id(id)
        .filter(session::Column::EndedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(state.clock.now()))
        .one(&state.db)
        .await?
        .is_some())
}

/// Signs a session out; it cannot be used again.
pub async fn end(state: &AppState, id: &str) -> ApiResult<()> {
    session::Entity::update_many()
        .col_expr(session::Column::EndedAt, Expr::value(state.clock.now()))
        .filter(session::Column::Id.eq(id))
        .filter(session::Column::EndedAt.is_null())
        .exec(&state.db)
        .await?;
    Ok(())
}

async fn open(
    state: &AppState,
    subject: &str,
    role: Role,
    until: DateTime<Utc>,
) -> ApiResult<Opened> {
    signs_in(role)?;
    prune(state).await?;
    let secret = random_secret()?;
    let session = Session {
        id: digest(&secret),
        subject: subject.to_owned(),
        role,
        csrf: random_secret()?,
        expires_at: until,
    };
    session::ActiveModel {
        id: Set(session.id.clone()),
        subject: Set(session.subject.clone()),
        role: Set(role.as_str().to_owned()),
        csrf: Set(session.csrf.clone()),
        created_at: Set(state.clock.now()),
        expires_at: Set(until),
        ended_at: Set(None),
    }
    .insert(&state.db)
    .await?;
    tracing::info!(subject, role = role.as_str(), "signed in");
    Ok(Opened { secret, session })
}

/// Deletes the sessions and codes that ended or expired a day ago or more;
/// each sign-in does, so the tables stay as small as their use.
async fn prune(state: &AppState) -> ApiResult<()> {
    let before = state.clock.now() - Duration::days(1);
    session::Entity::delete_many()
        .filter(
            session::Column::ExpiresAt
                .lt(before)
                .or(session::Column::EndedAt.lt(before)),
        )
        .exec(&state.db)
        .await?;
    sign_in_code::Entity::delete_many()
        .filter(sign_in_code::Column::ExpiresAt.lt(before))
        .exec(&state.db)
        .await?;
    Ok(())
}

/// People sign in; runners and providers do not.
fn signs_in(role: Role) -> ApiResult<()> {
    match role {
        Role::Admin | Role::Deployer | Role::Viewer => Ok(()),
        Role::Runner | Role::Provider => Err(ApiError::Forbidden(format!(
            "a {} token cannot sign in to the web UI: use a token for a person \
             (`slipway token --role viewer --subject NAME`)",
            role.as_str()
        ))),
    }
}

fn parse_role(text: &str) -> ApiResult<Role> {
    text.parse().map_err(ApiError::internal)
}

/// SHA-256 of a secret, hex.
fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// 32 random bytes from the kernel, URL-safe base64.
pub fn random_secret() -> ApiResult<String> {
    use base64::Engine as _;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// `N` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> ApiResult<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|err| ApiError::internal(format!("cannot read /dev/urandom: {err}")))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_secrets_differ_and_are_long() {
        let a = random_secret().unwrap();
        let b = random_secret().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn a_digest_is_not_the_secret() {
        let secret = random_secret().unwrap();
        assert_ne!(digest(&secret), secret);
        assert_eq!(digest(&secret).len(), 64);
    }
}
