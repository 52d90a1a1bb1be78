//! Fakes of the outside services Slipway talks to, each over real HTTP on
//! 127.0.0.1, strict about what it accepts and recording what it received.
//! Only outside services are faked: Slipway's own parts are always real.

pub mod github;
pub mod gitlab;
pub mod sentry;
pub mod slack;
pub mod webhooks;
