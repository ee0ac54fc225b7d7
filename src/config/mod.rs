//! The config file: read (`doc`), validated (`parse`) into the [`model`]
//! types. This module knows nothing of the runtime: `state::compile` turns
//! a [`Loaded`] config into the snapshot the proxy reads. Loading never
//! stops at the first mistake: [`ConfigError`] carries every problem as a
//! `file:line:col: key.path: message` line.

mod doc;
mod fields;
mod inventory;
mod matching;
pub mod model;
mod parse;
mod policies;
mod ramp;
mod routes;
pub mod schedule;
mod shadow;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod units;
mod upstreams;

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use model::*;
pub use upstreams::target_authority;

/// A config that passed validation, with what `check` and `/config` report.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// `warning: ...` lines for `figway check`.
    pub warnings: Vec<String>,
    /// sha256 of the file's bytes, hex.
    pub version: String,
    pub path: PathBuf,
    /// `file:line:col` of the keys that matter after validation, so that
    /// an error met later (an address that cannot be bound) points into
    /// the file like a config error; see [`Loaded::position`].
    pub positions: Vec<(&'static str, String)>,
}

/// The keys [`Loaded::positions`] records: the addresses `run` binds.
const POSITIONED: [&str; 2] = ["listen.address", "admin.address"];

impl Loaded {
    /// `file:line:col` of `key`'s value (`"listen.address"`), or `None`
    /// when the file leaves it to its default.
    pub fn position(&self, key: &str) -> Option<&str> {
        self.positions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, p)| p.as_str())
    }
}

/// Every problem found in a file, already formatted with position.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub messages: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.messages.join("\n"))
    }
}

impl std::error::Error for ConfigError {}

pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| ConfigError {
        messages: vec![format!("{}: cannot read config: {e}", path.display())],
    })?;
    let text = String::from_utf8(bytes).map_err(|e| ConfigError {
        messages: vec![format!(
            "{}: config is not valid UTF-8 (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )],
    })?;
    load_str(&text, path)
}

/// Validates `text` as if read from `path` (which only names it in messages).
pub fn load_str(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    load_versioned(text, path, hex(&Sha256::digest(text.as_bytes())))
}

/// As [`load_str`], for a caller that already hashed the text (a reload
/// hashes it first to skip unchanged files).
pub fn load_versioned(text: &str, path: &Path, version: String) -> Result<Loaded, ConfigError> {
    let name = path.display().to_string();
    let position = |span: &std::ops::Range<usize>| {
        let (line, col) = doc::line_col(text, span.start);
        format!("{name}:{line}:{col}")
    };
    let (root, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let messages = syntax
            .iter()
            .map(|e| match e.span() {
                Some(s) => format!("{}: syntax error: {}", position(&s), e.message().trim()),
                // toml has no span for a dotted key past its depth limit
                // (found by fuzz/fuzz_targets/config.rs); 1:1 keeps every
                // message in the file:line:col form, and the note says why
                // it points there.
                None => format!(
                    "{}: syntax error: {} (the TOML parser gives no position)",
                    position(&(0..0)),
                    e.message().trim()
                ),
            })
            .collect();
        return Err(ConfigError { messages });
    }
    let mut problems = doc::Problems::default();
    let mut table = doc::Table::new(String::new(), root.span(), root.get_ref());
    let base = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let config = parse::read(&mut table, base, &mut problems);
    let positions = POSITIONED
        .iter()
        .filter_map(|key| {
            let path: Vec<&str> = key.split('.').collect();
            Some((*key, position(&table.span_of(&path)?)))
        })
        .collect();
    table.finish(&mut problems);
    problems.list.sort_by_key(|p| p.span.start);
    match config {
        Some(config) if problems.list.is_empty() => {
            let warnings = warnings(&config);
            Ok(Loaded {
                config,
                warnings,
                version,
                path: path.to_path_buf(),
                positions,
            })
        }
        _ => Err(ConfigError {
            messages: problems
                .list
                .iter()
                .map(|p| format!("{}: {}: {}", position(&p.span), p.key, p.describe(text)))
                .collect(),
        }),
    }
}

fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for (i, u) in config.upstreams.iter().enumerate() {
        let used = config.routes.iter().any(|r| {
            r.sides.iter().any(|s| s.upstream == i)
                || r.fallback == Some(i)
                || r.shadow.as_ref().is_some_and(|s| s.upstream == i)
        });
        if !used {
            out.push(format!(
                "warning: upstreams.{}: not used by any route",
                u.name
            ));
        }
    }
    for (i, r) in config.routes.iter().enumerate() {
        for (j, side) in r.sides.iter().enumerate() {
            // A ramp's `to` starts at 0 by design: the ramp gives it traffic.
            let ramped = r.ramp.as_ref().is_some_and(|ramp| ramp.to == j);
            if r.split && side.weight == 0 && !ramped {
                out.push(format!(
                    "warning: routes[{i}].split[{j}]: weight 0: upstream {:?} gets none of route {:?}'s traffic",
                    config.upstreams[side.upstream].name, r.name
                ));
            }
        }
        if let (false, Some(f)) = (r.split, r.fallback) {
            if r.sides.iter().any(|s| s.upstream == f) {
                out.push(format!(
                    "warning: routes[{i}].fallback: {:?} is route {:?}'s own upstream: it has no effect",
                    config.upstreams[f].name, r.name
                ));
            }
        }
        if r.shadow.as_ref().is_some_and(|s| s.sample == 0.0) {
            out.push(format!(
                "warning: routes[{i}].shadow.sample: 0: route {:?} mirrors nothing",
                r.name
            ));
        }
    }
    if !config.upstreams.iter().any(|u| u.legacy) {
        out.push("warning: no upstream is marked legacy = true; the dashboard's migration panel stays empty".into());
    }
    out
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
