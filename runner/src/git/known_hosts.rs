//! Checking an SSH server's host key against an OpenSSH `known_hosts` file.
//!
//! What OpenSSH writes and reads: plain and hashed (`|1|salt|hash`, Debian's
//! default `HashKnownHosts yes`) host fields, comma-separated patterns with
//! `*`/`?` wildcards and `!` negations, `[host]:port` for servers on a port
//! other than 22, `#` comments, and the `@revoked` marker (`@cert-authority`
//! lines are skipped: libssh2 knows no host certificates).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// A server's host key as it came over the wire.
pub(crate) struct HostKey<'a> {
    /// The key blob, in SSH wire format.
    pub(crate) blob: &'a [u8],
    /// Its type as libgit2 named it, for when the blob says none.
    pub(crate) kind: &'a str,
}

impl HostKey<'_> {
    /// The type named inside the blob (`ssh-ed25519`, `ecdsa-sha2-nistp256`,
    /// ...), as `known_hosts` lines name it.
    pub(crate) fn kind(&self) -> &str {
        let named = self.blob.get(..4).and_then(|len| {
            let len = u32::from_be_bytes(len.try_into().ok()?) as usize;
            std::str::from_utf8(self.blob.get(4..4 + len)?).ok()
        });
        named.unwrap_or(self.kind)
    }

    /// OpenSSH's fingerprint: `SHA256:` and the unpadded base64 of the
    /// blob's SHA-256.
    pub(crate) fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.blob);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }
}

/// The name `known_hosts` files know a server by: `host` on port 22,
/// `[host]:port` on any other.
pub(crate) fn host_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// What a `known_hosts` file says about a server's key.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// A line holds this key for this host.
    Known,
    /// A `@revoked` line holds this key.
    Revoked { line: usize },
    /// Lines for this host hold other keys of the same type: the server's
    /// key changed, or someone is in between.
    Changed { line: usize },
    /// Lines for this host hold keys of other types only.
    OtherTypes { kinds: Vec<String> },
    /// No line is about this host.
    Unknown,
}

/// Checks `key` of the server known as `name` (see [`host_name`]) against
/// the text of a `known_hosts` file.
pub(crate) fn check(text: &str, name: &str, key: &HostKey<'_>) -> Verdict {
    let name = name.to_ascii_lowercase();
    let kind = key.kind();
    let mut changed = None;
    let mut other_kinds: Vec<String> = Vec::new();
    let mut known = false;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next();
        let marker = first.filter(|f| f.starts_with('@'));
        if marker.is_some() {
            first = fields.next();
        }
        let (Some(hosts), Some(line_kind), Some(value)) = (first, fields.next(), fields.next())
        else {
            continue;
        };
        if !hosts_match(hosts, &name) {
            continue;
        }
        let same_key = line_kind == kind
            && base64::engine::general_purpose::STANDARD
                .decode(value)
                .is_ok_and(|blob| blob == key.blob);
        match marker {
            Some("@revoked") if same_key => return Verdict::Revoked { line: index + 1 },
            Some(_) => {}
            None if same_key => known = true,
            None if line_kind == kind => {
                changed.get_or_insert(index + 1);
            }
            None => {
                if !other_kinds.iter().any(|k| k == line_kind) {
                    other_kinds.push(line_kind.to_owned());
                }
            }
        }
    }
    if known {
        Verdict::Known
    } else if let Some(line) = changed {
        Verdict::Changed { line }
    } else if !other_kinds.is_empty() {
        Verdict::OtherTypes { kinds: other_kinds }
    } else {
        Verdict::Unknown
    }
}

/// Whether a line's host field names `name`: one hashed name, or patterns
/// of which one matches and no negated one does.
fn hosts_match(hosts: &str, name: &str) -> bool {
    if let Some(hashed) = hosts.strip_prefix("|1|") {
        return hashed_match(hashed, name);
    }
    let mut matched = false;
    for pattern in hosts.split(',') {
        let pattern = pattern.to_ascii_lowercase();
        match pattern.strip_prefix('!') {
            Some(negated) if glob(negated.as_bytes(), name.as_bytes()) => return false,
            Some(_) => {}
            None => matched |= glob(pattern.as_bytes(), name.as_bytes()),
        }
    }
    matched
}

/// `salt|hash`, both base64: HMAC-SHA1 of the name keyed with the salt.
fn hashed_match(hashed: &str, name: &str) -> bool {
    let engine = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else {
        return false;
    };
    let (Ok(salt), Ok(hash)) = (engine.decode(salt), engine.decode(hash)) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(&salt) else {
        return false;
    };
    mac.update(name.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's host patterns: `*` any run of characters, `?` any one.
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| glob(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ed25519 public key blob: type name, then 32 bytes.
    fn blob(fill: u8) -> Vec<u8> {
        let mut blob = Vec::new();
        blob.extend_from_slice(&11u32.to_be_bytes());
        blob.extend_from_slice(b"ssh-ed25519");
        blob.extend_from_slice(&32u32.to_be_bytes());
        blob.extend_from_slice(&[fill; 32]);
        blob
    }

    fn line(hosts: &str, blob: &[u8]) -> String {
        let encoded = base64::engine::general_purpose::STANDARD.encode(blob);
        format!("{hosts} ssh-ed25519 {encoded}\n")
    }

    fn key(blob: &[u8]) -> HostKey<'_> {
        HostKey {
            blob,
            kind: "unknown",
        }
    }

    #[test]
    fn a_server_on_another_port_is_known_only_as_host_and_port_in_brackets() {
        let ours = blob(1);
        let name = host_name("git.example", 2222);
        assert_eq!(name, "[git.example]:2222");
        assert_eq!(key(&ours).kind(), "ssh-ed25519");
        let file = line("[git.example]:2222", &ours);
        assert_eq!(check(&file, &name, &key(&ours)), Verdict::Known);
        // The port-22 entry, or another port's, is not about this server.
        let file = line("git.example", &ours) + &line("[git.example]:2200", &ours);
        assert_eq!(check(&file, &name, &key(&ours)), Verdict::Unknown);
        assert_eq!(
            check(&line("git.example", &ours), "git.example", &key(&ours)),
            Verdict::Known
        );
    }

    #[test]
    fn another_key_of_the_same_type_is_a_changed_key() {
        let (ours, theirs) = (blob(1), blob(2));
        let file = format!("# a comment\n\n{}", line("a.example,git.example", &theirs));
        assert_eq!(
            check(&file, "git.example", &key(&ours)),
            Verdict::Changed { line: 3 }
        );
        let ecdsa = "git.example ecdsa-sha2-nistp256 AAAAE2VjZHNh\n";
        assert_eq!(
            check(ecdsa, "git.example", &key(&ours)),
            Verdict::OtherTypes {
                kinds: vec!["ecdsa-sha2-nistp256".into()]
            }
        );
    }

    #[test]
    fn hashed_names_patterns_negations_and_revocations() {
        let ours = blob(1);
        // What `ssh-keygen -H` writes for `[127.0.0.1]:2222` (with a fixed salt).
        let salt = [0u8; 20];
        let mut mac = Hmac::<Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[127.0.0.1]:2222");
        let engine = base64::engine::general_purpose::STANDARD;
        let hashed = format!(
            "|1|{}|{}",
            engine.encode(salt),
            engine.encode(mac.finalize().into_bytes())
        );
        let name = host_name("127.0.0.1", 2222);
        assert_eq!(
            check(&line(&hashed, &ours), &name, &key(&ours)),
            Verdict::Known
        );
        assert_eq!(
            check(&line(&hashed, &ours), "127.0.0.1", &key(&ours)),
            Verdict::Unknown
        );

        assert_eq!(
            check(&line("*.example", &ours), "GIT.example", &key(&ours)),
            Verdict::Known
        );
        assert_eq!(
            check(
                &line("*.example,!evil.example", &ours),
                "evil.example",
                &key(&ours)
            ),
            Verdict::Unknown
        );
        assert_eq!(
            check(&line("git?.example", &ours), "git1.example", &key(&ours)),
            Verdict::Known
        );

        let revoked = format!("@revoked {}", line("*", &ours)) + &line("git.example", &ours);
        assert_eq!(
            check(&revoked, "git.example", &key(&ours)),
            Verdict::Revoked { line: 1 }
        );
    }
}
