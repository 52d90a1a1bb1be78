//! Docker Swarm through the Engine API (bollard): applying a [`Plan`] and
//! watching it converge.
//!
//! Slipway follows `docker stack deploy`'s conventions, so its stacks show in
//! `docker stack ls/ps/services` and an operator can switch either way.

pub mod apply;
pub mod converge;
pub mod diff;

use std::collections::HashMap;

use bollard::Docker;

pub use apply::{apply, Applied, Baseline, Change, ChangeKind};
pub use converge::{converge, rollback, Outcome};

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
        .map_err(|err| unreachable(err.to_string()))?;
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

/// The content digest of `image` where it is known: pinned in the reference
/// (`name@sha256:...`), or recorded by the engine when the image came from a
/// registry. Images built or imported locally have none.
pub async fn image_digest(engine: &Engine, image: &str) -> Option<String> {
    if let Some((_, digest)) = image.split_once('@') {
        return Some(digest.to_owned());
    }
    let inspected = engine.docker.inspect_image(image).await.ok()?;
    let repository = image.rsplit_once(':').map_or(image, |(name, tag)| {
        // `host:5000/name` has a colon that is not a tag.
        if tag.contains('/') {
            image
        } else {
            name
        }
    });
    inspected
        .repo_digests
        .unwrap_or_default()
        .into_iter()
        .find_map(|reference| {
            let (name, digest) = reference.split_once('@')?;
            (name == repository || name.ends_with(&format!("/{repository}")))
                .then(|| digest.to_owned())
        })
}
