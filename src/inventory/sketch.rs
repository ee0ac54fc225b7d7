//! The Space-Saving summary (Metwally, Agrawal, El Abbadi, 2005) of one
//! (route, legacy upstream) pair on one worker, and the merge of several
//! workers' summaries for `GET /inventory`.
//!
//! At most `capacity` entries (template → count, error bound, methods).
//! A template already kept is counted in place; a new one takes a free
//! entry, or, when all are taken, replaces the least counted entry and
//! inherits its count as its error bound, so `count` is an upper bound of
//! the template's true count and `count - error` a lower one. Per request
//! that is one hash lookup and a sift in a min-heap of entry indices by
//! count: O(1) for a hit on a template already near the top (a leaf of the
//! heap), O(log capacity) at worst, never a scan of the entries, however
//! many distinct templates arrive. A replaced entry keeps its template's
//! buffer, so a flood of new templates allocates nothing once the buffers
//! have grown.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use http::Method;

/// The methods counted one by one; every other method counts as `OTHER`.
/// CONNECT never reaches an upstream (SPEC §4), so it has no place.
pub const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "OTHER",
];

/// `method`'s index in [`METHODS`].
pub fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        Method::TRACE => 7,
        _ => 8,
    }
}

/// One kept template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub template: String,
    pub count: u64,
    /// The count the entry inherited when it replaced another: how much of
    /// `count` may belong to templates it displaced.
    pub error: u64,
    /// Requests by method since the entry was (re)created.
    pub methods: [u64; METHODS.len()],
}

/// One pair's summary on one worker.
pub struct Sketch {
    capacity: usize,
    entries: Vec<Slot>,
    /// Indices into `entries`, a min-heap by count.
    heap: Vec<u32>,
    /// Indices into `entries`, found by template.
    table: HashTable<u32>,
    /// Seeded per summary: a client choosing paths cannot aim collisions
    /// at the table.
    hasher: RandomState,
    /// Every request counted, kept or not: the pair's true total.
    total: u64,
}

struct Slot {
    entry: Entry,
    hash: u64,
    /// Where the entry sits in `heap`.
    at: u32,
}

impl Sketch {
    pub fn new(capacity: usize) -> Sketch {
        let capacity = capacity.max(1);
        Sketch {
            capacity,
            // Grown as templates arrive: most pairs never see `capacity`.
            entries: Vec::new(),
            heap: Vec::new(),
            table: HashTable::new(),
            hasher: RandomState::new(),
            total: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Counts one request for `template` with the method at `method` (an
    /// index into [`METHODS`]).
    pub fn observe(&mut self, template: &str, method: u8) {
        let method = usize::from(method).min(METHODS.len() - 1);
        self.total += 1;
        let hash = self.hasher.hash_one(template);
        let entries = &self.entries;
        if let Some(&i) = self
            .table
            .find(hash, |&i| entries[i as usize].entry.template == template)
        {
            let slot = &mut self.entries[i as usize];
            slot.entry.count += 1;
            slot.entry.methods[method] += 1;
            let at = slot.at as usize;
            self.sift_down(at);
            return;
        }
        if self.entries.len() < self.capacity {
            let i = self.entries.len() as u32;
            let mut methods = [0; METHODS.len()];
            methods[method] = 1;
            self.entries.push(Slot {
                entry: Entry {
                    template: template.to_owned(),
                    count: 1,
                    error: 0,
                    methods,
                },
                hash,
                at: self.heap.len() as u32,
            });
            self.heap.push(i);
            let entries = &self.entries;
            self.table
                .insert_unique(hash, i, |&j| entries[j as usize].hash);
            self.sift_up(self.heap.len() - 1);
            return;
        }
        // Full: the least counted entry makes room, and its count becomes
        // the newcomer's error bound.
        let i = self.heap[0];
        let old = self.entries[i as usize].hash;
        if let Ok(found) = self.table.find_entry(old, |&j| j == i) {
            found.remove();
        }
        let slot = &mut self.entries[i as usize];
        slot.hash = hash;
        let e = &mut slot.entry;
        e.error = e.count;
        e.count += 1;
        e.methods = [0; METHODS.len()];
        e.methods[method] = 1;
        e.template.clear();
        e.template.push_str(template);
        let entries = &self.entries;
        self.table
            .insert_unique(hash, i, |&j| entries[j as usize].hash);
        self.sift_down(0);
    }

    /// The smallest count when every entry is taken, else 0: an upper
    /// bound of the true count of any template not kept.
    pub fn floor(&self) -> u64 {
        if self.entries.len() < self.capacity {
            return 0;
        }
        self.heap
            .first()
            .map_or(0, |&i| self.entries[i as usize].entry.count)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().map(|s| &s.entry)
    }

    /// A copy for the reader, taken under the worker's lock and merged
    /// after it is released.
    pub fn view(&self) -> View {
        View {
            entries: self.entries().cloned().collect(),
            floor: self.floor(),
            total: self.total,
        }
    }

    fn count_at(&self, at: usize) -> u64 {
        self.entries[self.heap[at] as usize].entry.count
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.entries[self.heap[a] as usize].at = a as u32;
        self.entries[self.heap[b] as usize].at = b as u32;
    }

    fn sift_up(&mut self, mut at: usize) {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(parent, at);
            at = parent;
        }
    }

    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        loop {
            let left = 2 * at + 1;
            if left >= len {
                return;
            }
            let right = left + 1;
            let child = if right < len && self.count_at(right) < self.count_at(left) {
                right
            } else {
                left
            };
            if self.count_at(at) <= self.count_at(child) {
                return;
            }
            self.swap(at, child);
            at = child;
        }
    }
}

/// One worker's summary of one pair, as the reader merges it.
#[derive(Debug, Clone, Default)]
pub struct View {
    pub entries: Vec<Entry>,
    /// [`Sketch::floor`]: added to both count and error bound of every
    /// template this worker does not keep.
    pub floor: u64,
    pub total: u64,
}

/// The workers' views of one pair merged: counts and error bounds summed,
/// a template missing from a full worker's summary given that summary's
/// floor in both (its true count there is at most the floor, and at least
/// 0), so `count - error ≤ true ≤ count` holds for the merge as for each
/// summary. Sorted by count descending (then template), cut to `keep`.
/// Returns the entries and the pair's true total.
pub fn merge(views: &[View], keep: usize) -> (Vec<Entry>, u64) {
    let floors: u64 = views.iter().map(|v| v.floor).sum();
    let total = views.iter().map(|v| v.total).sum();
    // Per template: the sums over the workers that keep it, and the floors
    // of those workers (whose floor must not be added again).
    let mut merged: HashMap<&str, (Entry, u64)> = HashMap::new();
    for view in views {
        for e in &view.entries {
            let (sum, floors_kept) = merged.entry(&e.template).or_insert_with(|| {
                (
                    Entry {
                        template: e.template.clone(),
                        count: 0,
                        error: 0,
                        methods: [0; METHODS.len()],
                    },
                    0,
                )
            });
            sum.count += e.count;
            sum.error += e.error;
            for (m, n) in sum.methods.iter_mut().zip(e.methods) {
                *m += n;
            }
            *floors_kept += view.floor;
        }
    }
    let mut out: Vec<Entry> = merged
        .into_values()
        .map(|(mut e, floors_kept)| {
            let missing = floors - floors_kept;
            e.count += missing;
            e.error += missing;
            e
        })
        .collect();
    out.sort_unstable_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.template.cmp(&b.template))
    });
    out.truncate(keep);
    (out, total)
}

#[cfg(test)]
mod tests;
