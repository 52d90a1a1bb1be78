//! Signatures as strangers present them: Slack's `v0` on a slash command
//! (any timestamp, any signature, any body, under any secret) and Standard
//! Webhooks' `v1` keys (any secret text). Nothing may panic; a Slack check
//! passes exactly when the signature is the HMAC of what came, within the
//! window; a webhook key signs as the specification computes it.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use slipway_secret::signature::{slack, webhook::SigningKey};
use slipway_secret::Secret;

const NOW: i64 = 1_700_000_000;

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, rest)) = input.split_first() else {
        return;
    };
    // Three lines and a body: a secret, a timestamp, a signature.
    let text = String::from_utf8_lossy(rest);
    let mut parts = text.splitn(4, '\n');
    let mut part = || parts.next().unwrap_or("");
    let (secret, timestamp, signature, body) = (part(), part(), part(), part());
    let secret = if secret.is_empty() { "fuzz" } else { secret };

    // Slack, the headers as they came.
    let checked = slack::verify(
        &Secret::new(secret),
        Some(timestamp).filter(|_| control & 1 == 0),
        Some(signature).filter(|_| control & 2 == 0),
        body.as_bytes(),
        NOW,
    );
    if checked.is_ok() {
        let at: i64 = timestamp.parse().unwrap();
        assert!((NOW - at).abs() <= slack::TOLERANCE_SECS);
        let want = hmac(secret.as_bytes(), &[format!("v0:{at}:").as_bytes(), body.as_bytes()]);
        assert_eq!(hex::decode(&signature[3..]).unwrap(), want);
    }

    // Slack, signed as Slack signs, at a time near now or far from it.
    let at = NOW + (i64::from(control as i8) * 5);
    let good = format!("v0={}", hex::encode(hmac(secret.as_bytes(), &[format!("v0:{at}:").as_bytes(), body.as_bytes()])));
    let within = (NOW - at).abs() <= slack::TOLERANCE_SECS;
    let signed = slack::verify(&Secret::new(secret), Some(&at.to_string()), Some(&good), body.as_bytes(), NOW);
    assert_eq!(signed.is_ok(), within, "{signed:?}");
    if within {
        let mut tampered = body.as_bytes().to_vec();
        tampered.push(control);
        assert!(slack::verify(&Secret::new(secret), Some(&at.to_string()), Some(&good), &tampered, NOW).is_err());
    }

    // Standard Webhooks: any text as a secret; a key signs per the spec.
    if let Ok(key) = SigningKey::parse(secret) {
        let bytes = STANDARD.decode(&secret["whsec_".len()..]).unwrap();
        let at = i64::from(control);
        let want = hmac(&bytes, &[format!("{signature}.{at}.").as_bytes(), body.as_bytes()]);
        assert_eq!(key.sign(signature, at, body), format!("v1,{}", STANDARD.encode(want)));
    }
    let raw = rest.get(..24 + usize::from(control) % 41).unwrap_or_default();
    if raw.len() >= 24 {
        let key = SigningKey::parse(&SigningKey::encode(raw)).expect("an encoded key reads back");
        let want = hmac(raw, &[b"msg.1.", body.as_bytes()]);
        assert_eq!(key.sign("msg", 1, body), format!("v1,{}", STANDARD.encode(want)));
    }
});
