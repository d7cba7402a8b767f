//! The store conformance suite on PostgreSQL, each store its own database on a real server:
//! `ACCESSRAIL_TEST_DATABASE_URL` names one (`postgres://...`); without it the suite starts a
//! throwaway cluster with `scripts/pg-test-cluster.sh` (stopped and deleted when this test
//! process exits, even if it is killed). Both come from `accessrail-test-support`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::sync::Mutex;

use accessrail_store::PgStore;
use accessrail_test_support::fresh_postgres_url;
use conformance::Backend;

#[derive(Default)]
struct Postgres {
    last: Mutex<Option<String>>,
}

impl Backend for Postgres {
    type S = PgStore;

    async fn fresh(&self) -> PgStore {
        let url = fresh_postgres_url().await;
        *self.last.lock().unwrap() = Some(url.clone());
        PgStore::open(&url).await.unwrap()
    }

    async fn reopen(&self, store: PgStore) -> PgStore {
        store.close().await;
        let url = self.last.lock().unwrap().clone().expect("a store was made");
        PgStore::open(&url).await.unwrap()
    }
}

conformance_suite!(Postgres::default());
