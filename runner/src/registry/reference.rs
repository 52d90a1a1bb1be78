//! Image references as the Docker CLI reads them (`distribution/reference`):
//! `[registry/]path[:tag][@digest]`, where the first part of the path is a
//! registry only when it looks like a host (a `.` or a `:` in it, or
//! `localhost`); otherwise the image is on Docker Hub.

/// The registry of images whose name names none.
pub const DOCKER_HUB: &str = "docker.io";

/// An image reference, split as `docker` splits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    /// The reference as written (in Compose).
    pub written: String,
    /// The registry's host and port (`127.0.0.1:5000`, `ghcr.io`), or
    /// [`DOCKER_HUB`].
    pub registry: String,
    /// Whether the name says which registry it is in, rather than meaning
    /// Docker Hub by default.
    pub names_registry: bool,
    /// The repository as `docker` prints it: `shop/web`, `nginx`,
    /// `127.0.0.1:5000/shop/web`.
    pub name: String,
    pub tag: Option<String>,
    /// `sha256:...`, when the reference is pinned already.
    pub digest: Option<String>,
}

impl ImageRef {
    /// Splits `image`. Only an empty name is refused here; the engine judges
    /// the rest (it answers "invalid reference format" with the reason).
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        if image.trim().is_empty() {
            return Err("the image name is empty".into());
        }
        let (rest, digest) = match image.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest.to_owned())),
            None => (image, None),
        };
        // `host:5000/name` has a colon that is not a tag.
        let (path, tag) = match rest.rsplit_once(':') {
            Some((path, tag)) if !tag.contains('/') => (path, Some(tag.to_owned())),
            _ => (rest, None),
        };
        let (registry, names_registry, remainder) = match path.split_once('/') {
            Some((first, remainder)) if is_host(first) => (first, true, remainder),
            _ => (DOCKER_HUB, false, path),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB
        } else {
            registry
        };
        let name = if registry == DOCKER_HUB {
            match remainder.strip_prefix("library/") {
                Some(official) if !official.contains('/') => official.to_owned(),
                _ => remainder.to_owned(),
            }
        } else {
            format!("{registry}/{remainder}")
        };
        Ok(ImageRef {
            written: image.to_owned(),
            registry: registry.to_owned(),
            names_registry,
            name,
            tag,
            digest,
        })
    }

    /// The reference pinned to `digest` as `docker stack deploy` writes it:
    /// `name:tag@digest` (`latest` when no tag is written), Docker Hub's
    /// names in their short form. A reference that carries a digest already
    /// is kept as written.
    pub fn pinned(&self, digest: &str) -> String {
        if self.digest.is_some() {
            return self.written.clone();
        }
        let tag = self.tag.as_deref().unwrap_or("latest");
        format!("{}:{tag}@{digest}", self.name)
    }
}

/// Whether the first part of a path names a registry.
fn is_host(part: &str) -> bool {
    part.contains(['.', ':']) || part == "localhost" || part.chars().any(|c| c.is_ascii_uppercase())
}

/// The digest of a pinned reference (`name:tag@sha256:...`), if it has one.
pub fn digest_of(image: &str) -> Option<&str> {
    image.split_once('@').map(|(_, digest)| digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(image: &str) -> ImageRef {
        ImageRef::parse(image).unwrap()
    }

    #[test]
    fn names_split_as_docker_splits_them() {
        let hub = parse("slipway-test/busybox:latest");
        assert_eq!(
            (
                hub.registry.as_str(),
                hub.names_registry,
                hub.name.as_str(),
                hub.tag.as_deref()
            ),
            ("docker.io", false, "slipway-test/busybox", Some("latest"))
        );
        let local = parse("127.0.0.1:5443/shop/web:main");
        assert_eq!(local.registry, "127.0.0.1:5443");
        assert!(local.names_registry);
        assert_eq!(local.name, "127.0.0.1:5443/shop/web");
        assert_eq!(local.tag.as_deref(), Some("main"));
        let untagged = parse("localhost:5000/web");
        assert_eq!(
            (untagged.registry.as_str(), untagged.tag),
            ("localhost:5000", None)
        );
        assert_eq!(parse("localhost/web").registry, "localhost");
        assert_eq!(parse("ghcr.io/acme/web").registry, "ghcr.io");
        let official = parse("docker.io/library/nginx:1.25");
        assert_eq!(
            (official.registry.as_str(), official.name.as_str()),
            ("docker.io", "nginx")
        );
        assert!(official.names_registry);
        assert_eq!(parse("index.docker.io/acme/web").name, "acme/web");
        assert!(ImageRef::parse("").is_err());
    }

    #[test]
    fn pinning_writes_what_docker_stack_deploy_writes() {
        let digest = "sha256:77260f7e42a6560edcd235a6328942b04bf01adfaeff7d381456a57165d32b72";
        assert_eq!(
            parse("127.0.0.1:5443/shop/web:main").pinned(digest),
            format!("127.0.0.1:5443/shop/web:main@{digest}")
        );
        assert_eq!(
            parse("docker.io/library/nginx").pinned(digest),
            format!("nginx:latest@{digest}")
        );
        let pinned = format!("127.0.0.1:5000/web:1@{digest}");
        assert_eq!(parse(&pinned).pinned("sha256:other"), pinned);
        assert_eq!(digest_of(&pinned), Some(digest));
        assert_eq!(digest_of("web:1"), None);
    }
}
