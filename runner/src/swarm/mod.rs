//! Docker Swarm through the Engine API (bollard): resolving a plan's images
//! to digests, applying a [`Plan`] and watching it converge.
//!
//! Slipway follows `docker stack deploy`'s conventions, so its stacks show in
//! `docker stack ls/ps/services` and an operator can switch either way.

pub mod apply;
pub mod converge;
pub mod diff;
pub mod job;
pub mod observe;
pub mod resolve;

use std::collections::HashMap;

use bollard::Docker;

pub use apply::{apply, Applied, Baseline, Change, ChangeKind};
pub use converge::{converge, rollback, Outcome};
pub use resolve::{resolve, Resolution, ResolveError};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the Docker engine at {at} cannot be reached: {message}")]
    Unreachable { at: String, message: String },
    #[error("the Docker engine is not a swarm manager ({state}); run `docker swarm init` on it")]
    NotManager { state: String },
    #[error("{0}")]
    Api(String),
    /// The caller may no longer write to the swarm (its lease lapsed).
    #[error("no longer allowed to change the swarm: {0}")]
    Fenced(String),
}

/// Asked before every write to the swarm: a runner whose lease may have
/// lapsed must not change what another runner may be deploying now.
pub trait Fence: Send + Sync {
    fn check(&self) -> Result<(), EngineError>;
}

/// For callers that hold no lease (`plan --diff`, tests of the swarm code).
pub struct Unfenced;

impl Fence for Unfenced {
    fn check(&self) -> Result<(), EngineError> {
        Ok(())
    }
}

impl From<bollard::errors::Error> for EngineError {
    fn from(err: bollard::errors::Error) -> Self {
        EngineError::Api(engine_message(&err))
    }
}

/// The engine's own sentence for an error, without bollard's wrapping.
pub fn engine_message(err: &bollard::errors::Error) -> String {
    match err {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

pub fn is_not_found(err: &bollard::errors::Error) -> bool {
    matches!(
        err,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// A connection to a swarm manager.
#[derive(Clone, Debug)]
pub struct Engine {
    pub docker: Docker,
}

impl Engine {
    /// Connects to `host` (`unix:///path`, `tcp://host:port`), or to
    /// `DOCKER_HOST` / the local socket, and negotiates the API version.
    pub async fn connect(host: Option<&str>) -> Result<Self, EngineError> {
        let at = host
            .map(str::to_owned)
            .or_else(|| std::env::var("DOCKER_HOST").ok())
            .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
        let unreachable = |message: String| EngineError::Unreachable {
            at: at.clone(),
            message,
        };
        let docker = match host {
            Some(path) if path.starts_with("unix://") => {
                Docker::connect_with_unix(path, 120, bollard::API_DEFAULT_VERSION)
            }
            Some(addr) => Docker::connect_with_http(addr, 120, bollard::API_DEFAULT_VERSION),
            None => Docker::connect_with_defaults(),
        }
        .map_err(|err| unreachable(err.to_string()))?
        .with_request_modifier(url_safe_registry_auth);
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|err| unreachable(engine_message(&err)))?;
        Ok(Self { docker })
    }

    /// Fails with how to fix it unless the engine is an active swarm manager.
    pub async fn check_manager(&self) -> Result<(), EngineError> {
        let info = self.docker.info().await?;
        let swarm = info.swarm.unwrap_or_default();
        let state = swarm
            .local_node_state
            .map(|s| s.to_string())
            .unwrap_or_else(|| "inactive".into());
        if state == "active" && swarm.control_available == Some(true) {
            Ok(())
        } else {
            Err(EngineError::NotManager {
                state: format!("swarm state {state}"),
            })
        }
    }
}

/// A filter of list calls: `{"label": ["k=v"]}` and the like.
pub(crate) fn filter(key: &str, value: impl Into<String>) -> HashMap<String, Vec<String>> {
    HashMap::from([(key.to_owned(), vec![value.into()])])
}

/// bollard encodes `X-Registry-Auth` in standard base64, while the engine
/// (and every node pulling with the credentials a service was given) reads
/// the URL-safe alphabet: credentials whose encoding has a `+` or `/` would
/// be silently dropped. Same bits, two characters swapped.
fn url_safe_registry_auth(mut request: bollard::BollardRequest) -> bollard::BollardRequest {
    const HEADER: &str = "x-registry-auth";
    let fixed = request
        .headers()
        .get(HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| value.contains(['+', '/']))
        .map(|value| value.replace('+', "-").replace('/', "_"));
    if let Some(value) = fixed.and_then(|v| v.try_into().ok()) {
        request.headers_mut().insert(HEADER, value);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::url_safe_registry_auth;

    #[test]
    fn registry_auth_is_sent_in_the_url_safe_alphabet() {
        let mut request = bollard::BollardRequest::new(bollard::body_full(Default::default()));
        request
            .headers_mut()
            .insert("x-registry-auth", "eyJ+Pz8/In0=".try_into().unwrap());
        let request = url_safe_registry_auth(request);
        assert_eq!(request.headers()["x-registry-auth"], "eyJ-Pz8_In0=");
    }
}
