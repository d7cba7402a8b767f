//! The store conformance suite: every test is generic over a [`Backend`], so each `Store`
//! implementation runs the very same tests (`tests/sqlite.rs` instantiates it for SQLite; a
//! second back end adds one file that does the same).

use std::future::Future;

use accessrail_store::Store;

pub mod evidence;
pub mod listing;
pub mod reviews;
pub mod scim;
pub mod story;

/// How the suite gets stores of one back end.
pub trait Backend: Send + Sync {
    type S: Store;
    /// A new, empty store (its own database).
    fn fresh(&self) -> impl Future<Output = Self::S> + Send;
    /// The store last made by `fresh`, closed and opened again (what survives a restart).
    fn reopen(&self, store: Self::S) -> impl Future<Output = Self::S> + Send;
}

/// One `#[tokio::test]` per suite test, for a back end made by `$make`.
#[macro_export]
macro_rules! conformance_suite {
    ($make:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn versions_history_failures_leases_identities() {
            conformance::story::versions_history_failures_leases_identities(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn provisioning_during_a_scan_is_neither_lost_nor_duplicated() {
            conformance::story::provisioning_during_a_scan_is_neither_lost_nor_duplicated(&$make)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn revisions_survive_a_removed_connection_and_provisioning_before_the_first_scan() {
            conformance::story::revisions_survive_a_removed_connection_and_provisioning_before_the_first_scan(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_scan_that_lost_its_lease_saves_nothing() {
            conformance::story::a_scan_that_lost_its_lease_saves_nothing(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn shared_sessions_plans_and_settings() {
            conformance::story::shared_sessions_plans_and_settings(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn logs_page_newest_first() {
            conformance::story::logs_page_newest_first(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_account_and_setup_keys() {
            conformance::story::one_account_and_setup_keys(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn project_access_history_and_a_change_made_during_a_scan() {
            conformance::story::project_access_history_and_a_change_made_during_a_scan(&$make)
                .await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn evidence_is_kept_once_with_latest_and_counts() {
            conformance::evidence::evidence_is_kept_once_with_latest_and_counts(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn review_records_and_their_rules() {
            conformance::reviews::review_records_and_their_rules(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn scim_tokens_resources_and_the_cap() {
            conformance::scim::scim_tokens_resources_and_the_cap(&$make).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn the_listing_query_equals_the_in_memory_reference() {
            conformance::listing::the_listing_query_equals_the_in_memory_reference(&$make).await;
        }
    };
}
