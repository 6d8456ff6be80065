//! Exact request accounting: every request the emulator answers on its service routes (not `/_emulator/`),
//! by operation label, status and caller object id.

use std::collections::BTreeMap;

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

#[derive(Default)]
pub struct Stats {
    counts: BTreeMap<StatKey, u64>,
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

    pub fn clear(&mut self) {
        self.counts.clear();
    }
}
