//! Exact request accounting: every request the emulator answers on its service routes (not `/_emulator/`),
//! by operation label, status and caller object id; and the work of each paged answer (rows of the store
//! examined, rows serialised), a deterministic measure of what a page costs.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

/// One counted request kind.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatKey {
    pub operation: String,
    pub status: u16,
    /// Object id of the caller (from a valid token), if known.
    pub caller: Option<String>,
}

/// A snapshot of the counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub entries: Vec<StatEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatEntry {
    pub operation: String,
    pub status: u16,
    pub caller: Option<String>,
    pub count: u64,
}

impl StatsSnapshot {
    /// Requests with this operation label (any status, any caller).
    pub fn count(&self, operation: &str) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.operation == operation)
            .map(|e| e.count)
            .sum()
    }

    /// Requests with this label and status.
    pub fn count_status(&self, operation: &str, status: u16) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.operation == operation && e.status == status)
            .map(|e| e.count)
            .sum()
    }

    /// Every request.
    pub fn total(&self) -> u64 {
        self.entries.iter().map(|e| e.count).sum()
    }

    /// Only the requests of one caller.
    #[must_use]
    pub fn for_caller(&self, object_id: &str) -> Self {
        Self {
            entries: self
                .entries
                .iter()
                .filter(|e| {
                    e.caller
                        .as_deref()
                        .is_some_and(|c| c.eq_ignore_ascii_case(object_id))
                })
                .cloned()
                .collect(),
        }
    }

    /// Counts by status.
    pub fn by_status(&self) -> BTreeMap<u16, u64> {
        let mut map = BTreeMap::new();
        for e in &self.entries {
            *map.entry(e.status).or_insert(0) += e.count;
        }
        map
    }

    /// Counts by operation.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        let mut map = BTreeMap::new();
        for e in &self.entries {
            *map.entry(e.operation.clone()).or_insert(0) += e.count;
        }
        map
    }
}

/// The work of one paged answer: a role-assignment list page or a Resource Graph page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageWork {
    /// `list_role_assignments` or `resource_graph`.
    pub operation: String,
    /// Rows of the store looked at: the caller's grants, and, when the page opened a snapshot, every row scanned,
    /// filtered and sorted to build it.
    pub examined: u64,
    /// Rows serialised into the answer.
    pub served: u64,
    /// Whether this page built a new snapshot (a first page) rather than continuing one.
    pub opened_snapshot: bool,
}

impl PageWork {
    pub fn total(&self) -> u64 {
        self.examined + self.served
    }
}

/// The most recent page records kept (older ones are dropped).
pub const PAGE_WORK_KEPT: usize = 100_000;

#[derive(Default)]
pub struct Stats {
    counts: BTreeMap<StatKey, u64>,
    pages: VecDeque<PageWork>,
}

impl Stats {
    pub fn record(&mut self, operation: &str, status: u16, caller: Option<&str>) {
        let key = StatKey {
            operation: operation.to_owned(),
            status,
            caller: caller.map(str::to_ascii_lowercase),
        };
        *self.counts.entry(key).or_insert(0) += 1;
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            entries: self
                .counts
                .iter()
                .map(|(k, v)| StatEntry {
                    operation: k.operation.clone(),
                    status: k.status,
                    caller: k.caller.clone(),
                    count: *v,
                })
                .collect(),
        }
    }

    pub fn record_page(&mut self, work: PageWork) {
        if self.pages.len() >= PAGE_WORK_KEPT {
            self.pages.pop_front();
        }
        self.pages.push_back(work);
    }

    /// Page records, oldest first.
    pub fn pages(&self) -> Vec<PageWork> {
        self.pages.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.counts.clear();
        self.pages.clear();
    }
}
