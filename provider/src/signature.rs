//! Proving who sent a hook: GitHub's HMAC signature over the raw body, and the
//! shared tokens of GitLab and the generic hook. Every comparison takes the same
//! time whatever the input, so timing tells an attacker nothing.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Why a GitHub signature was refused. The messages go to the sender as they are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header: set a secret on the GitHub webhook")]
    Missing,
    #[error("X-Hub-Signature-256 must be `sha256=` and 64 hex digits")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body: check the webhook's secret")]
    Mismatch,
}

/// Checks `header` (`sha256=<hex>`) against the HMAC-SHA256 of `body` with
/// `secret`, in constant time, before anything looks at the body.
pub fn verify_github(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    let mut given = [0u8; 32];
    hex::decode_to_slice(hex_digest, &mut given).map_err(|_| SignatureError::Malformed)?;
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    // `verify_slice` compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// The `X-Hub-Signature-256` value GitHub sends for `body` signed with `secret`.
pub fn sign_github(secret: &[u8], body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `given` equals `expected`, in time that depends on neither: both are
/// hashed first, so not even the length of the secret shows.
pub fn token_matches(expected: &str, given: &str) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let given = Sha256::digest(given.as_bytes());
    expected.ct_eq(&given).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GitHub's documented test vector.
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] = b"Hello, World!";
    const SIGNATURE: &str =
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn github_test_vector() {
        assert_eq!(sign_github(SECRET, BODY), SIGNATURE);
        assert_eq!(verify_github(SECRET, BODY, Some(SIGNATURE)), Ok(()));
    }

    #[test]
    fn refuses_what_does_not_match() {
        assert_eq!(
            verify_github(SECRET, BODY, None),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_github(SECRET, BODY, Some("sha1=0123")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_github(SECRET, BODY, Some("sha256=xyz")),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_github(SECRET, b"Hello, World?", Some(SIGNATURE)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_github(b"another secret", BODY, Some(SIGNATURE)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn tokens() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cret", "s3cre"));
        assert!(!token_matches("s3cret", ""));
    }
}
