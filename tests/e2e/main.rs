//! End-to-end tests: the real server on 127.0.0.1:0, a real redb file, HTTP.

// Test helpers are not `#[test]` functions, but a panic is still how they
// report a failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chrome;
mod support;
mod tools;

mod access;
mod accounts;
mod agents;
mod analytics;
mod auth;
mod backup;
mod browser;
mod browser_dashboards;
mod browser_teams;
mod cache;
mod cli;
mod concurrency;
mod dashboard;
mod deploy;
mod durability;
mod email;
mod experiments;
mod fuzz;
mod hostile;
mod idempotency;
mod jobs;
mod keys;
mod layout;
mod ledger_flow;
mod lifecycle;
mod limits;
mod messages;
mod metrics;
mod nodes;
mod openapi;
mod pg;
mod process;
mod providers;
mod reconcile;
mod responses;
mod restart;
mod saved_dashboards;
mod schemathesis;
mod scoped_keys;
mod sdk;
mod shared_limits;
mod storage_faults;
mod store_copy;
mod team_figures;
mod teams;
mod thinking;
mod transcriptions;
#[allow(dead_code)]
mod upstream;
mod upstream_selftest;
mod validation;
mod webhooks;
