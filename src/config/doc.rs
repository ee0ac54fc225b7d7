//! A walker over toml's spanned document that reads typed values and collects
//! every mistake with its byte span instead of stopping at the first.
//!
//! serde stops at the first error; operators fixing a config want them all at
//! once, each with `file:line:col` and the key path. So the file is parsed into
//! toml's `DeTable` (which keeps a span for every key and value) and read here
//! key by key: each `Table` remembers the keys it was asked for, present or
//! not, and reports the rest as unknown when it is finished, suggesting the
//! closest key it was asked for. The readers' own `get` calls are thus the
//! one list of the keys a table accepts: a key cannot be read without being
//! accepted, nor accepted without being read.

use std::ops::Range;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One mistake in a config file, positioned by byte span.
#[derive(Debug, Clone)]
pub struct Problem {
    pub span: Range<usize>,
    /// `routes[2].to`; empty for syntax errors.
    pub key: String,
    pub message: String,
    /// Another place the message refers to, e.g. `("first", span)` for a
    /// duplicate: rendered ` (first at line 12)` once lines are known.
    pub related: Option<(String, Range<usize>)>,
}

/// Where problems accumulate while a file is read.
#[derive(Debug, Default)]
pub struct Problems {
    pub list: Vec<Problem>,
}

impl Problems {
    pub fn add(&mut self, span: Range<usize>, key: impl Into<String>, message: impl Into<String>) {
        self.list.push(Problem {
            span,
            key: key.into(),
            message: message.into(),
            related: None,
        });
    }

    /// As [`Problems::add`], also pointing at `other` (`label` says what it
    /// is: `"first"` gives ` (first at line 12)`).
    pub fn add_related(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
        label: impl Into<String>,
        other: Range<usize>,
    ) {
        self.list.push(Problem {
            span,
            key: key.into(),
            message: message.into(),
            related: Some((label.into(), other)),
        });
    }
}

impl Problem {
    /// The message with its related place, if any, in words.
    pub fn describe(&self, text: &str) -> String {
        let Some((label, other)) = &self.related else {
            return self.message.clone();
        };
        let (line, col) = line_col(text, other.start);
        let (own_line, _) = line_col(text, self.span.start);
        if line == own_line {
            format!("{} ({label} at column {col})", self.message)
        } else {
            format!("{} ({label} at line {line})", self.message)
        }
    }
}

/// A value together with where it came from, so later checks (unknown
/// upstream names, duplicates) can still point at the right line.
#[derive(Debug, Clone)]
pub struct At<T> {
    pub value: T,
    pub span: Range<usize>,
}

pub type Value<'i> = Spanned<DeValue<'i>>;

/// A table being read; keys not asked for are reported by [`Table::finish`].
pub struct Table<'a, 'i> {
    pub path: String,
    pub span: Range<usize>,
    map: &'a DeTable<'i>,
    /// Every key a reader asked for, present or not: the keys this table
    /// accepts, checked against the file's and offered as suggestions.
    asked: Vec<&'static str>,
    /// Set by [`Table::entries`]: every key is a name, none is unknown.
    all_read: bool,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn new(path: String, span: Range<usize>, map: &'a DeTable<'i>) -> Self {
        Table {
            path,
            span,
            map,
            asked: Vec::new(),
            all_read: false,
        }
    }

    /// `path.key`, or `key` at the top level.
    pub fn key_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    pub fn get(&mut self, key: &'static str) -> Option<&'a Value<'i>> {
        if !self.asked.contains(&key) {
            self.asked.push(key);
        }
        self.map
            .iter()
            .find(|(k, _)| k.get_ref().as_ref() == key)
            .map(|(_, v)| v)
    }

    /// The span of the value at `path` below this table (`["address"]`,
    /// `["admin", "address"]`), without reading it: for checks that refer
    /// to a key another reader owns.
    pub fn span_of(&self, path: &[&str]) -> Option<Range<usize>> {
        span_in(self.map, path)
    }

    /// Every key of the table, in file order, marking them all as seen; for
    /// tables whose keys are names (`[upstreams.NAME]`).
    pub fn entries(&mut self) -> Vec<(At<String>, &'a Value<'i>)> {
        self.all_read = true;
        let mut out: Vec<_> = self
            .map
            .iter()
            .map(|(k, v)| {
                (
                    At {
                        value: k.get_ref().to_string(),
                        span: k.span(),
                    },
                    v,
                )
            })
            .collect();
        out.sort_by_key(|(k, _)| k.span.start);
        out
    }

    /// Whether the key is present, without reading it (a reader still
    /// reads it, which is what makes it accepted).
    pub fn has(&self, key: &str) -> bool {
        self.map.iter().any(|(k, _)| k.get_ref().as_ref() == key)
    }

    /// Whether the file wrote no key at all in this table.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// A float, or an integer read as one.
    pub fn number(&mut self, key: &'static str, problems: &mut Problems) -> Option<At<f64>> {
        let value = self.get(key)?;
        let parsed = match value.get_ref() {
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
                .ok()
                .map(|n| n as f64),
            other => {
                problems.add(
                    value.span(),
                    self.key_path(key),
                    expected("a number", other),
                );
                return None;
            }
        };
        match parsed {
            Some(v) if v.is_finite() => Some(At {
                value: v,
                span: value.span(),
            }),
            _ => {
                problems.add(value.span(), self.key_path(key), "not a finite number");
                None
            }
        }
    }

    pub fn required(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<&'a Value<'i>> {
        let value = self.get(key);
        if value.is_none() {
            problems.add(
                self.span.clone(),
                self.key_path(key),
                "missing required key",
            );
        }
        value
    }

    pub fn string(&mut self, key: &'static str, problems: &mut Problems) -> Option<At<String>> {
        let value = self.get(key)?;
        // The key path is only built for an error: a 10,000-route file reads
        // tens of thousands of strings that are fine.
        match value.get_ref() {
            DeValue::String(s) => Some(At {
                value: s.to_string(),
                span: value.span(),
            }),
            _ => as_string(value, &self.key_path(key), problems),
        }
    }

    pub fn boolean(&mut self, key: &'static str, problems: &mut Problems) -> Option<bool> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Boolean(b) => Some(*b),
            other => {
                problems.add(
                    value.span(),
                    self.key_path(key),
                    expected("a boolean", other),
                );
                None
            }
        }
    }

    pub fn integer(&mut self, key: &'static str, problems: &mut Problems) -> Option<At<i64>> {
        let value = self.get(key)?;
        as_integer(value, &self.key_path(key), problems)
    }

    /// A string parsed by `parse`; its error message is reported at the value.
    pub fn parsed<T>(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.parsed_at(key, problems, parse).map(|at| at.value)
    }

    /// As [`Table::parsed`], keeping the value's span for later checks.
    pub fn parsed_at<T>(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<At<T>> {
        let text = self.string(key, problems)?;
        match parse(&text.value) {
            Ok(value) => Some(At {
                value,
                span: text.span,
            }),
            Err(message) => {
                problems.add(text.span, self.key_path(key), message);
                None
            }
        }
    }

    pub fn table(&mut self, key: &'static str, problems: &mut Problems) -> Option<Table<'a, 'i>> {
        let value = self.get(key)?;
        as_table(value, self.key_path(key), problems)
    }

    pub fn array(&mut self, key: &'static str, problems: &mut Problems) -> Option<&'a [Value<'i>]> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::Array(items) => Some(&items[..]),
            other => {
                problems.add(
                    value.span(),
                    self.key_path(key),
                    expected("an array", other),
                );
                None
            }
        }
    }

    /// An array of strings; bad items are reported one by one and skipped.
    pub fn strings(
        &mut self,
        key: &'static str,
        problems: &mut Problems,
    ) -> Option<Vec<At<String>>> {
        let items = self.array(key, problems)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| match item.get_ref() {
                    DeValue::String(s) => Some(At {
                        value: s.to_string(),
                        span: item.span(),
                    }),
                    _ => as_string(item, &format!("{}[{i}]", self.key_path(key)), problems),
                })
                .collect(),
        )
    }

    /// Reports every key that no reader asked for, with the closest one
    /// that was asked for as a suggestion.
    pub fn finish(self, problems: &mut Problems) {
        if self.all_read {
            return;
        }
        for (k, _) in self.map.iter() {
            let name = k.get_ref().as_ref();
            if !self.asked.contains(&name) {
                let hint = crate::suggest::did_you_mean(name, self.asked.iter().copied());
                problems.add(k.span(), self.key_path(name), format!("unknown key{hint}"));
            }
        }
    }
}

/// The span of the value at `path` in `map`, through nested tables.
fn span_in(map: &DeTable<'_>, path: &[&str]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let (_, value) = map.iter().find(|(k, _)| k.get_ref().as_ref() == *first)?;
    match (rest.is_empty(), value.get_ref()) {
        (true, _) => Some(value.span()),
        (false, DeValue::Table(inner)) => span_in(inner, rest),
        (false, _) => None,
    }
}

pub fn as_table<'a, 'i>(
    value: &'a Value<'i>,
    path: String,
    problems: &mut Problems,
) -> Option<Table<'a, 'i>> {
    match value.get_ref() {
        DeValue::Table(map) => Some(Table::new(path, value.span(), map)),
        other => {
            problems.add(value.span(), path, expected("a table", other));
            None
        }
    }
}

pub fn as_string(value: &Value<'_>, path: &str, problems: &mut Problems) -> Option<At<String>> {
    match value.get_ref() {
        DeValue::String(s) => Some(At {
            value: s.to_string(),
            span: value.span(),
        }),
        other => {
            problems.add(value.span(), path, expected("a string", other));
            None
        }
    }
}

pub fn as_integer(value: &Value<'_>, path: &str, problems: &mut Problems) -> Option<At<i64>> {
    match value.get_ref() {
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Some(At {
                value: n,
                span: value.span(),
            }),
            Err(_) => {
                problems.add(value.span(), path, "integer out of range");
                None
            }
        },
        other => {
            problems.add(value.span(), path, expected("an integer", other));
            None
        }
    }
}

fn expected(what: &str, found: &DeValue<'_>) -> String {
    let found = match found {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    };
    format!("expected {what}, found {found}")
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before[line_start..].chars().count() + 1;
    (line, col)
}
