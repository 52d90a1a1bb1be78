//! Repository URLs as applications store them. They never carry credentials:
//! the runner clones with its own `--git-token` or SSH key, and a URL is shown
//! to every reader of the API. A URL stored before this rule is shown with its
//! credentials masked.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::{ApiError, ApiResult};

/// Longest URL or path.
const MAX_LEN: usize = 1024;

/// What stands in for credentials when a URL is shown.
const MASK: &str = "***";

/// Checks a repository URL (or path) and returns it trimmed. A password or
/// token in it is refused, with the way to give the runner one instead.
pub fn validate(repository: &str) -> ApiResult<&str> {
    let repository = repository.trim();
    if repository.is_empty() || repository.len() > MAX_LEN {
        return Err(ApiError::BadInput(format!(
            "`repository` must be a clone URL or path of 1 to {MAX_LEN} characters"
        )));
    }
    if secret(repository).is_some() {
        return Err(ApiError::BadInput(format!(
            "`repository` carries a password or token ({}): the API shows it to every reader. \
             Give the URL without it and the runner `--git-token` (HTTPS) or an SSH key \
             (`--git-ssh-key-file`) instead",
            shown(repository)
        )));
    }
    Ok(repository)
}

/// The URL as the API shows it: credentials masked (`https://user:***@host/…`).
pub fn shown(repository: &str) -> Cow<'_, str> {
    match secret(repository) {
        Some(range) => {
            let mut masked = repository.to_owned();
            masked.replace_range(range, MASK);
            Cow::Owned(masked)
        }
        None => Cow::Borrowed(repository),
    }
}

/// Where the credentials of a URL are: the password of `scheme://user:password@`
/// or `user:password@host:path`, or, in an `http(s)://` URL, the user name
/// too (a token often stands there: `https://<token>@github.com/…`). A bare
/// user of SSH (`git@host:path`, `ssh://git@host/path`) is no secret.
fn secret(url: &str) -> Option<Range<usize>> {
    let (authority_start, web) = match url.find("://") {
        Some(i) => {
            let scheme = url[..i].to_ascii_lowercase();
            (i + 3, scheme == "http" || scheme == "https")
        }
        // `user@host:path`: the part before the first `/`.
        None => (0, false),
    };
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let user_info_end = rest[..authority_end].rfind('@')?;
    let user_info = &rest[..user_info_end];
    match user_info.find(':') {
        Some(colon) => Some(authority_start + colon + 1..authority_start + user_info_end),
        None if web => Some(authority_start..authority_start + user_info_end),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_found_and_masked() {
        for (url, masked) in [
            (
                "https://user:token@github.com/o/r.git",
                "https://user:***@github.com/o/r.git",
            ),
            (
                "https://ghp_0123456789@github.com/o/r.git",
                "https://***@github.com/o/r.git",
            ),
            ("HTTP://u:p@host:8080/r", "HTTP://u:***@host:8080/r"),
            ("ssh://git:pw@host/r.git", "ssh://git:***@host/r.git"),
            ("git:pw@host:o/r.git", "git:***@host:o/r.git"),
            ("https://a:b@c@host/r", "https://a:***@host/r"),
        ] {
            assert!(secret(url).is_some(), "{url}");
            assert_eq!(shown(url), masked);
        }
    }

    #[test]
    fn urls_without_credentials_are_kept() {
        for url in [
            "git@github.com:o/r.git",
            "ssh://git@host/r.git",
            "ssh://git@host:2222/r.git",
            "https://github.com/o/r.git",
            "https://host/r@v1",
            "git://127.0.0.1:9418/r.git",
            "file:///srv/git/app.git",
            "/srv/git/app.git",
            "host:o/r@x.git",
        ] {
            assert_eq!(secret(url), None, "{url}");
            assert!(matches!(shown(url), Cow::Borrowed(_)), "{url}");
        }
    }
}
