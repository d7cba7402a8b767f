//! Tables on a terminal, stable JSON with `--json`, errors to stderr.

use accessrail_engine::{EngineError, ErrorCode};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

/// Why a command failed, and the exit status that follows. The rule: 2 when the command line
/// or its input was refused before anything was done (a usage error or invalid input), 1 when
/// the command ran and failed, 130 when a signal stopped it.
#[derive(Debug)]
pub enum Failure {
    /// Exit 2.
    Usage(String),
    /// Exit 2 for `invalid_input`, 1 for any other code.
    Failed { code: &'static str, message: String },
    /// Exit 130: SIGINT or SIGTERM stopped the command.
    Interrupted(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Failed { code, .. } if *code == ErrorCode::InvalidInput.as_str() => 2,
            Failure::Failed { .. } => 1,
            Failure::Interrupted(_) => 130,
        }
    }
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
        Failure::Interrupted(m) => ("interrupted", m.as_str()),
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

/// The width tables fit: the terminal's when standard output is one, else `COLUMNS` when set
/// (a script that asks for a width), else none (piped output keeps every value whole).
pub fn table_width() -> Option<u16> {
    if let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size_of(std::io::stdout()) {
        return Some(w);
    }
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|w| *w >= 20)
}

pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_HORIZONTAL_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_truncation_indicator("…")
        .set_header(headers.iter().copied());
    if let Some(w) = table_width() {
        t.set_width(w);
    }
    t
}

/// Prints a table: on a limited width every row stays one line, long values cut with "…"
/// (`--json` has them whole).
pub fn print_table(mut t: Table) {
    if let Some(width) = t.width() {
        for row in t.row_iter_mut() {
            row.max_height(1);
        }
        // Short columns (ids, dates, states) keep their width; the long ones (emails, groups,
        // messages) give way, as long as that leaves them room.
        let widths = t.column_max_content_widths();
        let short: Vec<bool> = widths.iter().map(|w| *w <= SHORT_COLUMN).collect();
        let fixed: usize = widths
            .iter()
            .zip(&short)
            .filter(|(_, s)| **s)
            .map(|(w, _)| usize::from(*w) + 3)
            .sum();
        let flexible = short.iter().filter(|s| !**s).count();
        if flexible > 0 && fixed + flexible * 8 <= usize::from(width) {
            for (column, is_short) in t.column_iter_mut().zip(short) {
                if is_short {
                    column.set_constraint(comfy_table::ColumnConstraint::ContentWidth);
                }
            }
        }
    }
    println!("{t}");
}

/// Columns at most this wide (a date with its zone is 20) are never cut when a table is fitted.
const SHORT_COLUMN: u16 = 22;

pub fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string)
}
