//! Keeping the endpoints of targets given by name current (SPEC §10). The
//! names a config needs are resolved before its first compile and before a
//! reload's compile, all at once and within [`dns::WARM_UP`]: a name that
//! does not answer in time starts without endpoints. Names already known
//! keep their last set, so a reload never waits on DNS for them; once the
//! reload is in service, the background task looks them up again at once.
//!
//! Then a background task (started by `Shared::new`, in `state`'s own
//! file, as it drives `Shared`) looks each name up again every
//! `resolve_interval` of its upstream, counts
//! `figway_dns_resolutions_total`, and when an answer changes a set,
//! recompiles the config in service with the new sets and swaps the
//! snapshot in (under the reload lock, so it never races a reload). The
//! request path sees none of this: it reads the snapshot, as ever.

use std::collections::HashSet;
use std::fmt::Write;
use std::time::Duration;

use super::snapshot::Snapshot;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::upstream::dns::{self, Answer, Key, Sets};

/// How long one background round of lookups may take in all; a lookup
/// still unanswered then counts as an error (the last set stays).
pub(super) const ROUND_BUDGET: Duration = Duration::from_secs(3);

/// The longest the background task sleeps, so that names a reload adds
/// join their schedule within a second.
pub(super) const MAX_NAP: Duration = Duration::from_secs(1);

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
        report_failures(&missing, &answers, &mut HashSet::new());
        merge(&mut sets, metrics, &missing, &answers);
    }
    sets
}

/// [`warm_up`] for a caller without a future to wait on (start-up): the
/// lookups run on a thread of their own (see [`dns::resolve_blocking`]).
pub fn warm_up_blocking(config: &Config, metrics: &Metrics) -> Sets {
    let (mut sets, missing) = split(config, &Sets::new());
    let answers = dns::resolve_blocking(config.runtime.resolver, &missing, dns::WARM_UP);
    report_failures(&missing, &answers, &mut HashSet::new());
    merge(&mut sets, metrics, &missing, &answers);
    sets
}

/// The sets of `known` that `config` still needs, and the keys it needs
/// that `known` lacks.
pub(super) fn split(config: &Config, known: &Sets) -> (Sets, Vec<Key>) {
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
pub(super) fn merge(sets: &mut Sets, metrics: &Metrics, keys: &[Key], answers: &[Answer]) -> bool {
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

/// Logs a name that stops resolving (once, not every `resolve_interval`
/// while it goes on: `failing` holds the names already reported) or
/// resolves again. A name with nothing to serve is the operator's to know:
/// it is also the only trace of a target whose requests get 503.
pub(super) fn report_failures(keys: &[Key], answers: &[Answer], failing: &mut HashSet<Key>) {
    for (key, answer) in keys.iter().zip(answers) {
        match answer {
            Answer::Error(error) if failing.insert(key.clone()) => tracing::warn!(
                upstream = %key.upstream,
                host_name = %key.name,
                result = answer.result(),
                error = %error,
                "cannot resolve a target's host name; its endpoints stay as they were (none if it never resolved)"
            ),
            Answer::Empty if failing.insert(key.clone()) => tracing::warn!(
                upstream = %key.upstream,
                host_name = %key.name,
                result = answer.result(),
                dns_family = key.family.as_str(),
                "cannot resolve a target's host name: no such name, or no address of the family; the target has no endpoints"
            ),
            Answer::Error(_) | Answer::Empty => {}
            Answer::Addresses(_) if failing.remove(key) => tracing::info!(
                upstream = %key.upstream,
                host_name = %key.name,
                "a target's host name resolves again"
            ),
            Answer::Addresses(_) => {}
        }
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
