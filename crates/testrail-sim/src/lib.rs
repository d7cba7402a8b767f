//! `testrail-sim`: a faithful simulator of the TestRail API v2 for users, roles, groups,
//! projects and the artefacts that carry activity (suites, cases, runs, plans, tests and
//! results), with deterministic seeded data, edition and version switches, a rate limit, fault
//! injection and a control API under `/__sim/`.
//!
//! It keeps its own models, written from TestRail's API reference; it shares no types with any
//! client, so a misunderstanding of TestRail cannot hide in a shared type.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use testrail_sim::{Sim, SeedConfig, Settings, SimServer};
//! let sim = Sim::new(SeedConfig::default(), Settings::default());
//! let server = SimServer::start("127.0.0.1:0".parse().unwrap(), sim).await?;
//! println!("{}", server.base_url());
//! # Ok(()) }
//! ```

mod api;
pub mod artefacts;
pub mod clock;
mod control;
pub mod model;
pub mod seed;
mod server;
mod sim;
pub mod state;

pub use api::texts;
pub use clock::{Clock, ManualClock, SystemClock};
pub use model::{
    Edition, Faults, NO_ACCESS_ROLE_ID, Project, Settings, Stats, User, UsersPagination, Version,
};
pub use seed::SeedConfig;
pub use server::{SimServer, router};
pub use sim::Sim;
pub use state::{Instance, ProjectPatch};
