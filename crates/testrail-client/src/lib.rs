//! `testrail-client`: a typed async client for the TestRail API v2 (users, roles, groups,
//! projects, and the artefacts that carry people and times: runs, plans, cases, tests, results). It knows nothing about any application built on it.
//!
//! - Base URL from a Cloud subdomain or a TestRail Server URL ([`BaseUrl`]); requests are built
//!   by hand because TestRail's routes live in the query string (`index.php?/api/v2/...&k=v`).
//! - Lists walk by offset in pages of 250 and accept both the paged envelope and the legacy
//!   bare array ([`Pager`]). A walk is bounded: at most a cap of distinct items (default one
//!   million) and the pages they need; ids must be 1 to `i64::MAX`; a repeated identical
//!   record is dropped, one id with two different records is an error.
//! - Every answer body is read as a stream up to a cap (default 64 MiB), so memory is bounded
//!   by the cap, never by what the server sends.
//! - Retries: 429 honours `Retry-After`; 409, 5xx, timeouts and connection errors back off
//!   exponentially with jitter; 400/401/403/404 never retry; a lost `add_user` answer is
//!   checked with `get_user_by_email` before the request is sent again. An optional request
//!   budget keeps a long walk below the instance's rate limit. Every wait goes through a
//!   replaceable [`Clock`].
//! - One [`Error`] with an [`ErrorKind`] and TestRail's own message. The [`ApiKey`] never
//!   appears in `Debug`, logs or errors.

pub mod artefacts;
mod base_url;
mod client;
pub mod clock;
mod error;
pub mod models;
mod pager;
mod retry;
mod secret;

pub use base_url::{BaseUrl, BaseUrlError};
pub use client::{
    Client, ClientBuilder, DEFAULT_MAX_LIST_ITEMS, DEFAULT_MAX_RESPONSE_BYTES, encode_query_value,
};
pub use clock::{Clock, TokioClock};
pub use error::{Error, ErrorKind};
pub use models::{
    Group, GroupUpdate, NewGroup, NewUser, Project, ProjectGroupRole, ProjectUpdate,
    ProjectUserRole, Role, User, UserUpdate,
};
pub use pager::{MAX_ID, PAGE_SIZE, Pager, pages_for};
pub use retry::{Event, EventHook, RetryPolicy, SharedBudget};
pub use secret::ApiKey;
