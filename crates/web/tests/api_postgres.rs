//! The web API suite (`api_suite`) on PostgreSQL, each test its own database on a real server:
//! `ACCESSRAIL_TEST_DATABASE_URL` names one (`postgres://...`); without it the first test
//! starts a throwaway cluster with `scripts/pg-test-cluster.sh` (stopped and deleted when this
//! test process exits, even if it is killed). Both come from `accessrail-test-support`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api_suite;
mod common;

use api_suite::Backend;

api_suite!(Backend::Postgres);
