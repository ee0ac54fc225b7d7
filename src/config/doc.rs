//! A walker over toml's spanned document that reads typed values and collects
//! every mistake with its byte span instead of stopping at the first.
//!
//! serde stops at the first error; operators fixing a config want them all at
//! once, each with `file:line:col` and the key path. So the file is parsed into
//! toml's `DeTable` (which keeps a span for every key and value) and read here
//! key by key: each `Table` remembers the keys it was asked for and reports the
//! rest as unknown when it is finished.

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
        });
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
    seen: Vec<&'a str>,
}

impl<'a, 'i> Table<'a, 'i> {
    pub fn new(path: String, span: Range<usize>, map: &'a DeTable<'i>) -> Self {
        Table {
            path,
            span,
            map,
            seen: Vec::new(),
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

    pub fn get(&mut self, key: &str) -> Option<&'a Value<'i>> {
        let (k, v) = self.map.iter().find(|(k, _)| k.get_ref().as_ref() == key)?;
        self.seen.push(k.get_ref().as_ref());
        Some(v)
    }

    /// Every key of the table, in file order, marking them all as seen; for
    /// tables whose keys are names (`[upstreams.NAME]`).
    pub fn entries(&mut self) -> Vec<(At<String>, &'a Value<'i>)> {
        let mut out: Vec<_> = self
            .map
            .iter()
            .map(|(k, v)| {
                self.seen.push(k.get_ref().as_ref());
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

    /// Whether the key is present, without reading it.
    pub fn has(&self, key: &str) -> bool {
        self.map.iter().any(|(k, _)| k.get_ref().as_ref() == key)
    }

    /// A float, or an integer read as one.
    pub fn number(&mut self, key: &str, problems: &mut Problems) -> Option<At<f64>> {
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

    pub fn required(&mut self, key: &str, problems: &mut Problems) -> Option<&'a Value<'i>> {
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

    pub fn string(&mut self, key: &str, problems: &mut Problems) -> Option<At<String>> {
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

    pub fn boolean(&mut self, key: &str, problems: &mut Problems) -> Option<bool> {
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

    pub fn integer(&mut self, key: &str, problems: &mut Problems) -> Option<At<i64>> {
        let value = self.get(key)?;
        as_integer(value, &self.key_path(key), problems)
    }

    /// A string parsed by `parse`; its error message is reported at the value.
    pub fn parsed<T>(
        &mut self,
        key: &str,
        problems: &mut Problems,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(key, problems)?;
        match parse(&text.value) {
            Ok(v) => Some(v),
            Err(message) => {
                problems.add(text.span, self.key_path(key), message);
                None
            }
        }
    }

    pub fn table(&mut self, key: &str, problems: &mut Problems) -> Option<Table<'a, 'i>> {
        let value = self.get(key)?;
        as_table(value, self.key_path(key), problems)
    }

    pub fn array(&mut self, key: &str, problems: &mut Problems) -> Option<&'a [Value<'i>]> {
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
    pub fn strings(&mut self, key: &str, problems: &mut Problems) -> Option<Vec<At<String>>> {
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

    /// Reports every key that no reader asked for.
    pub fn finish(self, problems: &mut Problems) {
        for (k, _) in self.map.iter() {
            let name = k.get_ref().as_ref();
            if !self.seen.contains(&name) {
                problems.add(k.span(), self.key_path(name), "unknown key");
            }
        }
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
