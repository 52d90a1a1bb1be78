//! Webhooks signed per the Standard Webhooks specification: the signature
//! itself is [`slipway_secret::signature::webhook`]; this is where the API
//! makes keys, reads them as input and names each message.

pub use slipway_secret::signature::webhook::SigningKey;

use crate::error::{ApiError, ApiResult};

/// Reads a webhook's secret, as `setNotification` takes it.
pub fn parse(secret: &str) -> ApiResult<SigningKey> {
    SigningKey::parse(secret).map_err(ApiError::BadInput)
}

/// A new secret of 32 random bytes, in its `whsec_` form.
pub fn generate() -> ApiResult<String> {
    Ok(SigningKey::encode(&crate::sessions::random_bytes::<32>()?))
}

/// The `webhook-id` of a delivery: stable across its attempts.
pub fn message_id(delivery: i64) -> String {
    format!("msg_slipway_{delivery}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_secrets_are_new_and_valid() {
        let made = generate().unwrap();
        assert!(parse(&made).is_ok());
        assert_ne!(made, generate().unwrap());
        let err = parse("whsec_c2hvcnQ=").unwrap_err().message().to_owned();
        assert!(err.contains("whsec_"), "{err}");
    }
}
