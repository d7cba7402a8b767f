//! Walking TestRail's bulk lists: the paged envelope (`offset`, `limit`, `size`, `_links`) and
//! the legacy bare array of older `get_users`.

use std::collections::HashSet;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::{Client, On400, decode};
use crate::error::{Error, ErrorKind};
use crate::models::HasId;
use crate::retry::Event;

/// Items per request: TestRail's maximum.
pub const PAGE_SIZE: usize = 250;

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
}

/// Pages of one list. Walks by `offset` with `limit=250`; stops when `_links.next` is null or a
/// page is short; a page that brings no new ids is fetched once more and then ends the walk
/// with an error, never a loop.
#[derive(Debug)]
pub struct Pager<T> {
    client: Client,
    method: &'static str,
    route: String,
    key: &'static str,
    on400: On400,
    offset: usize,
    done: bool,
    seen: HashSet<u64>,
    requests: u32,
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

impl<T: DeserializeOwned + HasId> Pager<T> {
    pub(crate) fn new(
        client: Client,
        method: &'static str,
        route: String,
        key: &'static str,
        on400: On400,
    ) -> Self {
        Self {
            client,
            method,
            route,
            key,
            on400,
            offset: 0,
            done: false,
            seen: HashSet::new(),
            requests: 0,
            _items: std::marker::PhantomData,
        }
    }

    /// Requests sent so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    async fn fetch(&mut self) -> Result<PageShape<T>, Error> {
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
            let fresh: Vec<T> = items
                .into_iter()
                .filter(|i| self.seen.insert(i.id()))
                .collect();
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
