//! The legacy inventory (SPEC §11): per (route, legacy upstream) pair, the
//! path templates that upstream answered most, in bounded memory, for
//! `GET /inventory`: what is still served by the monolith, and how much.
//!
//! Counting is per worker. Each worker is a current-thread runtime on a
//! thread of its own (`cli`), so each thread keeps its own [`Sketch`] per
//! pair behind a mutex that only that thread and the reader take: the
//! request path never waits on another worker, and the reader merges the
//! workers' summaries ([`sketch::merge`]). The mutex costs an uncontended
//! lock per counted request (see `benches/inventory.rs`); a reader holds it
//! only to copy one worker's entries.
//!
//! What survives a reload: a [`Pair`] is found again by (route name,
//! upstream name) by the next compile, as metric handles are, so its
//! counts go on; a pair no snapshot holds any more is dropped, and its
//! entries with it (a route removed or renamed). A change of
//! `[inventory]` starts every pair afresh. The compile resolves, per route,
//! which of its upstreams are counted and their pair ([`Inventory::pair`]),
//! so the request path only looks its upstream up in a slice of one or two.

pub mod sketch;
pub mod template;

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::SystemTime;

use serde_json::{json, Map, Value};

use crate::config::InventorySpec;
pub use sketch::{method_index, Entry, Sketch, METHODS};

/// The process's inventory: what compiles and the admin API share.
pub struct Inventory {
    core: Arc<Core>,
    state: Mutex<State>,
}

/// What pairs and workers share.
struct Core {
    /// Tells this inventory's workers apart in a thread's list (tests run
    /// several servers in one process, on the same threads).
    id: u64,
    /// Every thread that counted for this inventory.
    workers: Mutex<Vec<Arc<Worker>>>,
    /// Pair ids free for reuse, and the next never used: ids index the
    /// workers' slot vectors, so they stay small and dense.
    ids: Mutex<(Vec<u32>, u32)>,
}

struct State {
    /// The section as last compiled; `None` before the first compile.
    spec: Option<InventorySpec>,
    /// When the counts being kept began; `None` while disabled.
    since: Option<SystemTime>,
    /// Held weakly: a pair lives as long as some snapshot routes to it.
    /// With the compile that last asked for it: one the last compile did
    /// not ask for was removed or renamed, and must not come back with its
    /// old counts while a request on an old table still holds it.
    pairs: HashMap<PairName, (Weak<Pair>, u64)>,
    /// Counts compiles (`configure` calls).
    compiles: u64,
}

/// (route name, upstream name).
type PairName = (Box<str>, Box<str>);

/// One (route, legacy upstream) pair, as a compiled route holds it.
pub struct Pair {
    /// Index of the pair's slot in each worker.
    id: u32,
    /// Unique over the process: a slot counted for another pair that had
    /// the same id is never taken for this one's.
    epoch: u64,
    capacity: usize,
    core: Arc<Core>,
}

/// One thread's summaries, by pair id.
struct Worker {
    slots: Mutex<Vec<Option<Slot>>>,
}

struct Slot {
    epoch: u64,
    sketch: Sketch,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Default for Inventory {
    fn default() -> Self {
        Inventory {
            core: Arc::new(Core {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                workers: Mutex::default(),
                ids: Mutex::default(),
            }),
            state: Mutex::new(State {
                spec: None,
                since: None,
                pairs: HashMap::new(),
                compiles: 0,
            }),
        }
    }
}

// === impl Inventory ===

impl Inventory {
    /// Takes the `[inventory]` section of a config being compiled. The
    /// first one starts the count (process start); a changed one starts it
    /// afresh: every pair the next [`Inventory::pair`] hands out is new.
    /// Compiles are serialised (the reload lock), so the pairs the last
    /// one did not ask for are those of routes since removed or renamed.
    pub fn configure(&self, spec: InventorySpec) {
        let mut state = lock(&self.state);
        let last = state.compiles;
        state.compiles += 1;
        state
            .pairs
            .retain(|_, (pair, asked)| *asked == last && pair.strong_count() > 0);
        if state.spec == Some(spec) {
            return;
        }
        state.spec = Some(spec);
        state.since = spec.enabled.then(SystemTime::now);
        state.pairs.clear();
    }

    /// The pair counting `route`'s requests answered by `upstream` (a
    /// legacy upstream): the one a previous compile made when there is one,
    /// so counts survive the reload. `None` while the inventory is off.
    pub fn pair(&self, route: &str, upstream: &str) -> Option<Arc<Pair>> {
        let mut state = lock(&self.state);
        let spec = state.spec.filter(|s| s.enabled)?;
        let compile = state.compiles;
        let key: PairName = (route.into(), upstream.into());
        if let Some((kept, asked)) = state.pairs.get_mut(&key) {
            if let Some(pair) = kept.upgrade() {
                *asked = compile;
                return Some(pair);
            }
        }
        let pair = Arc::new(Pair {
            id: self.core.take_id(),
            epoch: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            capacity: spec.capacity,
            core: self.core.clone(),
        });
        state.pairs.insert(key, (Arc::downgrade(&pair), compile));
        Some(pair)
    }

    /// When the counts began, `None` while the inventory is off.
    pub fn since(&self) -> Option<SystemTime> {
        lock(&self.state).since
    }

    /// `GET /inventory` over `pairs`, the current table's (route name,
    /// upstream name, pair) in any order: each pair's workers merged, cut
    /// to `top` paths (at most the capacity), sorted as SPEC §11 says.
    pub fn report<'a>(
        &self,
        pairs: impl IntoIterator<Item = (&'a str, &'a str, &'a Pair)>,
        top: Option<usize>,
    ) -> Value {
        let Some(since) = self.since() else {
            return json!({ "since": null, "routes": [] });
        };
        let workers: Vec<Arc<Worker>> = lock(&self.core.workers).clone();
        let mut routes: Vec<(u64, &str, &str, Vec<Entry>)> = pairs
            .into_iter()
            .map(|(route, upstream, pair)| {
                let views: Vec<sketch::View> = workers
                    .iter()
                    .filter_map(|w| {
                        let slots = lock(&w.slots);
                        let slot = slots.get(pair.id as usize)?.as_ref()?;
                        (slot.epoch == pair.epoch).then(|| slot.sketch.view())
                    })
                    .collect();
                let keep = top.unwrap_or(usize::MAX).min(pair.capacity);
                let (entries, total) = sketch::merge(&views, keep);
                (total, route, upstream, entries)
            })
            .collect();
        routes.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then_with(|| a.1.cmp(b.1))
                .then_with(|| a.2.cmp(b.2))
        });
        let routes: Vec<Value> = routes
            .into_iter()
            .map(|(total, route, upstream, entries)| {
                let paths: Vec<Value> = entries.iter().map(path_json).collect();
                json!({
                    "route": route,
                    "upstream": upstream,
                    "requests": total,
                    "paths": paths,
                })
            })
            .collect();
        json!({ "since": crate::timefmt::rfc3339(since), "routes": routes })
    }
}

fn path_json(e: &Entry) -> Value {
    let methods: Map<String, Value> = METHODS
        .iter()
        .zip(e.methods)
        .filter(|(_, n)| *n > 0)
        .map(|(m, n)| ((*m).to_string(), Value::from(n)))
        .collect();
    json!({
        "template": e.template,
        "requests": e.count,
        "error_bound": e.error,
        "methods": methods,
    })
}

impl Core {
    fn take_id(&self) -> u32 {
        let mut ids = lock(&self.ids);
        if let Some(id) = ids.0.pop() {
            return id;
        }
        ids.1 += 1;
        ids.1 - 1
    }
}

// === impl Pair ===

impl Drop for Pair {
    /// No snapshot routes to the pair any more (its route was removed or
    /// renamed, or `[inventory]` changed): its entries go, on every worker,
    /// before its id may serve another pair. Never dropped under a
    /// worker's lock: the record holds the pair borrowed from a snapshot.
    fn drop(&mut self) {
        let workers: Vec<Arc<Worker>> = lock(&self.core.workers).clone();
        for w in workers {
            if let Some(slot) = lock(&w.slots).get_mut(self.id as usize) {
                *slot = None;
            }
        }
        lock(&self.core.ids).0.push(self.id);
    }
}

impl Pair {
    /// Counts one request this pair's upstream answered: `path` as the
    /// client sent it (the query already apart), under the route `prefix`,
    /// with the method at `method` (see [`method_index`]).
    pub fn record(&self, prefix: &str, path: &str, method: u8) {
        // A path that does not normalise never got this far (decide
        // refused it); nothing to count if it somehow does.
        let Ok(normalized) = crate::path::normalize(path) else {
            return;
        };
        let _ = LOCAL.try_with(|local| {
            let mut local = local.borrow_mut();
            let Local { template, joined } = &mut *local;
            template::fold(&normalized, prefix, template);
            let worker = match joined.iter().find(|(id, _)| *id == self.core.id) {
                Some((_, w)) => w,
                None => join(joined, &self.core),
            };
            let mut slots = lock(&worker.slots);
            let at = self.id as usize;
            if slots.len() <= at {
                slots.resize_with(at + 1, || None);
            }
            let slot = match &mut slots[at] {
                Some(slot) if slot.epoch == self.epoch => slot,
                other => other.insert(Slot {
                    epoch: self.epoch,
                    sketch: Sketch::new(self.capacity),
                }),
            };
            slot.sketch.observe(template, method);
        });
    }
}

// === the per-thread part ===

/// What a thread keeps for counting: the template buffer (reused, so a
/// request allocates nothing once it has grown) and its worker in each
/// inventory it counted for (usually one).
struct Local {
    template: String,
    joined: Vec<(u64, Arc<Worker>)>,
}

thread_local! {
    static LOCAL: RefCell<Local> = const {
        RefCell::new(Local { template: String::new(), joined: Vec::new() })
    };
}

/// Makes this thread a worker of `core`'s inventory, forgetting the
/// inventories gone since (only this thread still holds their workers).
fn join<'a>(joined: &'a mut Vec<(u64, Arc<Worker>)>, core: &Core) -> &'a Arc<Worker> {
    joined.retain(|(_, w)| Arc::strong_count(w) > 1);
    let worker = Arc::new(Worker {
        slots: Mutex::new(Vec::new()),
    });
    lock(&core.workers).push(worker.clone());
    joined.push((core.id, worker));
    &joined[joined.len() - 1].1
}

#[cfg(test)]
mod tests;
