//! Command-line configuration of `slipway-api`. Every flag can also be set from
//! a `SLIPWAY_*` environment variable; `Debug` never shows a secret.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    Serve(ServeConfig),
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
    /// How long a runner's claim holds without a heartbeat (e.g. 30s, 2m).
    #[arg(long, env = "SLIPWAY_LEASE", default_value = "30s", value_parser = crate::auth::parse_ttl)]
    pub lease: chrono::Duration,
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
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("database_url", &redact_url_password(&self.database_url))
            .finish()
    }
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

#[derive(Args, Clone)]
pub struct JwtConfig {
    /// Secret that signs and verifies tokens (HS256). At least 16 bytes.
    #[arg(long, env = "SLIPWAY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// File holding the secret (e.g. a swarm secret under /run/secrets).
    #[arg(long, env = "SLIPWAY_JWT_SECRET_FILE", conflicts_with = "jwt_secret")]
    pub jwt_secret_file: Option<PathBuf>,
}

impl std::fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("jwt_secret_file", &self.jwt_secret_file)
            .finish()
    }
}

impl JwtConfig {
    /// The secret's bytes, or a sentence saying how to give one.
    pub fn secret(&self) -> Result<Vec<u8>, String> {
        let secret = match (&self.jwt_secret, &self.jwt_secret_file) {
            (Some(secret), _) => secret.as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path).map_err(|err| {
                    format!("cannot read the JWT secret file {}: {err}", path.display())
                })?;
                while bytes.last().is_some_and(|b| b.is_ascii_whitespace()) {
                    bytes.pop();
                }
                bytes
            }
            (None, None) => {
                return Err("no JWT secret: set --jwt-secret / SLIPWAY_JWT_SECRET or \
                     --jwt-secret-file / SLIPWAY_JWT_SECRET_FILE (e.g. `openssl rand -hex 32`)"
                    .into())
            }
        };
        if secret.len() < 16 {
            return Err(format!(
                "the JWT secret is {} bytes long; use at least 16 (e.g. `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Ok(secret)
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
