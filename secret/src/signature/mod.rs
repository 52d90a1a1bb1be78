//! HMAC-SHA256 signatures of HTTP requests, both ways: Slack's `v0` on the
//! slash commands Slipway receives ([`slack`]), Standard Webhooks' `v1` on
//! the webhooks it sends ([`webhook`]). Pure functions of what they are
//! given, so that the fuzz targets (`fuzz/`) reach them without a server.

pub mod slack;
pub mod webhook;
