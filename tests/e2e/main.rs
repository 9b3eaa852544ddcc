//! End-to-end tests: the real server on 127.0.0.1:0, a real redb file, HTTP.

mod support;

mod auth;
mod concurrency;
mod idempotency;
mod ledger_flow;
mod restart;
mod validation;
