//! The store conformance suite on SQLite, each store a real database file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;

use std::path::PathBuf;
use std::sync::Mutex;

use accessrail_store::SqliteStore;
use conformance::Backend;

#[derive(Default)]
struct Sqlite {
    dirs: Mutex<Vec<tempfile::TempDir>>,
    last: Mutex<Option<PathBuf>>,
}

impl Backend for Sqlite {
    type S = SqliteStore;

    async fn fresh(&self) -> SqliteStore {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        self.dirs.lock().unwrap().push(dir);
        *self.last.lock().unwrap() = Some(path.clone());
        SqliteStore::open(&path).await.unwrap()
    }

    async fn reopen(&self, store: SqliteStore) -> SqliteStore {
        store.close().await;
        let path = self.last.lock().unwrap().clone().expect("a store was made");
        SqliteStore::open(&path).await.unwrap()
    }
}

conformance_suite!(Sqlite::default());
