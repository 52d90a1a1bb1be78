//! Standard Webhooks signatures (<https://www.standardwebhooks.com>): each
//! request carries `webhook-id` (the same for every attempt of one message,
//! so a receiver drops repeats), `webhook-timestamp` (seconds, of this
//! attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
//! "id.timestamp.body">`, keyed with the secret's bytes (`whsec_` and base64).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// How many bytes a key may hold.
const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// A webhook's signing key. Its `Debug` does not show it.
pub struct SigningKey(Vec<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    /// Reads `whsec_<base64 of 24 to 64 bytes>`. The error never repeats
    /// the secret.
    pub fn parse(secret: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`secret` must be `{PREFIX}` and the base64 of 24 to 64 random bytes: {why}")
        };
        let encoded = secret
            .strip_prefix(PREFIX)
            .ok_or_else(|| bad("it does not start with whsec_"))?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| bad("what follows whsec_ is not base64"))?;
        if !KEY_BYTES.contains(&bytes.len()) {
            return Err(bad(&format!("it holds {} bytes", bytes.len())));
        }
        Ok(Self(bytes))
    }

    /// The `whsec_` form of a key of `random` bytes (24 to 64 of them).
    pub fn encode(random: &[u8]) -> String {
        assert!(KEY_BYTES.contains(&random.len()), "a key of 24 to 64 bytes");
        format!("{PREFIX}{}", STANDARD.encode(random))
    }

    /// The `webhook-signature` header's value for one attempt.
    pub fn sign(&self, id: &str, timestamp: i64, body: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body.as_bytes());
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the specification's reference libraries.
    #[test]
    fn signs_like_the_reference_implementation() {
        let key = SigningKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            key.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_checked_without_being_repeated() {
        for bad in [
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_not base64!",
            "whsec_c2hvcnQ=",
        ] {
            let err = SigningKey::parse(bad).unwrap_err();
            assert!(err.contains("whsec_"), "{err}");
            assert!(
                !err.contains(&bad[6..]),
                "the error repeats the secret: {err}"
            );
        }
        let made = SigningKey::encode(&[7; 32]);
        assert!(SigningKey::parse(&made).is_ok());
        assert_eq!(
            format!("{:?}", SigningKey::parse(&made).unwrap()),
            "SigningKey(…)"
        );
    }
}
