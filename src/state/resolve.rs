//! Keeping the endpoints of targets given by name current (SPEC §10). The
//! names a config needs are resolved before its first compile and before a
//! reload's compile, all at once and within [`dns::WARM_UP`]: a name that
//! does not answer in time starts without endpoints. Names already known
//! keep their last set, so a reload never waits on DNS for them.
//!
//! Then a background task ([`start`]) looks each name up again every
//! `resolve_interval` of its upstream, counts
//! `figway_dns_resolutions_total`, and when an answer changes a set,
//! recompiles the config in service with the new sets and swaps the
//! snapshot in (under the reload lock, so it never races a reload). The
//! request path sees none of this: it reads the snapshot, as ever.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{compile, Shared, Snapshot};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::upstream::dns::{self, Answer, Key, Sets};

/// How long one background round of lookups may take in all; a lookup
/// still unanswered then counts as an error (the last set stays).
const ROUND_BUDGET: Duration = Duration::from_secs(3);

/// The longest the background task sleeps, so that names a reload adds
/// join their schedule within a second.
const MAX_NAP: Duration = Duration::from_secs(1);

/// The sets `config` is to be compiled with: those of `known` its names
/// keep, and answers (within [`dns::WARM_UP`]) for the names `known` lacks.
/// Names no longer in `config` are left out.
pub async fn warm_up(
    resolver: &dns::Resolver,
    metrics: &Metrics,
    config: &Config,
    known: &Sets,
) -> Sets {
    let (mut sets, missing) = split(config, known);
    if !missing.is_empty() {
        let answers = dns::resolve_all(resolver, &missing, dns::WARM_UP).await;
        merge(&mut sets, metrics, &missing, &answers);
    }
    sets
}

/// [`warm_up`] for a caller without a future to wait on (start-up): the
/// lookups run on a thread of their own (see [`dns::resolve_blocking`]).
pub fn warm_up_blocking(config: &Config, metrics: &Metrics) -> Sets {
    let (mut sets, missing) = split(config, &Sets::new());
    let answers = dns::resolve_blocking(config.runtime.resolver, &missing, dns::WARM_UP);
    merge(&mut sets, metrics, &missing, &answers);
    sets
}

/// The sets of `known` that `config` still needs, and the keys it needs
/// that `known` lacks.
fn split(config: &Config, known: &Sets) -> (Sets, Vec<Key>) {
    let mut sets = Sets::new();
    let mut missing = Vec::new();
    for (key, _) in dns::keys(config) {
        match known.get(&key) {
            Some(set) => {
                sets.insert(key, set.clone());
            }
            None => missing.push(key),
        }
    }
    (sets, missing)
}

/// Counts `answers` (parallel to `keys`) and applies them to `sets`;
/// returns whether any set changed.
fn merge(sets: &mut Sets, metrics: &Metrics, keys: &[Key], answers: &[Answer]) -> bool {
    let mut changed = false;
    for (key, answer) in keys.iter().zip(answers) {
        metrics.dns_resolved(&key.upstream, answer.result());
        let next = answer.next_set(sets.get(key));
        if sets.get(key) != Some(&next) {
            sets.insert(key.clone(), next);
            changed = true;
        }
    }
    changed
}

/// Starts the background task that follows the names of the config in
/// service. It holds `shared` weakly and ends when `shared` is dropped.
pub(super) fn start(shared: &Arc<Shared>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        tracing::warn!("no runtime: target names are not looked up again");
        return;
    };
    runtime.spawn(follow(Arc::downgrade(shared)));
}

async fn follow(shared: Weak<Shared>) {
    // When each name is next due.
    let mut due: HashMap<Key, Instant> = HashMap::new();
    // Names whose last lookup failed: warned once when they start failing,
    // not every `resolve_interval` while they go on.
    let mut failing: HashSet<Key> = HashSet::new();
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let keys = dns::keys(&strong.loaded().config);
        let now = Instant::now();
        let wanted: HashSet<&Key> = keys.iter().map(|(k, _)| k).collect();
        due.retain(|k, _| wanted.contains(k));
        failing.retain(|k| wanted.contains(k));
        // A name new to the schedule was just resolved by the start or the
        // reload that brought it.
        for (key, interval) in &keys {
            due.entry(key.clone()).or_insert(now + *interval);
        }
        let ready: Vec<Key> = keys
            .iter()
            .filter(|(k, _)| due.get(k).is_some_and(|at| *at <= now))
            .map(|(k, _)| k.clone())
            .collect();
        if !ready.is_empty() {
            let answers = dns::resolve_all(&strong.resolver, &ready, ROUND_BUDGET).await;
            let after = Instant::now();
            for (key, interval) in &keys {
                if due.get(key).is_some_and(|at| *at <= now) {
                    due.insert(key.clone(), after + *interval);
                }
            }
            report_failures(&ready, &answers, &mut failing);
            refresh(&strong, &ready, &answers).await;
        }
        let next = due.values().min().copied();
        drop(strong);
        let nap = next.map_or(MAX_NAP, |at| {
            at.saturating_duration_since(Instant::now()).min(MAX_NAP)
        });
        tokio::time::sleep(nap).await;
    }
}

/// Logs a name that starts failing (its endpoints stay as they were) or
/// stops.
fn report_failures(keys: &[Key], answers: &[Answer], failing: &mut HashSet<Key>) {
    for (key, answer) in keys.iter().zip(answers) {
        match answer {
            Answer::Error(error) if failing.insert(key.clone()) => tracing::warn!(
                upstream = %key.upstream,
                host_name = %key.name,
                error = %error,
                "cannot resolve a target's host name; its endpoints stay as they were"
            ),
            Answer::Error(_) => {}
            _ if failing.remove(key) => tracing::info!(
                upstream = %key.upstream,
                host_name = %key.name,
                result = answer.result(),
                "a target's host name resolves again"
            ),
            _ => {}
        }
    }
}

/// Applies one round of answers; when a set changed, recompiles the config
/// in service with the new sets and swaps it in.
async fn refresh(shared: &Arc<Shared>, keys: &[Key], answers: &[Answer]) {
    let _serial = shared.reload_lock.lock().await;
    let loaded = shared.loaded();
    // A reload may have replaced the config while the lookups ran: only
    // the names it still has count.
    let (mut sets, _) = split(&loaded.config, &shared.dns_sets());
    let wanted: Vec<(Key, Answer)> = keys
        .iter()
        .zip(answers)
        .filter(|(k, _)| sets.contains_key(*k))
        .map(|(k, a)| (k.clone(), a.clone()))
        .collect();
    let (keys, answers): (Vec<Key>, Vec<Answer>) = wanted.into_iter().unzip();
    if !merge(&mut sets, &shared.registry.metrics, &keys, &answers) {
        return;
    }
    let previous = shared.snapshot.load_full();
    let worker = shared.clone();
    let compiled = {
        let (sets, previous) = (sets.clone(), previous.clone());
        tokio::task::spawn_blocking(move || {
            compile::compile_with(&loaded, &worker.registry, Some(&previous), &sets)
        })
        .await
    };
    let Ok(snapshot) = compiled else {
        tracing::error!("recompiling after a change of addresses failed; the old endpoints stay");
        return;
    };
    let snapshot = Arc::new(snapshot);
    let old = shared.install(snapshot.clone(), sets);
    compile::forget(&shared.registry.metrics, &old, &snapshot);
    for line in endpoint_changes(&old, &snapshot) {
        tracing::info!("{line}");
    }
}

/// `upstream orders: endpoints +10.0.0.7:8080 -10.0.0.5:8080`, one line per
/// upstream whose endpoints differ between `old` and `new`.
pub fn endpoint_changes(old: &Snapshot, new: &Snapshot) -> Vec<String> {
    let mut lines = Vec::new();
    for u in new.upstreams.iter() {
        let Some(before) = old.upstreams.iter().find(|o| o.name == u.name) else {
            continue;
        };
        let had: HashSet<&str> = before.targets.iter().map(|t| &*t.authority).collect();
        let has: HashSet<&str> = u.targets.iter().map(|t| &*t.authority).collect();
        let mut line = String::new();
        for t in u.targets.iter().filter(|t| !had.contains(&*t.authority)) {
            let _ = write!(line, " +{}", t.authority);
        }
        for t in before
            .targets
            .iter()
            .filter(|t| !has.contains(&*t.authority))
        {
            let _ = write!(line, " -{}", t.authority);
        }
        if !line.is_empty() {
            lines.push(format!("upstream {}: endpoints{line}", u.name));
        }
    }
    lines
}
