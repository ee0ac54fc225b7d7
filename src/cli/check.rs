//! `figway check` (SPEC §1): validate a config and print what a start
//! would make of it: its warnings (target names that do not resolve now
//! among them), the compiled route table, and each ramp's schedule. An
//! invalid config is every error at once on stderr, and exit 1.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

pub(super) fn check(path: &Path) -> ExitCode {
    let loaded = match config::load(path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("{e}");
            eprintln!("{}: {} error(s)", path.display(), e.messages.len());
            return ExitCode::from(1);
        }
    };
    for w in &loaded.warnings {
        outln!("{w}");
    }
    // Names are looked up as a start would (bounded); one that does not
    // resolve now is worth a warning, not a failed check: it may well
    // resolve where figway runs.
    let keys: Vec<_> = crate::upstream::dns::keys(&loaded.config)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let answers = crate::upstream::dns::resolve_blocking(
        loaded.config.runtime.resolver,
        &keys,
        crate::upstream::dns::WARM_UP,
    );
    let mut sets = crate::upstream::dns::Sets::new();
    for (key, answer) in keys.iter().zip(&answers) {
        sets.insert(key.clone(), answer.next_set(None));
    }
    for line in unresolved_warnings(&loaded.config, &keys, &answers) {
        outln!("{line}");
    }
    let registry = crate::upstream::Registry::default();
    let snapshot = crate::state::compile::compile_with(&loaded, &registry, None, &sets);
    outln!("{}: ok (version {})", path.display(), loaded.version);
    out!("{}", crate::table::render_routes(&snapshot));
    for r in snapshot.routes.iter() {
        if let Some(ramp) = &r.ramp {
            let to = &snapshot.upstreams[r.sides[ramp.spec.to].upstream].name;
            out!("{}", ramp.schedule_text(&r.name, to));
        }
    }
    ExitCode::SUCCESS
}

/// `warning:` lines for the target names whose lookup (`answers`, parallel
/// to `keys`) found no address.
fn unresolved_warnings(
    config: &config::Config,
    keys: &[crate::upstream::dns::Key],
    answers: &[crate::upstream::dns::Answer],
) -> Vec<String> {
    use crate::upstream::dns::Answer;
    let mut out = Vec::new();
    for u in &config.upstreams {
        for (i, t) in u.targets.iter().enumerate() {
            let Some(name) = &t.name else { continue };
            let answer = keys
                .iter()
                .position(|k| k.upstream == u.name && k.name == *name)
                .and_then(|at| answers.get(at));
            let why = match answer {
                Some(Answer::Addresses(_)) => continue,
                Some(Answer::Empty) => format!(
                    "no such name, or no {} address",
                    match u.dns_family {
                        crate::config::DnsFamily::V4 => "IPv4",
                        crate::config::DnsFamily::V6 => "IPv6",
                        _ => "IPv4 or IPv6",
                    }
                ),
                Some(Answer::Error(e)) => e.clone(),
                None => "not looked up".to_string(),
            };
            out.push(format!(
                "warning: upstreams.{}.targets[{i}]: {name} does not resolve now ({why}); \
                 the target has no endpoints until it does",
                u.name
            ));
        }
    }
    out
}
