//! Slack's request signatures
//! (<https://api.slack.com/authentication/verifying-requests-from-slack>):
//! `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">`,
//! keyed with the app's signing secret, and `X-Slack-Request-Timestamp`
//! within five minutes of now, so that a captured request cannot be replayed.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Secret;

/// How far Slack's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// Checks that Slack signed `body` at a time within [`TOLERANCE_SECS`] of
/// `now`, given the two headers as they came (`None` when missing or not
/// text). The error says what was wrong, never what the signature should be.
pub fn verify(
    secret: &Secret,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    let timestamp = timestamp
        .ok_or("no X-Slack-Request-Timestamp")?
        .parse::<i64>()
        .map_err(|_| "X-Slack-Request-Timestamp is not a number of seconds")?;
    let off = now.saturating_sub(timestamp);
    if off.saturating_abs() > TOLERANCE_SECS {
        return Err(format!(
            "X-Slack-Request-Timestamp is {off}s from now, more than {TOLERANCE_SECS}s: a replay, or a clock off"
        ));
    }
    let given = signature
        .ok_or("no X-Slack-Signature")?
        .strip_prefix("v0=")
        .and_then(|hex| hex::decode(hex).ok())
        .ok_or("X-Slack-Signature is not v0=<hex>")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "the signing secret cannot key an HMAC")?;
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| {
        "X-Slack-Signature does not match the body: not signed with this app's signing secret"
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Slack's documented example.
    const SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SIGNATURE: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    const AT: i64 = 1531420618;

    fn check(
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<(), String> {
        verify(&Secret::new(SECRET), timestamp, signature, body, now)
    }

    #[test]
    fn slack_s_example_is_signed_by_slack() {
        assert_eq!(
            check(Some("1531420618"), Some(SIGNATURE), BODY, AT + 60),
            Ok(())
        );
        assert_eq!(
            check(Some("1531420618"), Some(SIGNATURE), BODY, AT - 300),
            Ok(())
        );
    }

    #[test]
    fn a_request_out_of_the_window_is_a_replay() {
        let late = check(Some("1531420618"), Some(SIGNATURE), BODY, AT + 301).unwrap_err();
        assert!(late.contains("replay"), "{late}");
        let far = check(Some(&i64::MIN.to_string()), Some(SIGNATURE), BODY, i64::MAX).unwrap_err();
        assert!(far.contains("replay"), "{far}");
    }

    #[test]
    fn what_is_wrong_is_named() {
        let tampered = check(
            Some("1531420618"),
            Some(SIGNATURE),
            b"token=x&text=deploy",
            AT,
        )
        .unwrap_err();
        assert!(tampered.contains("does not match"), "{tampered}");
        let other_time = check(Some("1531420619"), Some(SIGNATURE), BODY, AT).unwrap_err();
        assert!(other_time.contains("does not match"), "{other_time}");
        for (timestamp, signature, says) in [
            (None, Some(SIGNATURE), "no X-Slack-Request-Timestamp"),
            (Some("soon"), Some(SIGNATURE), "not a number"),
            (Some("1531420618"), None, "no X-Slack-Signature"),
            (Some("1531420618"), Some("v1=00"), "not v0=<hex>"),
            (Some("1531420618"), Some("v0=zz"), "not v0=<hex>"),
        ] {
            let err = check(timestamp, signature, BODY, AT).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
    }
}
