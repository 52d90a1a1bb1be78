//! JWT auth: tokens, roles and the guard every GraphQL field checks.
//!
//! Tokens are HS256 only (any other `alg`, `none` included, is refused), must
//! carry `exp`, and name a subject and a role. A token is expired from the
//! second `exp` names: requests are refused then, and WebSockets closed.

use async_graphql::{Context, Enum, Guard};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// What a token allows. Every field of the schema names the roles it admits.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything a deployer may do, and manage applications and environments.
    Admin,
    /// Read; create and cancel deployments; lock environments.
    Deployer,
    /// Read only.
    Viewer,
    /// A runner: claims deployments and reports on them.
    Runner,
    /// A hook provider: creates deployments.
    Provider,
}

impl std::str::FromStr for Role {
    type Err = String;

    /// A role by the name [`Role::as_str`] gives it.
    fn from_str(name: &str) -> Result<Self, String> {
        [
            Role::Admin,
            Role::Deployer,
            Role::Viewer,
            Role::Runner,
            Role::Provider,
        ]
        .into_iter()
        .find(|role| role.as_str() == name)
        .ok_or_else(|| format!("no role is named {name:?}"))
    }
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Deployer => "deployer",
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Provider => "provider",
        }
    }
}

/// Who may do what: the sets that fields name in their guards.
pub mod roles {
    use super::Role::{self, *};

    /// Reading applications, environments, deployments and logs.
    pub const READ: &[Role] = &[Admin, Deployer, Viewer, Runner, Provider];
    /// Creating deployments.
    pub const DEPLOY: &[Role] = &[Admin, Deployer, Provider];
    /// Cancelling deployments, locking and unlocking environments.
    pub const OPERATE: &[Role] = &[Admin, Deployer];
    /// Managing applications and environments.
    pub const ADMIN: &[Role] = &[Admin];
    /// Claiming deployments and reporting on them.
    pub const RUNNER: &[Role] = &[Runner];
    /// Reporting what the forges say (CI checks).
    pub const PROVIDER: &[Role] = &[Provider];
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
}

impl Claims {
    /// The moment the token stops being valid.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at()
    }
}

/// The caller of one request or WebSocket connection.
#[derive(Clone, Debug)]
pub enum Auth {
    Anonymous,
    /// A token was presented and refused; the reason is told to the caller.
    Invalid(String),
    Valid(Claims),
}

impl Auth {
    /// The verified claims, or the reason there are none.
    pub fn claims(&self) -> Result<&Claims, ApiError> {
        match self {
            Auth::Valid(claims) => Ok(claims),
            Auth::Anonymous => Err(ApiError::Unauthenticated(
                "authentication required: send `Authorization: Bearer <token>`".into(),
            )),
            Auth::Invalid(reason) => Err(ApiError::Unauthenticated(reason.clone())),
        }
    }
}

/// Signing and verification keys derived from the shared secret.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

impl Keys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Expiry is judged by `Claims::is_expired`, the one rule that field
        // guards and WebSockets apply as well.
        validation.validate_exp = false;
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Signs a token for `subject` with `role`, valid for `ttl` from `now`.
    pub fn issue(&self, subject: &str, role: Role, ttl: Duration, now: DateTime<Utc>) -> String {
        let claims = Claims {
            sub: subject.to_owned(),
            role,
            exp: (now + ttl).timestamp(),
            iat: now.timestamp(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    /// Verifies a token and returns its claims, or why it was refused.
    pub fn verify(&self, token: &str) -> Result<Claims, String> {
        use jsonwebtoken::errors::ErrorKind;
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => "token signature is invalid".to_owned(),
                ErrorKind::InvalidAlgorithm => "token algorithm must be HS256".to_owned(),
                ErrorKind::MissingRequiredClaim(claim) => format!("token has no `{claim}` claim"),
                ErrorKind::Json(_) => "token claims are malformed (need sub, role, exp)".to_owned(),
                _ => "token is malformed or not an HS256 JWT".to_owned(),
            })?;
        if claims.is_expired(Utc::now()) {
            return Err(EXPIRED.to_owned());
        }
        Ok(claims)
    }

    /// Authenticates an `Authorization` header value (`Bearer <jwt>`).
    pub fn authenticate(&self, header: Option<&str>) -> Auth {
        let Some(header) = header else {
            return Auth::Anonymous;
        };
        let Some(token) = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
        else {
            return Auth::Invalid("the Authorization header must be `Bearer <token>`".into());
        };
        match self.verify(token.trim()) {
            Ok(claims) => Auth::Valid(claims),
            Err(reason) => Auth::Invalid(reason),
        }
    }
}

/// Parses a time-to-live such as `90s`, `15m`, `12h` or `30d`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 90s, 15m, 12h or 30d"))?;
    let seconds = match unit {
        "s" | "" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h or d)"
            ))
        }
    };
    Ok(Duration::seconds(number * seconds))
}

/// Why an expired token is refused.
pub const EXPIRED: &str = "token expired";

/// A field guard: the caller must be authenticated with one of `allowed`,
/// by a token that has not expired since it was verified (a WebSocket's token
/// is verified once, when the socket opens).
pub struct RoleGuard {
    allowed: &'static [Role],
}

impl RoleGuard {
    pub fn new(allowed: &'static [Role]) -> Self {
        Self { allowed }
    }
}

impl Guard for RoleGuard {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let claims = caller(ctx)?;
        let now = ctx
            .data_opt::<AppState>()
            .map_or_else(Utc::now, |state| state.clock.now());
        if claims.is_expired(now) {
            return Err(ApiError::Unauthenticated(EXPIRED.into()).into());
        }
        if self.allowed.contains(&claims.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "role `{}` may not do this (allowed: {})",
                claims.role.as_str(),
                self.allowed
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .into())
        }
    }
}

/// The verified claims of the caller.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<&'a Claims, ApiError> {
    match ctx.data_opt::<Auth>() {
        Some(auth) => auth.claims(),
        None => Auth::Anonymous.claims(),
    }
}
