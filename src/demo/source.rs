//! Where `figway demo` gets its config and ports (docs/demo.md): the base
//! port (`--port`, else `FIGWAY_DEMO_PORT`, else 8080), the file it serves
//! (`config/demo.toml` in a clone of the repository, so that the user's edits
//! reload, else the copy embedded in the binary), and the copy it writes when
//! the file cannot be served as it is (embedded, or ports renumbered). Also
//! finds the line a user edits to watch a hot reload. Pure text work, tested
//! without sockets.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The demo's config, compiled in: served when `config/demo.toml` is not
/// under the current directory (an installed binary, another directory).
pub const EMBEDDED: &str = include_str!("../../config/demo.toml");

/// Where a clone of the repository keeps it, relative to its root.
pub const REPO_FILE: &str = "config/demo.toml";

/// The base port when neither the flag nor the environment gives one; the
/// ports `config/demo.toml` names.
pub const DEFAULT_PORT: u16 = 8080;

/// Ports `DEFAULT_PORT..DEFAULT_PORT + RENUMBERED` on 127.0.0.1 in the file
/// are moved with the base: the five the demo uses and room for a stub a
/// user adds.
pub const RENUMBERED: u16 = 10;

pub const PORT_ENV: &str = "FIGWAY_DEMO_PORT";

/// The base port: the flag, else the environment variable, else the default.
/// An unusable value is a usage error (exit 2), said with where it came from.
pub fn base_port(flag: Option<u16>, env: Option<OsString>) -> Result<u16, String> {
    let (port, from) = match (flag, env) {
        (Some(p), _) => (p, "--port".to_string()),
        (None, Some(v)) => {
            let text = v.to_string_lossy().into_owned();
            match text.trim().parse::<u16>() {
                Ok(p) => (p, format!("{PORT_ENV}={text}")),
                Err(_) => {
                    return Err(format!(
                        "{PORT_ENV}={text:?} is not a port number (1024-{})",
                        u16::MAX - RENUMBERED + 1
                    ))
                }
            }
        }
        (None, None) => return Ok(DEFAULT_PORT),
    };
    // Root-only ports would fail to bind for most users, and the block must
    // fit below 65536.
    if !(1024..=u16::MAX - RENUMBERED + 1).contains(&port) {
        return Err(format!(
            "{from}: the demo numbers its ports from {port}; pick a base from 1024 to {}",
            u16::MAX - RENUMBERED + 1
        ));
    }
    Ok(port)
}

/// The config file the demo serves and how it came to be.
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The file figway serves and watches; the one to edit.
    pub path: PathBuf,
    /// `config/demo.toml` was found under the current directory (a clone of
    /// the repository: the examples can be run with cargo too).
    pub from_repo: bool,
    /// `path` is a copy the demo wrote (embedded, or ports renumbered).
    pub copied: bool,
}

/// Picks the file to serve for `base`, writing a copy under `runtime_dir`
/// when the repository's file cannot be served as it is.
pub fn prepare(base: u16, cwd: &Path, runtime_dir: &Path) -> Result<Source, String> {
    let repo = cwd.join(REPO_FILE);
    let repo_text = match std::fs::read_to_string(&repo) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", repo.display())),
    };
    if repo_text.is_some() && base == DEFAULT_PORT {
        // Relative, as the user will type it in an editor command.
        return Ok(Source {
            path: PathBuf::from(REPO_FILE),
            from_repo: true,
            copied: false,
        });
    }
    // One directory per base: two demos on different ports never share a
    // file, and a restart on the same port finds its copy where it was.
    let dir = runtime_dir.join(format!("figway-demo-{base}"));
    let path = dir.join("demo.toml");
    let text = renumber(repo_text.as_deref().unwrap_or(EMBEDDED), base);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, text))
        .map_err(|e| {
            format!(
                "cannot write the demo config to {}: {e} (set TMPDIR to a directory you can write)",
                path.display()
            )
        })?;
    Ok(Source {
        path,
        from_repo: repo_text.is_some(),
        copied: true,
    })
}

/// `text` with every `127.0.0.1:P`, for P in the default block, moved to
/// the same offset from `base`. Line numbers do not change.
pub fn renumber(text: &str, base: u16) -> String {
    const HOST: &str = "127.0.0.1:";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(HOST) {
        let (before, after) = rest.split_at(at + HOST.len());
        out.push_str(before);
        let digits = after.bytes().take_while(u8::is_ascii_digit).count();
        let offset = after[..digits]
            .parse::<u16>()
            .ok()
            .and_then(|p| p.checked_sub(DEFAULT_PORT))
            .filter(|o| *o < RENUMBERED);
        match offset {
            Some(o) => out.push_str(&(base + o).to_string()),
            None => out.push_str(&after[..digits]),
        }
        rest = &after[digits..];
    }
    out.push_str(rest);
    out
}

/// The 1-based line of the `split` key of the route named `route` (a route
/// without `name` is named by its prefix), the line to edit to move traffic.
pub fn split_line(text: &str, route: &str) -> Option<usize> {
    let mut name = None::<String>;
    let mut prefix = None::<String>;
    let mut split = None::<usize>;
    let mut found = None;
    let mut close = |name: &Option<String>, prefix: &Option<String>, split: Option<usize>| {
        if name.as_deref().or(prefix.as_deref()) == Some(route) && found.is_none() {
            found = split;
        }
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.starts_with('[') {
            // A sub-table (`[routes.shadow]`) still belongs to the route;
            // any other header ends it.
            if line.starts_with("[[routes]]") || !line.starts_with("[routes.") {
                close(&name, &prefix, split);
                (name, prefix, split) = (None, None, None);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let string = || {
            value
                .trim()
                .strip_prefix('"')
                .and_then(|v| v.split_once('"'))
                .map(|(s, _)| s.to_string())
        };
        match key.trim() {
            "name" => name = string(),
            "prefix" => prefix = string(),
            "split" => split = Some(i + 1),
            _ => {}
        }
    }
    close(&name, &prefix, split);
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_beats_the_environment_which_beats_the_default() {
        assert_eq!(base_port(None, None), Ok(8080));
        assert_eq!(base_port(None, Some("18080".into())), Ok(18080));
        assert_eq!(base_port(Some(9000), Some("18080".into())), Ok(9000));
        let bad = base_port(None, Some("80x".into())).unwrap_err();
        assert!(bad.contains("FIGWAY_DEMO_PORT=\"80x\""), "{bad}");
        let low = base_port(Some(80), None).unwrap_err();
        assert!(low.contains("--port") && low.contains("1024"), "{low}");
        assert!(base_port(Some(65530), None).is_err());
    }

    #[test]
    fn renumbers_the_default_block_only_and_keeps_lines() {
        let text = "a = \"127.0.0.1:8080\"\nb = [\"http://127.0.0.1:8084\"]\nc = \"127.0.0.1:9901\"\nd = \"127.0.0.1:80801\"\n";
        let out = renumber(text, 18080);
        assert_eq!(
            out,
            "a = \"127.0.0.1:18080\"\nb = [\"http://127.0.0.1:18084\"]\nc = \"127.0.0.1:9901\"\nd = \"127.0.0.1:80801\"\n"
        );
        // A base inside the block must not renumber twice.
        assert!(renumber(text, 8081)
            .starts_with("a = \"127.0.0.1:8081\"\nb = [\"http://127.0.0.1:8085\"]"));
    }

    #[test]
    fn finds_the_split_line_of_the_named_route() {
        let text = "[[routes]]\nname = \"a\"\nsplit = []\n[[routes]]\nprefix = \"/b\"\n[routes.shadow]\nto = \"x\"\n[[routes]]\nname = \"users\"\n# split = [] in a comment\nsplit = [{ to = \"users\", weight = 10 }]\n";
        assert_eq!(split_line(text, "users"), Some(11));
        assert_eq!(split_line(text, "a"), Some(3));
        assert_eq!(split_line(text, "/b"), None);
        assert!(split_line(EMBEDDED, "users").is_some());
    }

    #[test]
    fn serves_the_repository_file_in_place_and_copies_otherwise() {
        let root = std::env::temp_dir().join(format!("figway-source-{}", fastrand::u64(..)));
        let clone = root.join("clone");
        std::fs::create_dir_all(clone.join("config")).unwrap();
        std::fs::write(clone.join(REPO_FILE), "x = \"127.0.0.1:8081\"\n").unwrap();
        let runtime = root.join("run");

        let here = prepare(DEFAULT_PORT, &clone, &runtime).unwrap();
        assert_eq!(
            (here.path.as_path(), here.from_repo, here.copied),
            (Path::new(REPO_FILE), true, false)
        );

        let moved = prepare(20000, &clone, &runtime).unwrap();
        assert!(moved.from_repo && moved.copied);
        assert_eq!(
            std::fs::read_to_string(&moved.path).unwrap(),
            "x = \"127.0.0.1:20001\"\n"
        );

        let elsewhere = prepare(DEFAULT_PORT, &root, &runtime).unwrap();
        assert!(!elsewhere.from_repo && elsewhere.copied);
        assert_eq!(std::fs::read_to_string(&elsewhere.path).unwrap(), EMBEDDED);
        let _ = std::fs::remove_dir_all(&root);
    }
}
