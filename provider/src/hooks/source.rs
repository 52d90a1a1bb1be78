//! A hook source is a type, not a branch: it says how its sender proves a
//! hook is its own ([`Verify`]) and what a verified hook asks for
//! ([`Extract`]); [`Source`] gives it a name, a route and the flag of the
//! secret that turns it on. One generic handler ([`receive`]) serves every
//! source the same way:
//!
//! 1. read the raw body (413 past the limit);
//! 2. 404 when the source's secret is not set;
//! 3. [`Verify::verify`] over the raw bytes, before anything parses them (401);
//! 4. [`Extract::extract`] reads what the hook asks for (400, 202);
//! 5. [`Hooks::carry_out`] creates the deployments through the API;
//!
//! and records how long the answer took (`crate::metrics`).
//!
//! The list of sources is [`super::SOURCES`]; the routes, the provider's
//! start-up log and `slipway up`'s banner are made from it.

use std::path::Path;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::{post, MethodRouter};

use super::{Hooks, Wanted};
use crate::config::{self, Secret};
use crate::error::HookError;
use crate::http;

/// How a sender proves that a hook is its own. Runs on the raw body before
/// anything parses it; compares in constant time.
pub(crate) trait Verify {
    fn verify(secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), HookError>;
}

/// What a verified hook asks Slipway to do. Reads only the request: finding
/// applications and creating deployments is [`Hooks::carry_out`]'s.
pub(crate) trait Extract {
    fn extract(headers: &HeaderMap, body: &[u8]) -> Result<Wanted, HookError>;
}

/// The value and the file flag of a source's secret in the configuration.
type SecretFlags = for<'a> fn(&'a config::Hooks) -> (Option<&'a Secret>, Option<&'a Path>);

/// One sender of hooks, as the provider mounts it and `slipway up` shows it.
pub struct Source {
    /// `github`, `gitlab`, `generic`: in logs, answers and the banner.
    pub name: &'static str,
    /// Where it is served, e.g. `/hooks/github`.
    pub route: &'static str,
    /// The flag (without dashes) whose secret turns the route on; the secret
    /// can also come from `--<flag>-file`.
    pub secret_flag: &'static str,
    flags: SecretFlags,
    handler: fn(&'static Source) -> MethodRouter<Hooks>,
    read: fn(&Secret, &HeaderMap, &[u8]) -> Result<(), HookError>,
}

impl Source {
    /// The source `S` served at `route`, on when `--<secret_flag>` (whose
    /// value and file `flags` picks from the configuration) is set.
    pub(crate) const fn of<S: Verify + Extract + 'static>(
        name: &'static str,
        route: &'static str,
        secret_flag: &'static str,
        flags: SecretFlags,
    ) -> Source {
        Source {
            name,
            route,
            secret_flag,
            flags,
            handler: handler::<S>,
            read: read::<S>,
        }
    }

    /// The value and the file given for this source's secret, unread.
    pub fn secret_flags<'a>(
        &self,
        hooks: &'a config::Hooks,
    ) -> (Option<&'a Secret>, Option<&'a Path>) {
        (self.flags)(hooks)
    }

    /// Whether the configuration turns this source on (its secret or its
    /// secret's file is given; reading it may still fail at start).
    pub fn is_configured(&self, hooks: &config::Hooks) -> bool {
        let (value, file) = self.secret_flags(hooks);
        value.is_some() || file.is_some()
    }

    /// Verifies and reads a hook as the route does, without acting on it:
    /// `Err` with what the sender would be told. For the fuzz targets.
    pub fn read(&self, secret: &Secret, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        (self.read)(secret, headers, body).map_err(|err| err.to_string())
    }

    /// The route's handler.
    pub(crate) fn method_router(&'static self) -> MethodRouter<Hooks> {
        (self.handler)(self)
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("route", &self.route)
            .field("secret_flag", &self.secret_flag)
            .finish()
    }
}

fn handler<S: Verify + Extract + 'static>(source: &'static Source) -> MethodRouter<Hooks> {
    post(
        move |State(hooks): State<Hooks>, headers: HeaderMap, body: Body| async move {
            let started = Instant::now();
            let result = receive::<S>(source, &hooks, &headers, body).await;
            let answer = http::answer(source.name, result);
            hooks
                .metrics
                .hook_answered(source.name, answer.status(), started.elapsed());
            answer
        },
    )
}

fn read<S: Verify + Extract>(
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), HookError> {
    S::verify(secret, headers, body)?;
    S::extract(headers, body).map(|_| ())
}

/// Every source's hooks, the same way: see the module's comment.
async fn receive<S: Verify + Extract>(
    source: &'static Source,
    hooks: &Hooks,
    headers: &HeaderMap,
    body: Body,
) -> Result<super::Answer, HookError> {
    let body = http::read_body(headers, body, hooks.body_timeout).await?;
    let Some(secret) = hooks.secrets.hook(source.name) else {
        return Err(HookError::NotConfigured(format!(
            "{} hooks are off: the provider has no --{}",
            source.name, source.secret_flag
        )));
    };
    S::verify(secret, headers, &body)?;
    let wanted = S::extract(headers, &body)?;
    hooks.carry_out(source.name, wanted).await
}
