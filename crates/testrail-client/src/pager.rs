//! Walking TestRail's bulk lists: the paged envelope (`offset`, `limit`, `size`, `_links`) and
//! the legacy bare array of older `get_users`.

use std::collections::HashMap;
use std::collections::hash_map::{Entry, RandomState};
use std::hash::{BuildHasher, Hasher};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{Client, On400, decode};
use crate::error::{Error, ErrorKind};
use crate::models::HasId;
use crate::retry::Event;

/// Items per request: TestRail's maximum.
pub const PAGE_SIZE: usize = 250;

/// The largest id a list item may carry: TestRail's ids are signed 64-bit integers (PHP's and
/// SQL's), so anything larger is not a TestRail id, and would not survive a round trip through
/// an SQL `INTEGER` either.
pub const MAX_ID: u64 = i64::MAX as u64;

/// The pages a walk of at most `items` items may take: full pages, plus 10% and 10 more for
/// re-fetched repeats and a last empty page.
pub fn pages_for(items: u64) -> u64 {
    let full = items.div_ceil(PAGE_SIZE as u64);
    full.saturating_add(full / 10).saturating_add(10)
}

#[derive(Debug, Deserialize)]
struct Links {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Envelope<T> {
    #[serde(default)]
    limit: Option<u64>,
    #[serde(default, rename = "_links")]
    links: Option<Links>,
    #[serde(default)]
    users: Option<Vec<T>>,
    #[serde(default)]
    groups: Option<Vec<T>>,
    #[serde(default)]
    roles: Option<Vec<T>>,
    #[serde(default)]
    projects: Option<Vec<T>>,
    #[serde(default)]
    suites: Option<Vec<T>>,
    #[serde(default)]
    cases: Option<Vec<T>>,
    #[serde(default)]
    runs: Option<Vec<T>>,
    #[serde(default)]
    plans: Option<Vec<T>>,
    #[serde(default)]
    tests: Option<Vec<T>>,
    #[serde(default)]
    results: Option<Vec<T>>,
}

/// Pages of one list. Walks by `offset` with `limit=250`; stops when `_links.next` is null or a
/// page is short; a page that brings no new ids is fetched once more and then ends the walk
/// with an error, never a loop.
///
/// Every item is checked before it is handed out:
/// - its id is 1 to [`MAX_ID`], and every id it refers to (role, groups, members, projects)
///   at most [`MAX_ID`]; otherwise [`ErrorKind::UpstreamBug`] naming the record;
/// - an id seen before is dropped when the record is the same (a repeated page, or a record
///   that shifted across a page boundary), and is [`ErrorKind::UpstreamBug`] naming the id
///   when the data differ;
/// - the walk ends with [`ErrorKind::ListTooLong`] once it passes its cap on distinct items
///   ([`Pager::max_items`], by default the client's) or on pages ([`pages_for`] the item cap,
///   or [`Pager::max_pages`]).
#[derive(Debug)]
pub struct Pager<T> {
    client: Client,
    method: &'static str,
    route: String,
    key: &'static str,
    on400: On400,
    offset: usize,
    done: bool,
    /// Each id seen, with a fingerprint of its record.
    seen: HashMap<u64, u64>,
    /// Keys the fingerprints, per walk and unpredictable, so a server cannot aim a collision.
    fingerprints: RandomState,
    requests: u32,
    max_items: Option<u64>,
    max_pages: Option<u64>,
    _items: std::marker::PhantomData<fn() -> T>,
}

enum PageShape<T> {
    Envelope {
        items: Vec<T>,
        limit: usize,
        has_next: bool,
    },
    Array(Vec<T>),
}

impl<T: DeserializeOwned + Serialize + HasId> Pager<T> {
    pub(crate) fn new(
        client: Client,
        method: &'static str,
        route: String,
        key: &'static str,
        on400: On400,
    ) -> Self {
        Self {
            method,
            route,
            key,
            on400,
            offset: 0,
            done: false,
            max_items: client.max_list_items(),
            seen: HashMap::new(),
            fingerprints: RandomState::new(),
            requests: 0,
            max_pages: None,
            client,
            _items: std::marker::PhantomData,
        }
    }

    /// At most `items` distinct items in this walk (`None`: no cap); overrides the client's
    /// [`crate::ClientBuilder::max_list_items`]. Unless [`Pager::max_pages`] is set, the walk
    /// also stops after [`pages_for`]`(items)` pages.
    pub fn max_items(mut self, items: Option<u64>) -> Self {
        self.max_items = items;
        self
    }

    /// At most `pages` requests in this walk, whatever the item cap.
    pub fn max_pages(mut self, pages: u64) -> Self {
        self.max_pages = Some(pages.max(1));
        self
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    fn page_cap(&self) -> Option<u64> {
        self.max_pages.or(self.max_items.map(pages_for))
    }

    fn fail(&mut self, kind: ErrorKind, detail: String) -> Error {
        self.done = true;
        Error::new(kind, self.method).with_detail(detail)
    }

    /// Admits one item: a new id is kept, the same record again is dropped, the same id with
    /// other data or an id out of range is an error.
    fn admit(&mut self, item: &T) -> Result<bool, String> {
        let id = item.id();
        if id == 0 {
            return Err(format!(
                "{} has id 0, which no TestRail record has",
                item.describe()
            ));
        }
        if id > MAX_ID {
            return Err(format!(
                "{} is larger than {MAX_ID}, the largest id TestRail can send (a signed 64-bit integer)",
                item.describe()
            ));
        }
        if let Some((field, bad)) = item.referenced_ids().into_iter().find(|(_, v)| *v > MAX_ID) {
            return Err(format!(
                "{} refers to {field} {bad}, larger than {MAX_ID}, the largest id TestRail can send (a signed 64-bit integer)",
                item.describe()
            ));
        }
        // The record as decoded, so key order, spacing and 1-for-true do not count as changes.
        // Written straight into the hasher: no buffer per record.
        let mut hasher = HashWriter(self.fingerprints.build_hasher());
        let _ = serde_json::to_writer(&mut hasher, item);
        let print = hasher.0.finish();
        match self.seen.entry(id) {
            Entry::Vacant(v) => {
                v.insert(print);
                Ok(true)
            }
            Entry::Occupied(o) if *o.get() == print => Ok(false),
            Entry::Occupied(_) => Err(format!(
                "{} arrived twice with different data (the second time in the page at offset {}); one id cannot be two records. If TestRail was being edited during the walk, try again",
                item.describe(),
                self.offset
            )),
        }
    }

    async fn fetch(&mut self) -> Result<PageShape<T>, Error> {
        if let Some(cap) = self.page_cap()
            && u64::from(self.requests) >= cap
        {
            let items = match (self.max_pages, self.max_items) {
                (None, Some(n)) => format!(" (derived from the cap of {n} {})", self.key),
                _ => String::new(),
            };
            return Err(self.fail(
                ErrorKind::ListTooLong,
                format!(
                    "TestRail was still paging after {cap} pages, the cap for one walk{items}, with {} {} so far; the walk was stopped",
                    self.seen.len(),
                    self.key
                ),
            ));
        }
        let route = format!("{}&limit={PAGE_SIZE}&offset={}", self.route, self.offset);
        self.requests += 1;
        let bytes = self
            .client
            .execute_read(self.method, &route, self.on400)
            .await?;
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace()).copied();
        if first == Some(b'[') {
            return Ok(PageShape::Array(decode(self.method, &bytes)?));
        }
        let env: Envelope<T> = decode(self.method, &bytes)?;
        let items = match self.key {
            "users" => env.users,
            "groups" => env.groups,
            "roles" => env.roles,
            "suites" => env.suites,
            "cases" => env.cases,
            "runs" => env.runs,
            "plans" => env.plans,
            "tests" => env.tests,
            "results" => env.results,
            _ => env.projects,
        }
        .ok_or_else(|| {
            Error::new(ErrorKind::UpstreamBug, self.method)
                .with_detail(format!("the answer has no `{}` list", self.key))
        })?;
        Ok(PageShape::Envelope {
            items,
            limit: env
                .limit
                .map_or(PAGE_SIZE, |l| (l as usize).clamp(1, PAGE_SIZE)),
            has_next: env.links.and_then(|l| l.next).is_some(),
        })
    }

    /// The next page's items not seen before, or `None` when the list is exhausted.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut repeats = 0;
        loop {
            let shape = match self.fetch().await {
                Ok(s) => s,
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
            };
            let (items, legacy, has_more) = match shape {
                PageShape::Envelope {
                    items,
                    limit,
                    has_next,
                } => {
                    let more = has_next && items.len() >= limit;
                    (items, false, more)
                }
                // A bare array is the old unpaged form: complete unless it is exactly one full
                // page, in which case the server may be paging after all.
                PageShape::Array(items) => {
                    let more = items.len() == PAGE_SIZE;
                    (items, true, more)
                }
            };
            let received = items.len();
            let mut fresh = Vec::with_capacity(received);
            for item in items {
                match self.admit(&item) {
                    Ok(true) => fresh.push(item),
                    Ok(false) => {}
                    Err(detail) => return Err(self.fail(ErrorKind::UpstreamBug, detail)),
                }
            }
            if let Some(cap) = self.max_items
                && self.seen.len() as u64 > cap
            {
                return Err(self.fail(
                    ErrorKind::ListTooLong,
                    format!(
                        "TestRail listed more than {cap} {}, the cap for one walk, after {} requests; the walk was stopped",
                        self.key, self.requests
                    ),
                ));
            }
            if received > 0 && fresh.is_empty() {
                if legacy {
                    // The old API ignores offset: the list was complete.
                    self.done = true;
                    return Ok(None);
                }
                repeats += 1;
                if repeats > 1 {
                    self.done = true;
                    return Err(Error::new(ErrorKind::UpstreamBug, self.method).with_detail(format!(
                        "TestRail served the same page again at offset {}; the walk was stopped",
                        self.offset
                    )));
                }
                self.client.emit(Event::Retrying {
                    method: self.method.to_string(),
                    attempt: 1,
                    delay: std::time::Duration::ZERO,
                    reason: format!("page at offset {} repeated an earlier page", self.offset),
                });
                continue;
            }
            self.offset += received;
            self.done = !has_more || received == 0;
            return Ok(Some(fresh));
        }
    }

    /// Every remaining item.
    pub async fn collect_all(mut self) -> Result<Vec<T>, Error> {
        let mut all = Vec::new();
        while let Some(page) = self.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }
}

/// Feeds what a serializer writes to a hasher.
struct HashWriter<H>(H);

impl<H: Hasher> std::io::Write for HashWriter<H> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
