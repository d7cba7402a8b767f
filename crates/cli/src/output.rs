//! Tables on a terminal, stable JSON with `--json`, errors to stderr.

use accessrail_engine::{EngineError, ErrorCode};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// Why a command failed, and the exit status that follows.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2.
    Usage(String),
    /// Exit 1.
    Failed { code: &'static str, message: String },
}

impl From<EngineError> for Failure {
    fn from(e: EngineError) -> Self {
        if e.is_usage() {
            Failure::Usage(e.to_string())
        } else {
            Failure::Failed {
                code: e.code().as_str(),
                message: e.to_string(),
            }
        }
    }
}

impl From<accessrail_store::StoreError> for Failure {
    fn from(e: accessrail_store::StoreError) -> Self {
        Failure::Failed {
            code: ErrorCode::Store.as_str(),
            message: e.to_string(),
        }
    }
}

pub fn fail(code: &'static str, message: impl Into<String>) -> Failure {
    Failure::Failed {
        code,
        message: message.into(),
    }
}

pub fn print_failure(f: &Failure, json: bool) {
    let (code, message) = match f {
        Failure::Usage(m) => ("usage", m.as_str()),
        Failure::Failed { code, message } => (*code, message.as_str()),
    };
    if json {
        eprintln!(
            "{}",
            serde_json::json!({ "error": { "code": code, "message": message } })
        );
    } else {
        eprintln!("accessrail: {message}");
    }
}

pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("accessrail: cannot encode JSON: {e}"),
    }
}

pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.iter().copied());
    t
}

pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}
