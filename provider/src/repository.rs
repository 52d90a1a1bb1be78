//! Telling whether a hook's repository is an application's: clone URLs, SSH URLs
//! (`git@github.com:acme/shop.git`, `ssh://git@host:22/acme/shop`) and plain
//! `owner/name` are reduced to a host and a path and compared.

/// A repository reduced to what identifies it: the host (when the name has
/// one) and the path, both lowercase, without `.git` or slashes at the ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepoId {
    host: Option<String>,
    path: String,
}

impl RepoId {
    /// Parses a clone URL, an SSH URL or `owner/name`; `None` for what names no
    /// remote repository (a local path, `file://`, an empty string).
    pub fn parse(text: &str) -> Option<RepoId> {
        let text = text.trim();
        let (host, path) = if let Some((scheme, rest)) = text.split_once("://") {
            if scheme.eq_ignore_ascii_case("file") {
                return None;
            }
            let (authority, path) = rest.split_once('/')?;
            let host = authority.rsplit('@').next().unwrap_or(authority);
            let host = strip_port(host);
            (Some(host), path)
        } else if let Some((authority, path)) = scp_like(text) {
            let host = authority.rsplit('@').next().unwrap_or(authority);
            (Some(host), path)
        } else if !text.starts_with('/') && !text.starts_with('.') && !text.contains(':') {
            (None, text)
        } else {
            return None;
        };
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        if parts.len() < 2 || parts.iter().any(|part| part.is_empty()) {
            return None;
        }
        let host = host.filter(|host| !host.is_empty());
        Some(RepoId {
            host: host.map(str::to_ascii_lowercase),
            path: path.to_ascii_lowercase(),
        })
    }

    /// Whether this name (from a hook) is the repository `configured` (an
    /// application's): the same path, and the same host when `configured`
    /// names one. A name without a host (GitHub's `full_name`) therefore only
    /// matches an application configured as plain `owner/name`, so GitLab's
    /// `acme/shop` is not GitHub's `https://github.com/acme/shop`.
    pub fn names(&self, configured: &RepoId) -> bool {
        self.path == configured.path
            && match &configured.host {
                Some(host) => self.host.as_ref() == Some(host),
                None => true,
            }
    }

    /// The host, lowercase, when the name has one.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// `owner/name` (or `group/subgroup/name`), lowercase.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{host}/{}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// `user@host:path` (no scheme; the colon comes before any slash).
fn scp_like(text: &str) -> Option<(&str, &str)> {
    let (authority, path) = text.split_once(':')?;
    if authority.is_empty() || authority.contains('/') || path.starts_with("//") {
        return None;
    }
    // A Windows drive (`C:\...`) is a local path.
    if authority.len() == 1 {
        return None;
    }
    Some((authority, path))
}

fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Whether any of `names` (what a hook says its repository is) is the
/// repository `configured` (what an application says).
pub fn any_matches(configured: &str, names: &[RepoId]) -> bool {
    RepoId::parse(configured).is_some_and(|configured| names.iter().any(|n| n.names(&configured)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> RepoId {
        RepoId::parse(text).unwrap_or_else(|| panic!("{text} should parse"))
    }

    #[test]
    fn the_ways_to_name_one_repository_match() {
        let names = [
            "https://github.com/Acme/Shop.git",
            "https://github.com/acme/shop",
            "https://github.com/acme/shop/",
            "http://user:pw@github.com:443/acme/shop.git",
            "git@github.com:acme/shop.git",
            "ssh://git@github.com:22/acme/shop.git",
            "git://github.com/acme/shop.git",
        ];
        for a in names {
            for b in names {
                assert!(id(a).names(&id(b)), "{a} should name {b}");
            }
            // An application configured as plain owner/name takes any host.
            assert!(id(a).names(&id("acme/shop")), "{a} should name acme/shop");
            // A hook's host-less name does not match a host-qualified application.
            assert!(
                !id("acme/shop").names(&id(a)),
                "acme/shop should not name {a}"
            );
        }
        assert_eq!(id("git@github.com:acme/shop.git").path(), "acme/shop");
        assert_eq!(
            id("git@github.com:acme/shop.git").to_string(),
            "github.com/acme/shop"
        );
    }

    #[test]
    fn other_repositories_do_not() {
        let shop = id("https://github.com/acme/shop.git");
        assert!(!id("https://github.com/acme/shop2.git").names(&shop));
        assert!(!id("https://github.com/other/shop.git").names(&shop));
        assert!(!id("https://gitlab.com/acme/shop.git").names(&shop));
        assert!(!id("https://github.com/acme/shop/extra").names(&shop));
        assert!(id("git@gitlab.example.com:group/sub/project.git")
            .names(&id("https://gitlab.example.com/group/sub/project.git")));
    }

    #[test]
    fn local_paths_name_no_remote() {
        for text in [
            "file:///srv/git/app.git",
            "/srv/git/app.git",
            "./app",
            "",
            "shop",
            "C:\\x\\y",
        ] {
            assert_eq!(RepoId::parse(text), None, "{text}");
        }
    }
}
