//! The files we ship for running figway (issue 12, "Config files" and
//! "Deployment"), checked against the real binary so that none of them can
//! drift from what figway accepts:
//!
//! - every `*.toml` under `config/` and `examples/` passes `figway check`;
//! - `config/example.toml` sets or comments out every key the config
//!   accepts (see [`documented_keys`] for where that list comes from), and
//!   with its commented-out settings switched on it still passes `check`;
//! - the Kubernetes manifests parse, and agree with the figway.toml their
//!   ConfigMap embeds (probes, ports, grace period, the directory mount that
//!   hot reload needs); the ConfigMap reload itself, kubelet's `..data`
//!   symlink swap under load, is tests/reload.rs's
//!   `config_replaced_36_times_under_load_fails_no_request`;
//! - the systemd unit has its hardening and its timeouts, and passes
//!   `systemd-analyze verify` where systemd-analyze exists;
//! - the Dockerfile's stages, user and entrypoint are consistent, and the
//!   scripts it runs are there and executable (CI builds it for real when
//!   a Docker daemon answers, see `.ci/run`).
#![cfg(unix)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_yaml_ng::Value as Yaml;

// === helpers ===

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `figway check PATH` with the binary cargo built for this test run.
fn figway_check(path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_figway"))
        .arg("check")
        .arg(path)
        .output()
        .expect("run figway check")
}

fn assert_check_passes(path: &Path, what: &str) {
    let out = figway_check(path);
    assert!(
        out.status.success(),
        "figway check {what}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "figway-config-files-{}-{:x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every file under `dir` (recursively) whose name ends with `suffix`.
fn files_under(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, suffix, out);
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
    out.sort();
}

/// A config duration (`"250ms"`, `"1.5s"`, `"2m"`, `"1h"`), or a systemd
/// time span in the same simple form (`"45s"`, `"2min"`).
fn duration(text: &str) -> Duration {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().unwrap_or_else(|_| panic!("duration {text:?}"));
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => panic!("duration {text:?}: unit {other:?}"),
    };
    Duration::from_secs_f64(secs)
}

/// What a figway.toml says about the deployment around it, defaults applied
/// as docs/configuration.md gives them.
struct Lifecycle {
    listen_port: u16,
    admin_port: u16,
    drain_timeout: Duration,
    drain_delay: Duration,
    max_connections: u64,
}

fn lifecycle(text: &str) -> Lifecycle {
    let doc: toml::Table = text.parse().expect("figway.toml parses as TOML");
    let section = |name: &str| doc.get(name).and_then(|v| v.as_table()).cloned();
    let listen = section("listen").expect("[listen]");
    let admin = section("admin").unwrap_or_default();
    let string = |t: &toml::Table, key: &str, default: &str| {
        t.get(key)
            .map(|v| v.as_str().expect(key).to_string())
            .unwrap_or_else(|| default.to_string())
    };
    let port = |addr: String| -> u16 { addr.rsplit(':').next().unwrap().parse().unwrap() };
    Lifecycle {
        listen_port: port(string(&listen, "address", "")),
        admin_port: port(string(&admin, "address", "127.0.0.1:9901")),
        drain_timeout: duration(&string(&listen, "drain_timeout", "30s")),
        drain_delay: duration(&string(&listen, "drain_delay", "0s")),
        max_connections: listen
            .get("max_connections")
            .map_or(10_000, |v| v.as_integer().unwrap() as u64),
    }
}

// === every config file passes check ===

#[test]
fn every_toml_in_config_and_examples_passes_figway_check() {
    let mut files = Vec::new();
    files_under(&repo().join("config"), ".toml", &mut files);
    files_under(&repo().join("examples"), ".toml", &mut files);
    assert!(
        files.iter().any(|f| f.ends_with("config/example.toml")),
        "config/example.toml not found among {files:?}"
    );
    for file in &files {
        assert_check_passes(file, &file.display().to_string());
    }
}

// === config/example.toml holds every key ===

/// The keys the config accepts, as dotted paths (`listen.drain_delay`,
/// `upstreams.*.health.path`, `routes.shadow.ignore_json`,
/// `upstreams.*.targets.url`), read from the reference tables of
/// docs/configuration.md: each `## [section]` heading and the `| key |`
/// table under it.
///
/// Why the docs and not a list kept here: a list in this file is one more
/// place to forget when a key is added, and the issue already requires the
/// reference to stay complete. Drift is caught both ways:
/// - a key added to the code but not to the reference:
///   [`every_key_the_config_reader_asks_for_is_documented`] scans the
///   config reader's key lookups in `src/config/` for names the reference
///   lacks;
/// - a key documented but missing from the example:
///   [`example_sets_or_comments_out_every_documented_key`];
/// - a key documented (or written in the example) but not accepted:
///   `figway check` rejects unknown keys, and
///   [`example_with_its_commented_settings_on_passes_check`] checks the
///   commented-out ones too.
fn documented_keys() -> (BTreeSet<String>, BTreeSet<String>) {
    let docs = read("docs/configuration.md");
    let mut keys = BTreeSet::new();
    let mut sections = BTreeSet::new();
    let mut section: Option<String> = None;
    let mut in_key_table = false;
    for line in docs.lines() {
        if line.starts_with('#') {
            // `## `[upstreams.NAME.health]``, `### `listen.tls``.
            section = line
                .split('`')
                .nth(1)
                .map(|s| {
                    s.trim_matches(|c| c == '[' || c == ']')
                        .replace("NAME", "*")
                })
                .filter(|s| {
                    s.chars()
                        .all(|c| c.is_ascii_lowercase() || "._*".contains(c))
                });
            if let Some(s) = &section {
                sections.insert(s.clone());
            }
            in_key_table = false;
            continue;
        }
        let Some(row) = line.strip_prefix('|') else {
            in_key_table = false;
            continue;
        };
        let first = row.split('|').next().unwrap_or("").trim();
        if first == "key" {
            in_key_table = true;
        } else if let (true, Some(s)) = (in_key_table, &section) {
            if let Some(key) = first.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                keys.insert(format!("{s}.{}", key.replace("[]", "")));
            }
        }
    }
    assert!(
        keys.len() > 40 && keys.contains("listen.address") && keys.contains("routes.shadow.to"),
        "docs/configuration.md's reference tables did not parse as expected: {keys:?}"
    );
    (keys, sections)
}

/// Whether a `# key = value` comment line is a commented-out setting: the
/// text after `#` is itself a TOML `key = value` line.
fn commented_setting(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix('#')?.trim_start();
    let key_end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
    if key_end == 0 || !rest[key_end..].trim_start().starts_with('=') {
        return None;
    }
    rest.parse::<toml::Table>().ok().map(|_| rest)
}

/// config/example.toml with its commented-out settings switched on.
fn example_uncommented() -> String {
    read("config/example.toml")
        .lines()
        .map(|line| commented_setting(line).unwrap_or(line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every key path in a TOML document, in [`documented_keys`]'s form:
/// upstream names become `*`, array elements add no segment.
fn key_paths(value: &toml::Value, path: &str, out: &mut BTreeSet<String>) {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let child = if path == "upstreams" {
                    "upstreams.*".to_string()
                } else if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if path != "upstreams" {
                    out.insert(child.clone());
                }
                key_paths(v, &child, out);
            }
        }
        toml::Value::Array(items) => items.iter().for_each(|v| key_paths(v, path, out)),
        _ => {}
    }
}

fn example_keys() -> BTreeSet<String> {
    let doc: toml::Value = example_uncommented()
        .parse::<toml::Table>()
        .map(toml::Value::Table)
        .expect("config/example.toml with its commented-out settings on is valid TOML (a commented-out key must not also be set in its table)");
    let mut keys = BTreeSet::new();
    key_paths(&doc, "", &mut keys);
    keys
}

#[test]
fn example_sets_or_comments_out_every_documented_key() {
    let (documented, _) = documented_keys();
    let example = example_keys();
    let missing: Vec<_> = documented.difference(&example).collect();
    assert!(
        missing.is_empty(),
        "config/example.toml neither sets nor comments out (as `# key = value`) these keys of docs/configuration.md: {missing:?}"
    );
}

/// `figway check` cannot see commented-out keys, so a typo there would go
/// unnoticed; every key in the example must be one the reference lists
/// (the inner keys of a documented leaf such as `split`'s `to` and
/// `weight` count as documented with it).
#[test]
fn example_has_no_undocumented_key() {
    let (documented, sections) = documented_keys();
    let is_documented = |key: &String| {
        if documented.contains(key)
            || sections
                .iter()
                .any(|s| s == key || s.starts_with(&format!("{key}.")))
        {
            return true;
        }
        let Some((parent, _)) = key.rsplit_once('.') else {
            return false;
        };
        documented.contains(parent)
            && !documented
                .iter()
                .any(|d| d.starts_with(&format!("{parent}.")))
    };
    let unknown: Vec<_> = example_keys()
        .into_iter()
        .filter(|k| !is_documented(k))
        .collect();
    assert!(
        unknown.is_empty(),
        "config/example.toml has keys docs/configuration.md does not document: {unknown:?}"
    );
}

/// The commented-out settings are valid as written: switched on (with a
/// certificate made here for `tls`), the example still passes `check`.
#[test]
fn example_with_its_commented_settings_on_passes_check() {
    let text = example_uncommented();
    assert_ne!(
        text,
        read("config/example.toml"),
        "no commented-out setting found"
    );
    let dir = TempDir::new();
    let tls: toml::Table = text.parse().unwrap();
    if let Some(tls) = tls["listen"].get("tls") {
        let made = rcgen::generate_simple_self_signed(vec!["shop.example.com".into()]).unwrap();
        let tables = match tls {
            toml::Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        };
        for t in tables {
            for (key, pem) in [
                ("cert", made.cert.pem()),
                ("key", made.signing_key.serialize_pem()),
            ] {
                let file = dir.0.join(t[key].as_str().unwrap());
                std::fs::create_dir_all(file.parent().unwrap()).unwrap();
                std::fs::write(file, pem).unwrap();
            }
        }
    }
    let path = dir.0.join("example.toml");
    std::fs::write(&path, text).unwrap();
    assert_check_passes(
        &path,
        "config/example.toml with its commented-out settings on",
    );
}

/// The names `src/config/` looks keys up by (`t.string("prefix", ..)`,
/// `positive(&mut t, "max_in_flight", ..)`, ...): each must be a key or a
/// section of docs/configuration.md's reference, so a key added to the
/// reader without documentation (and so, by the tests above, without a
/// place in config/example.toml) fails here. A heuristic over the
/// reader's lookup calls: a lookup written some other way is not seen.
#[test]
fn every_key_the_config_reader_asks_for_is_documented() {
    let (documented, sections) = documented_keys();
    let mut names: BTreeSet<String> = documented
        .iter()
        .chain(&sections)
        .flat_map(|k| k.split('.').map(str::to_string).collect::<Vec<_>>())
        .collect();
    names.insert("upstreams".into());
    let lookups = [
        ".get(",
        ".required(",
        ".string(",
        ".strings(",
        ".integer(",
        ".boolean(",
        ".number(",
        ".parsed(",
        ".array(",
        ".table(",
        ".has(",
        "positive(",
        "count(",
        "read_methods_key(",
    ];
    let mut files = Vec::new();
    files_under(&repo().join("src/config"), ".rs", &mut files);
    let mut asked = BTreeMap::new();
    for file in &files {
        let src = std::fs::read_to_string(file).unwrap();
        for call in lookups {
            for (at, _) in src.match_indices(call) {
                let args = &src[at + call.len()..];
                let args = &args[..args.find(')').unwrap_or(args.len())];
                let Some(name) = args.split('"').nth(1) else {
                    continue;
                };
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    asked.insert(
                        name.to_string(),
                        file.file_name().unwrap().to_string_lossy().to_string(),
                    );
                }
            }
        }
    }
    assert!(
        asked.contains_key("drain_delay") && asked.contains_key("ignore_json"),
        "the scan found too little: {asked:?}"
    );
    let undocumented: Vec<_> = asked.iter().filter(|(k, _)| !names.contains(*k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys read in src/config/ but absent from docs/configuration.md's reference (and so from config/example.toml): {undocumented:?}"
    );
}

// === Kubernetes ===

/// Every document of every YAML file in examples/kubernetes, by kind (one
/// object of each kind, so a test can ask for "the Deployment").
fn manifests() -> BTreeMap<String, Yaml> {
    let mut files = Vec::new();
    files_under(&repo().join("examples/kubernetes"), ".yaml", &mut files);
    files_under(&repo().join("examples/kubernetes"), ".yml", &mut files);
    let mut by_kind = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let doc = <Yaml as serde::Deserialize>::deserialize(doc)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            if doc.is_null() {
                continue; // an empty document (a trailing `---`)
            }
            for field in ["apiVersion", "kind"] {
                assert!(doc[field].is_string(), "{}: no {field}", file.display());
            }
            assert!(
                doc["metadata"]["name"].is_string(),
                "{}: no metadata.name",
                file.display()
            );
            let kind = doc["kind"].as_str().unwrap().to_string();
            assert!(by_kind.insert(kind.clone(), doc).is_none(), "two {kind}s");
        }
    }
    by_kind
}

fn str_of<'a>(v: &'a Yaml, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v:?}"))
}

fn u64_of(v: &Yaml, what: &str) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: expected a number, got {v:?}"))
}

/// Whether every label of `selector` is on `labels`.
fn selects(selector: &Yaml, labels: &Yaml) -> bool {
    let sel = selector.as_mapping().expect("matchLabels");
    !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A probe's or a monitor's port: a number, or a container port's name.
fn port_number(port: &Yaml, container: &Yaml) -> u64 {
    if let Some(n) = port.as_u64() {
        return n;
    }
    let name = str_of(port, "port");
    let ports = container["ports"].as_sequence().expect("container ports");
    let found = ports.iter().find(|p| p["name"].as_str() == Some(name));
    u64_of(
        &found.unwrap_or_else(|| panic!("no container port named {name:?}"))["containerPort"],
        "containerPort",
    )
}

#[test]
fn kubernetes_manifests_agree_with_their_figway_toml() {
    let m = manifests();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "PodMonitor",
    ] {
        assert!(
            m.contains_key(kind),
            "examples/kubernetes has no {kind}: {:?}",
            m.keys()
        );
    }
    let (config_map, deploy) = (&m["ConfigMap"], &m["Deployment"]);

    // The Deployment runs figway on the ConfigMap's figway.toml, mounted as
    // a directory: a subPath mount is never updated, so no hot reload.
    let pod = &deploy["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let spec = &pod["spec"];
    let containers = spec["containers"].as_sequence().expect("containers");
    let c = containers
        .iter()
        .find(|c| c["name"] == "figway")
        .expect("a container named figway");
    let args: Vec<&str> = c["args"]
        .as_sequence()
        .expect("args")
        .iter()
        .map(|a| str_of(a, "arg"))
        .collect();
    let config_path = args
        .windows(2)
        .find(|w| w[0] == "--config")
        .map(|w| Path::new(w[1]))
        .expect("args: --config PATH");
    let (mount_dir, file) = (
        config_path.parent().unwrap(),
        config_path.file_name().unwrap(),
    );
    let mount = c["volumeMounts"]
        .as_sequence()
        .expect("volumeMounts")
        .iter()
        .find(|v| Path::new(str_of(&v["mountPath"], "mountPath")) == mount_dir)
        .unwrap_or_else(|| panic!("nothing mounted at {}", mount_dir.display()));
    assert!(
        mount.get("subPath").is_none(),
        "the config is mounted with subPath: kubelet never updates it"
    );
    let volume = spec["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the mounted volume");
    assert_eq!(
        volume["configMap"]["name"], config_map["metadata"]["name"],
        "the volume is the ConfigMap"
    );
    let toml_text = str_of(
        &config_map["data"][file.to_str().unwrap()],
        "ConfigMap data figway.toml",
    );

    // The embedded file passes the real check.
    let dir = TempDir::new();
    let path = dir.0.join("figway.toml");
    std::fs::write(&path, toml_text).unwrap();
    assert_check_passes(&path, "the ConfigMap's figway.toml");
    let life = lifecycle(toml_text);

    // Probes on the admin port: ready = /readyz (503 while draining), alive
    // = /healthz (200 while the process runs, draining included).
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(str_of(&get["path"], probe), path, "{probe} path");
        assert_eq!(
            port_number(&get["port"], c),
            u64::from(life.admin_port),
            "{probe} port is [admin]'s"
        );
    }
    let container_ports: BTreeSet<u64> = c["ports"]
        .as_sequence()
        .expect("ports")
        .iter()
        .map(|p| u64_of(&p["containerPort"], "containerPort"))
        .collect();
    assert!(
        container_ports.contains(&u64::from(life.listen_port)),
        "containerPort for [listen]"
    );
    assert!(
        container_ports.contains(&u64::from(life.admin_port)),
        "containerPort for [admin]"
    );

    // The kubelet's grace period covers preStop, drain_delay and drain_timeout.
    let pre_stop = &c["lifecycle"]["preStop"];
    let sleep = if let Some(s) = pre_stop["sleep"]["seconds"].as_u64() {
        s
    } else {
        let cmd = pre_stop["exec"]["command"]
            .as_sequence()
            .expect("preStop: sleep or exec");
        str_of(cmd.last().unwrap(), "sleep")
            .parse()
            .expect("preStop exec sleep SECONDS")
    };
    assert!(sleep > 0, "preStop sleeps");
    let grace = u64_of(
        &spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    );
    let needed = Duration::from_secs(sleep) + life.drain_delay + life.drain_timeout;
    assert!(
        Duration::from_secs(grace) > needed,
        "terminationGracePeriodSeconds {grace} must exceed preStop {sleep}s + drain_delay {:?} + drain_timeout {:?}",
        life.drain_delay,
        life.drain_timeout
    );

    // Several replicas, resources, non-root and read-only.
    assert!(u64_of(&deploy["spec"]["replicas"], "replicas") >= 3);
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(!c["resources"][k][r].is_null(), "resources.{k}.{r}");
        }
    }
    let non_root = |sc: &Yaml| sc["runAsNonRoot"].as_bool() == Some(true);
    assert!(
        non_root(&spec["securityContext"]) || non_root(&c["securityContext"]),
        "runAsNonRoot"
    );
    assert_eq!(
        c["securityContext"]["readOnlyRootFilesystem"].as_bool(),
        Some(true)
    );
    assert_eq!(
        c["securityContext"]["allowPrivilegeEscalation"].as_bool(),
        Some(false)
    );
    assert!(
        selects(&deploy["spec"]["selector"]["matchLabels"], labels),
        "Deployment selector"
    );

    // Scraping: annotations and the PodMonitor both point at [admin].
    let notes = &pod["metadata"]["annotations"];
    assert_eq!(notes["prometheus.io/scrape"], "true");
    assert_eq!(
        str_of(&notes["prometheus.io/port"], "prometheus.io/port"),
        life.admin_port.to_string()
    );
    assert_eq!(notes["prometheus.io/path"], "/metrics");
    let monitor = &m["PodMonitor"];
    assert_eq!(
        str_of(&monitor["apiVersion"], "apiVersion"),
        "monitoring.coreos.com/v1"
    );
    assert!(
        selects(&monitor["spec"]["selector"]["matchLabels"], labels),
        "PodMonitor selector"
    );
    let endpoints = monitor["spec"]["podMetricsEndpoints"]
        .as_sequence()
        .expect("podMetricsEndpoints");
    assert!(!endpoints.is_empty());
    for e in endpoints {
        assert_eq!(
            port_number(&e["port"], c),
            u64::from(life.admin_port),
            "PodMonitor port is [admin]'s"
        );
        assert_eq!(e["path"], "/metrics");
    }

    // The Service reaches the proxy port, not the admin port.
    let service = &m["Service"];
    assert!(
        selects(&service["spec"]["selector"], labels),
        "Service selector"
    );
    for p in service["spec"]["ports"]
        .as_sequence()
        .expect("Service ports")
    {
        assert_eq!(
            port_number(&p["targetPort"], c),
            u64::from(life.listen_port),
            "Service targetPort"
        );
    }
    let pdb = &m["PodDisruptionBudget"];
    assert!(
        selects(&pdb["spec"]["selector"]["matchLabels"], labels),
        "PDB selector"
    );
    assert!(!pdb["spec"]["maxUnavailable"].is_null() || !pdb["spec"]["minAvailable"].is_null());
}

// === systemd ===

/// `[Section]` -> key -> values (a key may repeat), comments dropped.
fn unit_file(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut current = String::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_string();
            sections.entry(current.clone()).or_default();
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("unit line {line:?}"));
        assert!(!current.is_empty(), "{line:?} before any section");
        sections
            .get_mut(&current)
            .unwrap()
            .entry(k.trim().into())
            .or_default()
            .push(v.trim().into());
    }
    sections
}

#[test]
fn systemd_unit_is_hardened_and_outlasts_the_drain() {
    let text = read("examples/systemd/figway.service");
    let unit = unit_file(&text);
    let service = &unit["Service"];
    let one = |key: &str| -> &str {
        let v = service
            .get(key)
            .unwrap_or_else(|| panic!("[Service] {key}= missing"));
        v.last().unwrap()
    };
    for (key, want) in [
        ("Type", "simple"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
        ("DynamicUser", "yes"),
        ("ConfigurationDirectory", "figway"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(one(key), want, "[Service] {key}=");
    }
    assert!(
        one("ExecStart").ends_with("figway run --config /etc/figway/figway.toml"),
        "ExecStart"
    );
    // DynamicUser makes the user; no capability unless a low port needs one,
    // and then only CAP_NET_BIND_SERVICE (offered commented out).
    assert!(!service.contains_key("User"), "User= with DynamicUser=yes");
    assert!(
        !service.contains_key("AmbientCapabilities"),
        "AmbientCapabilities is opt-in, commented out"
    );
    assert!(text.contains("\n#AmbientCapabilities=CAP_NET_BIND_SERVICE\n"));
    assert!(text.contains("\n#CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"));

    // SIGKILL only after the drain of config/example.toml and of the
    // defaults; a descriptor for each client and upstream connection.
    let stop = duration(one("TimeoutStopSec"));
    let nofile: u64 = one("LimitNOFILE").parse().expect("LimitNOFILE a number");
    for (what, life) in [
        (
            "config/example.toml",
            lifecycle(&read("config/example.toml")),
        ),
        (
            "the defaults",
            lifecycle("[listen]\naddress = \"0.0.0.0:8080\"\n"),
        ),
    ] {
        assert!(
            stop > life.drain_delay + life.drain_timeout,
            "TimeoutStopSec {stop:?} must exceed {what}'s drain_delay + drain_timeout"
        );
        assert!(
            nofile > 2 * life.max_connections,
            "LimitNOFILE {nofile} vs {what}'s max_connections"
        );
    }
    assert_eq!(unit["Install"]["WantedBy"], ["multi-user.target"]);
    assert!(unit["Unit"]["After"]
        .iter()
        .any(|a| a.contains("network-online.target")));
}

/// systemd's own checks, where systemd-analyze is installed: `verify`
/// (unknown keys and bad values are warnings on stderr, so stderr must be
/// silent about the unit) and the offline exposure score. ExecStart points
/// at the binary built for this run, since verify wants it to exist.
#[test]
fn systemd_analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: only the parsed checks ran");
        return;
    }
    let dir = TempDir::new();
    let unit = dir.0.join("figway.service");
    let text = read("examples/systemd/figway.service")
        .replace("/usr/local/bin/figway", env!("CARGO_BIN_EXE_figway"));
    std::fs::write(&unit, text).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("figway.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        out.status
    );

    // Exposure 0 (locked down) to 10 (unprotected); the unit scores ~1.7.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=25", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("unrecognized option") {
        eprintln!("this systemd-analyze has no offline security check");
        return;
    }
    assert!(
        out.status.success(),
        "systemd-analyze security: exposure above 2.5\n{}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
}

// === Dockerfile ===

/// The Dockerfile's instructions, continuation lines joined and comments
/// dropped, as (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read("Dockerfile").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(trimmed);
                let (op, args) = pending
                    .split_once(char::is_whitespace)
                    .unwrap_or((&pending, ""));
                out.push((op.to_ascii_uppercase(), args.trim().to_string()));
                pending.clear();
            }
        }
    }
    out
}

#[test]
fn dockerfile_stages_user_and_entrypoint() {
    let lines = dockerfile();
    // Stages: FROM IMAGE AS NAME; COPY --from names an earlier stage.
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (op, args) in lines {
        if op == "FROM" {
            let words: Vec<&str> = args.split_whitespace().collect();
            assert!(
                words.len() == 3 && words[1].eq_ignore_ascii_case("AS"),
                "FROM {args}: expected FROM IMAGE AS NAME"
            );
            assert!(
                !stages.iter().any(|(n, _)| n == words[2]),
                "stage {} twice",
                words[2]
            );
            stages.push((words[2].to_string(), Vec::new()));
            continue;
        }
        let current = match stages.last() {
            Some((name, _)) => name.clone(),
            None => panic!("{op} before FROM"),
        };
        if op == "COPY" {
            if let Some(from) = args
                .split_whitespace()
                .find_map(|w| w.strip_prefix("--from="))
            {
                assert_ne!(from, current, "COPY --from its own stage");
                assert!(
                    stages.iter().any(|(n, _)| n == from),
                    "COPY --from={from}: no earlier stage of that name"
                );
            }
        }
        stages.last_mut().unwrap().1.push((op, args));
    }
    assert!(stages.len() >= 2, "a multi-stage build");
    let builds_figway = |body: &[(String, String)]| {
        body.iter()
            .any(|(op, a)| op == "RUN" && a.contains("cargo build --release --locked"))
    };
    assert!(
        stages.iter().any(|(_, b)| builds_figway(b)),
        "a stage runs cargo build --release --locked"
    );
    // A script a RUN calls (scripts/pgo.sh, for --build-arg PGO=1) is in
    // the repository, executable, and not kept out of the build context.
    let ignore = read(".dockerignore");
    for (_, body) in &stages {
        for (_, args) in body.iter().filter(|(op, _)| op == "RUN") {
            for script in args
                .split_whitespace()
                .filter(|w| w.starts_with("scripts/"))
            {
                let mode = std::fs::metadata(repo().join(script))
                    .unwrap_or_else(|e| panic!("RUN {script}: {e}"))
                    .permissions();
                assert!(
                    std::os::unix::fs::PermissionsExt::mode(&mode) & 0o111 != 0,
                    "RUN {script}: not executable"
                );
                assert!(
                    !ignore
                        .lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .any(|l| script.starts_with(l)),
                    "RUN {script}: .dockerignore keeps it out of the build context"
                );
            }
        }
    }

    // The final stage: non-root, figway as the entrypoint on the config path
    // the Kubernetes and systemd examples use.
    let (_, last) = stages.last().unwrap();
    let get = |op: &str| {
        last.iter()
            .rev()
            .find(|(o, _)| o == op)
            .map(|(_, a)| a.as_str())
    };
    let user = get("USER").expect("the final stage sets USER");
    let name = user.split(':').next().unwrap();
    assert!(!["root", "0", ""].contains(&name), "USER {user} is root");
    // Exec form (JSON arrays): figway is PID 1 and gets SIGTERM itself, no
    // shell in between (distroless has none anyway).
    let exec_form = |op: &str| -> Vec<String> {
        let args = get(op).unwrap_or_else(|| panic!("the final stage has no {op}"));
        serde_json::from_str(args).unwrap_or_else(|e| panic!("{op} {args}: not exec form: {e}"))
    };
    assert_eq!(exec_form("ENTRYPOINT"), ["/figway"]);
    assert_eq!(
        exec_form("CMD"),
        ["run", "--config", "/etc/figway/figway.toml"]
    );
    assert_eq!(get("STOPSIGNAL"), Some("SIGTERM"));
    assert!(
        get("HEALTHCHECK").is_none(),
        "HEALTHCHECK cannot run in distroless (no shell, no curl)"
    );
    let exposed: BTreeSet<u16> = get("EXPOSE")
        .expect("EXPOSE")
        .split_whitespace()
        .map(|p| p.trim_end_matches("/tcp").parse().unwrap())
        .collect();
    let life = lifecycle(str_of(
        &manifests()["ConfigMap"]["data"]["figway.toml"],
        "figway.toml",
    ));
    assert_eq!(
        exposed,
        BTreeSet::from([life.listen_port, life.admin_port]),
        "EXPOSE the proxy and admin ports"
    );

    let ignore = read(".dockerignore");
    for entry in ["target/", "fuzz/target/", ".git/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == entry),
            ".dockerignore lacks {entry}"
        );
    }
}
