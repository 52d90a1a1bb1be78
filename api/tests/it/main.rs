#![allow(unreachable_pub)]

//! Integration tests of slipway-api: the real server on 127.0.0.1 over real
//! SQLite files and real PostgreSQL databases (each `async` test runs on both).

mod applications;
mod audit;
mod auth;
mod chatops;
mod checks;
mod claims;
mod commits;
mod deployments;
mod drift;
mod events;
mod gates;
mod graphql_http;
mod heavy;
mod http;
mod instances;
mod limits;
mod logs;
mod metrics;
mod notifications;
mod plans;
mod pools;
mod properties;
mod queue;
mod releases;
mod replicas;
mod sentry;
mod sockets;
mod timeouts;
mod web;
