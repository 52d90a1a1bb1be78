//! Hooks as strangers send them: any body, any event, signed or not, through
//! the checks and the reading every source's route does. Nothing may panic;
//! whatever is wrong is an answer.
#![no_main]

use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use slipway_provider::hooks::SOURCES;
use slipway_provider::Secret;

const SECRET: &str = "fuzz-secret";
const EVENTS: &[&str] = &[
    "push",
    "deployment",
    "ping",
    "Push Hook",
    "Pipeline Hook",
    "Tag Push Hook",
    "",
    "\u{0}",
];

fuzz_target!(|input: &[u8]| {
    let Some((&control, body)) = input.split_first() else {
        return;
    };
    let source = &SOURCES[control as usize % SOURCES.len()];
    let event = EVENTS[(control as usize / SOURCES.len()) % EVENTS.len()];
    // Most inputs are signed as their sender would sign them, so that the
    // reading behind the check is reached; the others are not.
    let signed = control & 0x80 == 0;
    let mut headers = HeaderMap::new();
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("x-github-event", event.to_owned());
    set("x-gitlab-event", event.to_owned());
    set("content-type", "application/json".to_owned());
    if signed {
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        set(
            "x-hub-signature-256",
            format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        );
        set("x-gitlab-token", SECRET.to_owned());
        set("authorization", format!("Bearer {SECRET}"));
    }
    let _ = source.read(&Secret::new(SECRET), &headers, body);
});
