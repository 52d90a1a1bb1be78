//! Registry credentials from a Docker `config.json`, the file `docker login`
//! writes:
//!
//! ```json
//! {"auths": {"registry.example.com": {"auth": "<base64 of user:password>"},
//!            "ghcr.io": {"identitytoken": "<token>"}}}
//! ```
//!
//! Entries are found by registry host as the Docker CLI finds them: a key
//! may be written `host`, `https://host` or `https://host/v1/`; Docker Hub's
//! is `https://index.docker.io/v1/`. Credential helpers (`credsStore`,
//! `credHelpers`) are programs on the machine that logged in; the runner
//! does not run them, and says so when the file names them.
//!
//! Nothing here shows a secret: `Debug` names registries and users only,
//! and errors about the file say where it is wrong, never what it holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use serde::Deserialize;
use slipway_secret::Secret;

use super::reference::DOCKER_HUB;

/// The credentials of the registries the runner may pull from, by registry
/// host.
#[derive(Clone, Default)]
pub struct RegistryAuth {
    credentials: BTreeMap<String, Credential>,
    /// The file they came from, for messages.
    source: Option<PathBuf>,
    /// What the file holds that the runner does not use (credential helpers,
    /// entries without credentials), to be logged once at start.
    pub warnings: Vec<String>,
}

/// One registry's credentials: a user and password, or an identity token.
#[derive(Clone)]
pub struct Credential {
    /// The key the file gives them, sent as the server address.
    server: String,
    username: Option<String>,
    password: Option<Secret>,
    identity_token: Option<Secret>,
    registry_token: Option<Secret>,
    /// The `auth` value as written: as secret as the password.
    encoded: Option<Secret>,
}

/// Why the registry auth file cannot be used. Never quotes its content.
#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read the registry auth file {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error(
        "the registry auth file {path} is not a Docker config.json: {what} at line {line}, column {column}"
    )]
    Parse {
        path: PathBuf,
        what: &'static str,
        line: usize,
        column: usize,
    },
    #[error("the registry auth file {path}: auths.{key:?}: {what}")]
    Entry {
        path: PathBuf,
        key: String,
        what: &'static str,
    },
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    auths: BTreeMap<String, RawEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
struct RawEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
    registrytoken: Option<String>,
}

impl RegistryAuth {
    /// No credentials: every image is pulled anonymously.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads `path`, a Docker `config.json`.
    pub fn read(path: &Path) -> Result<Self, AuthFileError> {
        let bytes = std::fs::read(path).map_err(|err| AuthFileError::Read {
            path: path.to_owned(),
            message: err.to_string(),
        })?;
        Self::parse(path, &bytes)
    }

    /// Reads the content of a `config.json`; `path` is for messages only.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, AuthFileError> {
        let raw: RawConfig = serde_json::from_slice(bytes).map_err(|err| {
            use serde_json::error::Category;
            AuthFileError::Parse {
                path: path.to_owned(),
                // serde_json's own message may quote the file: not shown.
                what: match err.classify() {
                    Category::Io => "unreadable",
                    Category::Syntax => "not JSON",
                    Category::Data => "a value of the wrong type",
                    Category::Eof => "it ends too early",
                },
                line: err.line(),
                column: err.column(),
            }
        })?;
        let mut auth = RegistryAuth {
            source: Some(path.to_owned()),
            ..Self::default()
        };
        let entry_error = |key: &str, what| AuthFileError::Entry {
            path: path.to_owned(),
            key: key.to_owned(),
            what,
        };
        let mut empty = Vec::new();
        for (key, entry) in raw.auths {
            let (mut username, mut password) = (entry.username, entry.password.map(Secret::new));
            if let Some(encoded) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .ok_or_else(|| {
                        entry_error(&key, "`auth` is not the base64 of user:password")
                    })?;
                let (user, pass) = decoded.split_once(':').ok_or_else(|| {
                    entry_error(&key, "`auth` is not the base64 of user:password")
                })?;
                username = Some(user.to_owned());
                password = Some(Secret::new(pass));
            }
            let credential = Credential {
                server: key.clone(),
                username: username.filter(|u| !u.is_empty()),
                password: password.filter(|p| !p.expose().is_empty()),
                identity_token: entry
                    .identitytoken
                    .filter(|t| !t.is_empty())
                    .map(Secret::new),
                registry_token: entry
                    .registrytoken
                    .filter(|t| !t.is_empty())
                    .map(Secret::new),
                encoded: entry.auth.filter(|a| !a.is_empty()).map(Secret::new),
            };
            if credential.password.is_none()
                && credential.identity_token.is_none()
                && credential.registry_token.is_none()
            {
                empty.push(key);
                continue;
            }
            let host = hostname(&key);
            // `host` itself wins over `https://host/...` spellings of it.
            if key == host || !auth.credentials.contains_key(&host) {
                auth.credentials.insert(host, credential);
            }
        }
        if let Some(store) = raw.creds_store.filter(|s| !s.is_empty()) {
            auth.warnings.push(format!(
                "the registry auth file {} names a credential store (credsStore: {store}); the \
                 runner reads only the `auth` and `identitytoken` of `auths` entries, so \
                 registries whose credentials only the store holds are pulled from anonymously",
                path.display()
            ));
        }
        if !raw.cred_helpers.is_empty() {
            let registries: Vec<&str> = raw.cred_helpers.keys().map(String::as_str).collect();
            auth.warnings.push(format!(
                "the registry auth file {} names credential helpers for {}; the runner does not \
                 run them",
                path.display(),
                registries.join(", ")
            ));
        }
        if !empty.is_empty() {
            auth.warnings.push(format!(
                "the registry auth file {} has entries without credentials for {}",
                path.display(),
                empty.join(", ")
            ));
        }
        Ok(auth)
    }

    /// The credentials for `registry` (a host, or [`DOCKER_HUB`]).
    pub fn for_registry(&self, registry: &str) -> Option<&Credential> {
        self.credentials.get(&hostname(registry))
    }

    /// The registries it has credentials for.
    pub fn registries(&self) -> impl Iterator<Item = &str> {
        self.credentials.keys().map(String::as_str)
    }

    /// The file the credentials came from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    /// Every secret value it holds, to be masked in deployment logs.
    pub fn secret_values(&self) -> Vec<String> {
        self.credentials
            .values()
            .flat_map(|c| {
                [
                    &c.password,
                    &c.identity_token,
                    &c.registry_token,
                    &c.encoded,
                ]
                .into_iter()
                .flatten()
                .map(|s| s.expose().to_owned())
            })
            .collect()
    }
}

impl Credential {
    /// What the engine is sent (`X-Registry-Auth`).
    pub fn docker(&self) -> DockerCredentials {
        DockerCredentials {
            username: self.username.clone(),
            password: self.password.as_ref().map(|s| s.expose().to_owned()),
            serveraddress: Some(self.server.clone()),
            identitytoken: self.identity_token.as_ref().map(|s| s.expose().to_owned()),
            registrytoken: self.registry_token.as_ref().map(|s| s.expose().to_owned()),
            ..Default::default()
        }
    }

    /// How it authenticates, for messages: `user NAME` or `an identity token`.
    pub fn describe(&self) -> String {
        match (&self.username, &self.password, &self.identity_token) {
            (Some(user), Some(_), _) => format!("user {user}"),
            (_, _, Some(_)) => "an identity token".into(),
            _ => "a registry token".into(),
        }
    }
}

/// The registry host a `config.json` key means, as the Docker CLI's
/// `ConvertToHostname` reads it; every spelling of Docker Hub is
/// [`DOCKER_HUB`].
fn hostname(key: &str) -> String {
    let host = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = host.split('/').next().unwrap_or(host);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => DOCKER_HUB.to_owned(),
        other => other.to_owned(),
    }
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("source", &self.source)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("server", &self.server)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("identity_token", &self.identity_token)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "hunter2>>>secret???";

    fn file(json: &str) -> Result<RegistryAuth, AuthFileError> {
        RegistryAuth::parse(Path::new("/run/secrets/registry-auth"), json.as_bytes())
    }

    fn encoded(user: &str, password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    }

    #[test]
    fn entries_are_found_by_registry_host_however_the_key_is_written() {
        let auth = file(&format!(
            r#"{{"auths": {{
                "127.0.0.1:5443": {{"auth": "{}"}},
                "https://ghcr.io/v2/": {{"identitytoken": "tok3n-secret"}},
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "empty.example.com": {{}}
            }}, "credsStore": "desktop", "HttpHeaders": {{"User-Agent": "x"}}}}"#,
            encoded("slipway", PASSWORD),
            encoded("hubuser", "hubpass-secret"),
        ))
        .unwrap();
        let local = auth.for_registry("127.0.0.1:5443").unwrap().docker();
        assert_eq!(local.username.as_deref(), Some("slipway"));
        assert_eq!(local.password.as_deref(), Some(PASSWORD));
        assert_eq!(local.serveraddress.as_deref(), Some("127.0.0.1:5443"));
        let ghcr = auth.for_registry("ghcr.io").unwrap().docker();
        assert_eq!(ghcr.identitytoken.as_deref(), Some("tok3n-secret"));
        assert_eq!(ghcr.username, None);
        let hub = auth.for_registry(DOCKER_HUB).unwrap().docker();
        assert_eq!(hub.username.as_deref(), Some("hubuser"));
        assert!(auth.for_registry("127.0.0.1:5000").is_none());
        assert!(auth.for_registry("empty.example.com").is_none());
        assert_eq!(
            auth.registries().collect::<Vec<_>>(),
            ["127.0.0.1:5443", "docker.io", "ghcr.io"]
        );
        let warnings = auth.warnings.join("\n");
        assert!(
            warnings.contains("credsStore: desktop") && warnings.contains("empty.example.com"),
            "{warnings}"
        );
        let secrets = auth.secret_values();
        for secret in [PASSWORD, "tok3n-secret", "hubpass-secret"] {
            assert!(secrets.iter().any(|s| s == secret), "{secret} is masked");
        }
        assert!(secrets.contains(&encoded("slipway", PASSWORD)));
    }

    #[test]
    fn debug_shows_registries_and_users_but_no_secret() {
        let auth = file(&format!(
            r#"{{"auths": {{"127.0.0.1:5443": {{"auth": "{}"}}, "ghcr.io": {{"identitytoken": "tok3n-secret"}}}}}}"#,
            encoded("slipway", PASSWORD)
        ))
        .unwrap();
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("127.0.0.1:5443") && shown.contains("slipway"),
            "{shown}"
        );
        for secret in [
            PASSWORD,
            "hunter2",
            "tok3n",
            encoded("slipway", PASSWORD).as_str(),
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        let credential = auth.for_registry("127.0.0.1:5443").unwrap();
        assert_eq!(credential.describe(), "user slipway");
        assert!(!format!("{credential:?}").contains("hunter2"));
    }

    #[test]
    fn errors_say_where_the_file_is_wrong_and_never_what_it_holds() {
        let cases = [
            // A value of the wrong type: serde_json would quote it.
            r#"{"auths": "hunter2-secret"}"#,
            r#"{"auths": {"r.example.com": {"auth": 12345}}} hunter2-secret"#,
            // Not base64, and base64 without a colon.
            r#"{"auths": {"r.example.com": {"auth": "hunter2-secret!"}}}"#,
            r#"{"auths": {"r.example.com": {"auth": "aHVudGVyMi1zZWNyZXQ="}}}"#,
            r#"{"auths": {"r.example.com": {"auth": "hunter2-secret""#,
        ];
        for case in cases {
            let err = file(case).unwrap_err().to_string();
            assert!(err.contains("/run/secrets/registry-auth"), "{err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = file(r#"{"auths": {"r.example.com": {"auth": "hunter2-secret!"}}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("r.example.com") && err.contains("user:password"),
            "{err}"
        );
        let err = file("{\n  \"auths\": [1]\n}").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        let err = RegistryAuth::read(Path::new("/nonexistent/config.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/config.json"), "{err}");
    }
}
