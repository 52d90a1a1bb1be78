//! Command-line configuration of `slipway-api`. Every flag can also be set from
//! a `SLIPWAY_*` environment variable; secrets are read by
//! [`slipway_secret::read`] (from the flag or its file; trailing newlines are
//! not part of a secret), and `Debug` never shows one.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use slipway_secret::Secret;

use crate::auth::Role;

#[derive(Parser, Debug)]
#[command(
    name = "slipway-api",
    version,
    about = "Slipway's GraphQL deployment API"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub serve: ServeConfig,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the API (the default).
    Serve(Box<ServeConfig>),
    /// Print the GraphQL schema (SDL), as `schema.graphql` holds it.
    Schema,
    /// Print a signed token for a role.
    Token(TokenConfig),
    /// Bring the database schema up to date and exit.
    Migrate(DatabaseConfig),
}

#[derive(Args, Debug, Clone)]
pub struct ServeConfig {
    /// Address to listen on.
    #[arg(long, env = "SLIPWAY_LISTEN", default_value = "127.0.0.1:8700")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub jwt: JwtConfig,
    /// Where people reach the API, for links to deployments (e.g. https://slipway.example.com).
    #[arg(long, env = "SLIPWAY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Where the provider takes hooks (e.g. https://hooks.slipway.example.com),
    /// shown on the web UI's setup page.
    #[arg(long, env = "SLIPWAY_HOOKS_URL")]
    pub hooks_url: Option<String>,
    /// How long a runner's claim holds without a heartbeat (e.g. 30s, 2m).
    #[arg(long, env = "SLIPWAY_LEASE", default_value = "30s", value_parser = crate::auth::parse_ttl)]
    pub lease: chrono::Duration,
    #[command(flatten)]
    pub slack: SlackConfig,
    /// A Sentry auth token (with project:releases) for Sentry notifications
    /// that bring none of their own.
    #[arg(long, env = "SLIPWAY_SENTRY_TOKEN", hide_env_values = true)]
    pub sentry_token: Option<Secret>,
    /// File holding the Sentry token (e.g. a swarm secret).
    #[arg(
        long,
        env = "SLIPWAY_SENTRY_TOKEN_FILE",
        conflicts_with = "sentry_token"
    )]
    pub sentry_token_file: Option<PathBuf>,
    /// Address of a listener of its own serving Prometheus metrics at
    /// `GET /metrics` (e.g. 127.0.0.1:9700); without it there are none.
    #[arg(long, env = "SLIPWAY_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,
}

impl ServeConfig {
    /// The Sentry token, from the flag or its file.
    pub fn sentry_token(&self) -> Result<Option<Secret>, String> {
        slipway_secret::read(
            "sentry-token",
            self.sentry_token.as_ref(),
            self.sentry_token_file.as_deref(),
        )
        .map_err(|err| err.to_string())
    }
}

/// Chat-ops: Slack's slash command at `/hooks/slack`, on when a signing
/// secret is given.
#[derive(Args, Debug, Clone)]
pub struct SlackConfig {
    /// The Slack app's signing secret, which signs its slash commands.
    #[arg(long, env = "SLIPWAY_SLACK_SIGNING_SECRET", hide_env_values = true)]
    pub slack_signing_secret: Option<Secret>,
    /// File holding the signing secret (e.g. a swarm secret).
    #[arg(
        long,
        env = "SLIPWAY_SLACK_SIGNING_SECRET_FILE",
        conflicts_with = "slack_signing_secret"
    )]
    pub slack_signing_secret_file: Option<PathBuf>,
    /// A Slack user who may use the command, as USER_ID=SUBJECT:ROLE
    /// (U024BE7LH=alice:deployer); repeat it, or separate them with commas.
    #[arg(long = "slack-user", env = "SLIPWAY_SLACK_USERS", value_delimiter = ',', value_parser = parse_slack_user)]
    pub slack_users: Vec<(String, crate::chatops::SlackUser)>,
    /// Where Slack is: a command's response_url must lead there.
    #[arg(
        long,
        env = "SLIPWAY_SLACK_URL",
        default_value = "https://hooks.slack.com"
    )]
    pub slack_url: String,
}

fn parse_slack_user(text: &str) -> Result<(String, crate::chatops::SlackUser), String> {
    crate::chatops::parse_user(text)
}

impl SlackConfig {
    /// Chat-ops as configured: off without a signing secret.
    pub fn commands(&self) -> Result<Option<crate::chatops::SlackCommands>, String> {
        let secret = slipway_secret::read(
            "slack-signing-secret",
            self.slack_signing_secret.as_ref(),
            self.slack_signing_secret_file.as_deref(),
        )
        .map_err(|err| err.to_string())?;
        let Some(signing_secret) = secret else {
            if !self.slack_users.is_empty() {
                return Err("--slack-user needs --slack-signing-secret(-file): without it no Slack command is taken".into());
            }
            return Ok(None);
        };
        Ok(Some(crate::chatops::SlackCommands {
            signing_secret,
            users: self.slack_users.iter().cloned().collect(),
            slack_url: self.slack_url.clone(),
        }))
    }
}

#[derive(Args, Clone)]
pub struct DatabaseConfig {
    /// sqlite://PATH?mode=rwc (embedded) or postgres://USER:PASSWORD@HOST/DB.
    #[arg(
        long,
        env = "SLIPWAY_DATABASE_URL",
        default_value = "sqlite://slipway.db?mode=rwc"
    )]
    pub database_url: String,
    /// File holding the database password (e.g. a swarm secret); it replaces
    /// any password in the URL.
    #[arg(long, env = "SLIPWAY_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("database_url", &redact_url_password(&self.database_url))
            .field("database_password_file", &self.database_password_file)
            .finish()
    }
}

impl DatabaseConfig {
    /// The URL to connect with, with the password file's content in it.
    pub fn url(&self) -> Result<String, String> {
        let password = slipway_secret::read(
            "database-password",
            None,
            self.database_password_file.as_deref(),
        )
        .map_err(|err| err.to_string())?;
        match password {
            Some(password) => with_password(&self.database_url, password.expose()),
            None => Ok(self.database_url.clone()),
        }
    }
}

/// `scheme://user[:old]@host/...` with `password` (percent-encoded) in it.
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let malformed = || {
        format!(
            "the database URL {} has no user to give the password to (postgres://USER@HOST/DB)",
            redact_url_password(url)
        )
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(malformed)?;
    let (userinfo, host) = rest.split_once('@').ok_or_else(malformed)?;
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!("{scheme}://{user}:{encoded}@{host}"))
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[derive(Args, Clone, Debug)]
pub struct JwtConfig {
    /// Secret that signs and verifies tokens (HS256). At least 16 bytes.
    #[arg(long, env = "SLIPWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret>,
    /// File holding the secret (e.g. a swarm secret under /run/secrets).
    #[arg(long, env = "SLIPWAY_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
}

impl JwtConfig {
    /// The secret's bytes, or a sentence saying how to give one.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        let secret = slipway_secret::read(
            "jwt-secret",
            self.jwt_secret.as_ref(),
            self.jwt_secret_file.as_deref(),
        )
        .map_err(|err| err.to_string())?
        .ok_or_else(|| {
            "no JWT secret: set --jwt-secret / SLIPWAY_JWT_SECRET or \
             --jwt-secret-file / SLIPWAY_JWT_SECRET_FILE (e.g. `openssl rand -hex 32`)"
                .to_owned()
        })?;
        let secret = secret.expose().as_bytes();
        if secret.len() < 16 {
            return Err(format!(
                "the JWT secret is {} bytes long; use at least 16 (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(secret.to_vec())
    }
}

#[derive(Args, Debug, Clone)]
pub struct TokenConfig {
    /// What the token allows.
    #[arg(long, value_enum)]
    pub role: Role,
    /// Who the token is for: a person, or a runner's or provider's name.
    #[arg(long)]
    pub subject: String,
    /// How long the token is valid (e.g. 12h, 30d).
    #[arg(long, default_value = "30d", value_parser = crate::auth::parse_ttl)]
    pub ttl: chrono::Duration,
    #[command(flatten)]
    pub jwt: JwtConfig,
}

#[cfg(test)]
mod tests {
    use super::{redact_url_password, with_password, DatabaseConfig, JwtConfig};
    use slipway_secret::Secret;

    #[test]
    fn secret_files_keep_all_but_their_trailing_newlines() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "pass word\r\n").unwrap();
        let database = DatabaseConfig {
            database_url: "postgres://slipway@db/slipway".into(),
            database_password_file: Some(password.clone()),
        };
        assert_eq!(
            database.url().unwrap(),
            "postgres://slipway:pass%20word@db/slipway"
        );
        std::fs::write(&password, "\n").unwrap();
        let err = database.url().unwrap_err();
        assert!(err.contains("--database-password-file"), "{err}");
        assert!(err.contains("empty"), "{err}");

        let jwt = JwtConfig {
            jwt_secret: Some(Secret::new("0123456789abcdef\n")),
            jwt_secret_file: None,
        };
        assert_eq!(jwt.secret().unwrap(), b"0123456789abcdef");
        assert!(!format!("{jwt:?}").contains("0123456789abcdef"));
        let jwt = JwtConfig {
            jwt_secret: None,
            jwt_secret_file: Some(dir.path().join("absent")),
        };
        let err = jwt.secret().unwrap_err();
        assert!(err.contains("--jwt-secret-file"), "{err}");
    }

    #[test]
    fn a_password_file_fills_the_url() {
        assert_eq!(
            with_password("postgres://slipway@db:5432/slipway", "p@ss:w/rd").unwrap(),
            "postgres://slipway:p%40ss%3Aw%2Frd@db:5432/slipway"
        );
        assert_eq!(
            with_password("postgres://slipway:old@db/slipway", "new").unwrap(),
            "postgres://slipway:new@db/slipway"
        );
        let refused = with_password("postgres://db/slipway", "x").unwrap_err();
        assert!(refused.contains("no user"), "{refused}");
        assert_eq!(
            redact_url_password("postgres://slipway:secret@db/slipway"),
            "postgres://slipway:***@db/slipway"
        );
    }
}
