//! Container registries: which registry an image is in, and the credentials
//! the runner holds for it.
//!
//! The runner never talks to a registry itself: the engine does, through its
//! distribution endpoint (to resolve a tag to a digest) and on every node that
//! pulls (with the credentials a service was created or updated with). This
//! module only knows names and credentials.
//!
//! # Layout
//!
//! - [`reference`]: an image reference as `docker` reads it — its registry,
//!   tag and digest — and the pinned form `docker stack deploy` writes.
//! - [`auth`]: registry credentials from a Docker `config.json`.

pub mod auth;
pub mod reference;

pub use auth::{AuthFileError, Credential, RegistryAuth};
pub use reference::{ImageRef, DOCKER_HUB};
