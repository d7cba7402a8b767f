//! What both back ends share about reviews: the digest of a reviewer's decisions as submitted.

use accessrail_domain::review::{Submitted, submission_digest};

/// One submitted decision: `(item, email, decision, action, comment)`.
pub(crate) type SubmittedRow = (i64, String, Option<String>, Option<String>, Option<String>);

pub(crate) fn digest(rows: &[SubmittedRow]) -> String {
    let items: Vec<Submitted<'_>> = rows
        .iter()
        .map(|r| Submitted {
            item: r.0,
            email: &r.1,
            decision: r.2.as_deref(),
            action: r.3.as_deref(),
            comment: r.4.as_deref(),
        })
        .collect();
    submission_digest(&items)
}
