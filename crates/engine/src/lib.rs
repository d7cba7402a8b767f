//! Accessrail's use cases: connect (Test then Save), scan, identity import, matching and the
//! reports built on them. TestRail details stay in [`connector`]; SQL stays in the store.

pub mod access;
pub mod check;
pub mod connector;
mod engine;
mod error;
pub mod evidence;
pub mod flows;
pub mod identities;
pub mod jobs;
pub mod lease;
pub mod offboard;
pub mod provision;
pub mod report;
pub mod reviews;
pub mod scan;
pub mod schedule;
pub mod scim;
pub mod secrets;
pub mod time_fmt;
pub mod tokens;

pub use engine::{Clock, ConnectRequest, DEFAULT_LEASE_TTL_SECS, Engine, SystemClock, Target};
pub use error::{EngineError, EngineResult, ErrorCode};
pub use testrail_client::{ApiKey, Event};
