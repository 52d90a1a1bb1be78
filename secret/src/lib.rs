//! Slipway's secrets: one type that never shows its value, and one way to
//! read one.
//!
//! Every Slipway binary takes its secrets the same way: a flag (`--token`),
//! the flag's environment variable (`SLIPWAY_TOKEN`, which clap maps onto the
//! flag), or a file named by a second flag (`--token-file`, e.g. a swarm
//! secret under `/run/secrets`). [`read`] turns those into a [`Secret`] with
//! one rule for all of them:
//!
//! - **Trailing newlines are not part of a secret.** `echo s3cret > file`
//!   writes `s3cret\n`, and Windows editors write `\r\n`: every `\n` and `\r`
//!   at the end is dropped, nothing else. Spaces, tabs and newlines inside or
//!   at the start are kept, because they may be the secret's own.
//! - **An empty secret is an error** that names the flag (and the file): an
//!   empty token or password is always a mistake, never "no secret".
//! - **Errors name the flag and the file, never the content.**
//!
//! ```
//! use slipway_secret::{read, Secret};
//!
//! let flag = Some(Secret::new("s3cret\n"));
//! let secret = read("token", flag.as_ref(), None).unwrap().unwrap();
//! assert_eq!(secret.expose(), "s3cret");
//! assert_eq!(format!("{secret:?} {secret}"), "<redacted> <redacted>");
//! assert!(read("token", None, None).unwrap().is_none());
//! ```
//!
//! As a clap field, `Option<Secret>` parses from the flag's text and keeps
//! `Debug` of the configuration free of secrets:
//!
//! ```text
//! #[arg(long, env = "SLIPWAY_TOKEN", hide_env_values = true)]
//! token: Option<Secret>,
//! #[arg(long, env = "SLIPWAY_TOKEN_FILE", conflicts_with = "token")]
//! token_file: Option<PathBuf>,
//! // ...
//! let token = slipway_secret::read("token", config.token.as_ref(), config.token_file.as_deref())?;
//! ```

use std::path::{Path, PathBuf};

pub mod signature;

/// What `Debug` and `Display` show instead of a secret.
pub const REDACTED: &str = "<redacted>";

/// A secret: a token, a password, a signing key. `Debug` and `Display` show
/// [`REDACTED`]; [`Secret::expose`] is the one way to the value.
///
/// It has no `PartialEq` on purpose: a secret a request brings is compared in
/// constant time (hash both sides, then compare the digests), never with `==`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// A secret as it is; [`read`] is what applies the trimming rule.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// clap builds a flag's value with this.
impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Why a secret could not be read. Each names the flag (and the file); none
/// holds any of the secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read --{flag}-file {}: {cause}", path.display())]
    Unreadable {
        flag: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("--{flag}-file {} is not UTF-8 text; a secret must be text", path.display())]
    NotText { flag: &'static str, path: PathBuf },
    #[error("--{flag} is empty")]
    Empty { flag: &'static str },
    #[error(
        "--{flag}-file {} is empty (trailing newlines are not part of a secret)",
        path.display()
    )]
    EmptyFile { flag: &'static str, path: PathBuf },
}

/// The secret given as `--<flag>` (or its environment variable), else the
/// content of `--<flag>-file`, with trailing newlines dropped; `None` when
/// neither is given. The flag's value wins when both are (clap's
/// `conflicts_with` keeps that from happening on a command line).
///
/// `flag` is the flag's name without dashes (`token`, `github-webhook-secret`);
/// errors say `--<flag>` and `--<flag>-file`.
pub fn read(
    flag: &'static str,
    value: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, Error> {
    let secret = match (value, file) {
        (Some(value), _) => {
            let secret = without_trailing_newlines(value.expose());
            if secret.is_empty() {
                return Err(Error::Empty { flag });
            }
            secret.to_owned()
        }
        (None, Some(path)) => {
            let bytes = std::fs::read(path).map_err(|cause| Error::Unreadable {
                flag,
                path: path.to_owned(),
                cause,
            })?;
            let text = String::from_utf8(bytes).map_err(|_| Error::NotText {
                flag,
                path: path.to_owned(),
            })?;
            let secret = without_trailing_newlines(&text);
            if secret.is_empty() {
                return Err(Error::EmptyFile {
                    flag,
                    path: path.to_owned(),
                });
            }
            secret.to_owned()
        }
        (None, None) => return Ok(None),
    };
    Ok(Some(Secret(secret)))
}

/// The one trimming rule: every `\n` and `\r` at the end goes, nothing else.
fn without_trailing_newlines(text: &str) -> &str {
    text.trim_end_matches(['\n', '\r'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_file(content: &[u8]) -> Result<Option<Secret>, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, content).unwrap();
        read("token", None, Some(&path))
    }

    #[test]
    fn only_trailing_newlines_are_dropped() {
        for (content, secret) in [
            (&b"s3cret"[..], "s3cret"),
            (b"s3cret\n", "s3cret"),
            (b"s3cret\r\n", "s3cret"),
            (b"s3cret\n\n", "s3cret"),
            (b"s3cret \t\n", "s3cret \t"),
            (b" s3cret", " s3cret"),
            (b"two\nlines\n", "two\nlines"),
        ] {
            let read = from_file(content).unwrap().unwrap();
            assert_eq!(read.expose(), secret, "{content:?}");
            let flag = Secret::new(String::from_utf8(content.to_vec()).unwrap());
            let read = super::read("token", Some(&flag), None).unwrap().unwrap();
            assert_eq!(read.expose(), secret, "flag {content:?}");
        }
    }

    #[test]
    fn the_flag_wins_over_the_file_and_neither_is_none() {
        let flag = Secret::new("from-flag");
        let read = read("token", Some(&flag), Some(Path::new("/nonexistent")))
            .unwrap()
            .unwrap();
        assert_eq!(read.expose(), "from-flag");
        assert!(super::read("token", None, None).unwrap().is_none());
    }

    #[test]
    fn empty_secrets_are_errors_that_name_the_flag() {
        let err = from_file(b"\n").unwrap_err().to_string();
        assert!(err.starts_with("--token-file "), "{err}");
        assert!(err.contains("is empty"), "{err}");
        let err = read("token", Some(&Secret::new("\r\n")), None)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "--token is empty");
    }

    #[test]
    fn errors_name_the_file_but_never_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("absent");
        let err = read("github-token", None, Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--github-token-file"), "{err}");
        assert!(err.contains(&missing.display().to_string()), "{err}");

        let binary = dir.path().join("binary");
        std::fs::write(&binary, b"hunter2\xff\xfe").unwrap();
        let err = read("jwt-secret", None, Some(&binary))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--jwt-secret-file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn debug_and_display_are_redacted() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), REDACTED);
        assert_eq!(secret.to_string(), REDACTED);
        assert_eq!(format!("{:?}", Some(secret.clone())), "Some(<redacted>)");
        assert_eq!(secret.expose(), "hunter2");
    }
}
