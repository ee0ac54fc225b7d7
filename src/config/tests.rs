//! Where config errors point and what they suggest: each error sits at the
//! key or value that is wrong (never at the header of the table holding
//! it), a duplicate names where the first one is, and unknown names and
//! keys suggest the closest valid one. Loaded from text, no binary needed;
//! `tests/cli.rs` checks the same lines through `figway check`.

use std::path::Path;

use super::load_str;

/// `(line, col, key, message)` of every error in `text`, in file order.
fn errors(text: &str) -> Vec<(usize, usize, String, String)> {
    let e = match load_str(text, Path::new("f.toml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    };
    e.messages
        .iter()
        .map(|m| {
            let rest = m.strip_prefix("f.toml:").unwrap_or_else(|| panic!("{m}"));
            let mut parts = rest.splitn(4, ':');
            let mut next = || parts.next().unwrap_or_else(|| panic!("{m}")).trim();
            let line = next().parse().unwrap_or_else(|_| panic!("{m}"));
            let col = next().parse().unwrap_or_else(|_| panic!("{m}"));
            let key = next().to_string();
            let message = next().to_string();
            (line, col, key, message)
        })
        .collect()
}

/// The one error at `key`; fails listing all of them otherwise.
fn error_at(text: &str, key: &str) -> (usize, usize, String) {
    let all = errors(text);
    let at: Vec<_> = all.iter().filter(|e| e.2 == key).collect();
    assert_eq!(at.len(), 1, "errors at {key}: {all:#?}");
    (at[0].0, at[0].1, at[0].3.clone())
}

/// Lines 1-8: listen, admin and two upstreams, `monolith` and `orders`;
/// `rest` starts on line 9.
fn base(rest: &str) -> String {
    format!(
        "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
         [upstreams.monolith]\ntargets = [\"http://127.0.0.1:8000\"]\n\
         [upstreams.orders]\ntargets = [\"http://127.0.0.1:9001\"]\n{rest}"
    )
}

// === positions ===

#[test]
fn a_duplicate_route_name_is_at_the_second_name_naming_the_first() {
    let text = base(
        "[[routes]]\nname = \"api\"\nprefix = \"/a\"\nto = \"monolith\"\n\
         [[routes]]\nname = \"api\"\nprefix = \"/b\"\nto = \"orders\"\n",
    );
    let (line, col, message) = error_at(&text, "routes[1].name");
    assert_eq!((line, col), (14, 8), "{message}");
    assert_eq!(message, "duplicate route name \"api\" (first at line 10)");
}

#[test]
fn a_duplicate_name_from_a_prefix_is_at_the_prefix() {
    // Different hosts, so only the names (both "/a") clash.
    let text = base(
        "[[routes]]\nprefix = \"/a\"\nhost = \"a.example\"\nto = \"monolith\"\n\
         [[routes]]\nprefix = \"/a\"\nhost = \"b.example\"\nto = \"orders\"\n",
    );
    let (line, col, message) = error_at(&text, "routes[1].name");
    assert_eq!((line, col), (14, 10), "{message}");
    assert!(message.contains("named by its prefix"), "{message}");
    assert!(message.ends_with("(first at line 10)"), "{message}");
}

#[test]
fn a_third_duplicate_also_names_the_first() {
    let route = "[[routes]]\nname = \"api\"\nprefix = \"/{}\"\nto = \"monolith\"\n";
    let text = base(&["a", "b", "c"].map(|p| route.replace("{}", p)).concat());
    let (_, _, message) = error_at(&text, "routes[2].name");
    assert!(message.ends_with("(first at line 10)"), "{message}");
}

#[test]
fn the_same_prefix_host_and_methods_is_at_the_second_prefix() {
    let text = base(
        "[[routes]]\nname = \"one\"\nprefix = \"/api\"\nto = \"monolith\"\n\
         [[routes]]\nname = \"two\"\nprefix = \"/api/\"\nto = \"orders\"\n",
    );
    let (line, col, message) = error_at(&text, "routes[1].prefix");
    assert_eq!((line, col), (15, 10), "{message}");
    assert!(message.contains("routes[0]"), "{message}");
    assert!(message.ends_with("(first at line 11)"), "{message}");
}

#[test]
fn a_broken_methods_list_is_not_also_a_duplicate() {
    let text = base(
        "[[routes]]\nprefix = \"/api\"\nto = \"monolith\"\n\
         [[routes]]\nname = \"two\"\nprefix = \"/api\"\nmethods = []\nto = \"orders\"\n",
    );
    let all = errors(&text);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!((all[0].0, all[0].1), (15, 11), "{all:#?}");
    assert_eq!(all[0].2, "routes[1].methods");
}

#[test]
fn a_broken_route_still_takes_part_in_the_duplicate_check() {
    let text = base(
        "[[routes]]\nname = \"api\"\nprefix = \"/a\"\nto = \"monolith\"\n\
         [[routes]]\nname = \"api\"\nprefix = \"/b\"\nto = \"nowhere\"\n",
    );
    let keys: Vec<String> = errors(&text).into_iter().map(|e| e.2).collect();
    assert_eq!(keys, ["routes[1].name", "routes[1].to"]);
}

#[test]
fn all_zero_split_weights_are_at_the_split() {
    let text = base(
        "[[routes]]\nprefix = \"/\"\n\
         split = [{ to = \"orders\", weight = 0 }, { to = \"monolith\", weight = 0 }]\n",
    );
    let (line, col, message) = error_at(&text, "routes[0].split");
    assert_eq!((line, col), (11, 9), "{message}");
    assert!(message.contains("all split weights are zero"), "{message}");
}

#[test]
fn an_empty_split_is_at_the_split() {
    let (line, col, _) = error_at(
        &base("[[routes]]\nprefix = \"/\"\nsplit = []\n"),
        "routes[0].split",
    );
    assert_eq!((line, col), (11, 9));
}

#[test]
fn an_upstream_twice_in_a_split_is_at_the_second_to() {
    let text = base(
        "[[routes]]\nprefix = \"/\"\n\
         split = [{ to = \"orders\", weight = 1 }, { to = \"orders\", weight = 2 }]\n",
    );
    let (line, col, message) = error_at(&text, "routes[0].split[1].to");
    assert_eq!((line, col), (11, 48), "{message}");
    assert!(message.ends_with("(first at column 17)"), "{message}");
}

#[test]
fn sticky_without_split_is_at_the_sticky_value() {
    let text = base("[[routes]]\nprefix = \"/\"\nto = \"orders\"\nsticky = \"client_ip\"\n");
    assert_eq!(error_at(&text, "routes[0].sticky").0, 12);
}

#[test]
fn an_empty_methods_list_is_at_the_list() {
    let text = base("[[routes]]\nprefix = \"/\"\nmethods = []\nto = \"orders\"\n");
    let (line, col, _) = error_at(&text, "routes[0].methods");
    assert_eq!((line, col), (11, 11));
}

#[test]
fn hash_key_errors_are_at_the_keys_that_cause_them() {
    // Missing: at the `balance = "hash"` that requires it.
    let text = base("balance = \"hash\"\n[[routes]]\nprefix = \"/\"\nto = \"orders\"\n");
    let (line, col, message) = error_at(&text, "upstreams.orders.hash_key");
    assert_eq!((line, col), (9, 11), "{message}");
    assert!(message.contains("add hash_key"), "{message}");
    // Present without hash balancing: at the hash_key value.
    let text = base("hash_key = \"client_ip\"\n[[routes]]\nprefix = \"/\"\nto = \"orders\"\n");
    assert_eq!(error_at(&text, "upstreams.orders.hash_key").0, 9);
    // Present but invalid: said once, at its value.
    let text = base(
        "balance = \"hash\"\nhash_key = \"ip\"\n[[routes]]\nprefix = \"/\"\nto = \"orders\"\n",
    );
    let (line, _, message) = error_at(&text, "upstreams.orders.hash_key");
    assert_eq!(line, 10, "{message}");
    assert!(message.contains("invalid key"), "{message}");
}

#[test]
fn target_errors_are_at_the_targets() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\ntargets = []\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    assert_eq!(error_at(text, "upstreams.m.targets").0, 4);
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\n\
                targets = [\"http://127.0.0.1:1\", \"http://127.0.0.1:1/\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let (line, col, message) = error_at(text, "upstreams.m.targets[1]");
    assert_eq!((line, col), (4, 34), "{message}");
    assert!(message.ends_with("(first at column 12)"), "{message}");
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\n\
                targets = [{ url = \"http://127.0.0.1:1\", weight = 5000000000 }]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let (line, col, _) = error_at(text, "upstreams.m.targets[0].weight");
    assert_eq!((line, col), (4, 51));
}

#[test]
fn an_admin_address_overlapping_listen_is_at_the_address() {
    let text = "[listen]\naddress = \"127.0.0.1:8080\"\n[admin]\naddress = \"0.0.0.0:8080\"\n\
                [upstreams.m]\ntargets = [\"http://127.0.0.1:1\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    assert_eq!(error_at(text, "admin.address").0, 4);
    // With the admin address left to its default, at listen.address.
    let text = "[listen]\naddress = \"127.0.0.1:9901\"\n\
                [upstreams.m]\ntargets = [\"http://127.0.0.1:1\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let (line, col, message) = error_at(text, "listen.address");
    assert_eq!((line, col), (2, 11), "{message}");
    assert!(message.contains("default admin.address"), "{message}");
}

// === suggestions ===

#[test]
fn unknown_upstreams_suggest_the_closest_name_wherever_they_are_named() {
    let text = base(
        "[upstreams.shadow]\ntargets = [\"http://127.0.0.1:9002\"]\n\
         [[routes]]\nprefix = \"/a\"\nto = \"order\"\nfallback = \"monolit\"\n\
         [[routes]]\nprefix = \"/b\"\nsplit = [{ to = \"Orders\", weight = 1 }, { to = \"monolith\", weight = 1 }]\n\
         [routes.shadow]\nto = \"shadw\"\n\
         [[routes]]\nprefix = \"/c\"\nto = \"payments\"\n",
    );
    let got: Vec<(String, String)> = errors(&text).into_iter().map(|e| (e.2, e.3)).collect();
    let want = [
        (
            "routes[0].to",
            "unknown upstream \"order\" (did you mean \"orders\"?)",
        ),
        (
            "routes[0].fallback",
            "unknown upstream \"monolit\" (did you mean \"monolith\"?)",
        ),
        (
            "routes[1].split[0].to",
            "unknown upstream \"Orders\" (did you mean \"orders\"?)",
        ),
        (
            "routes[1].shadow.to",
            "unknown upstream \"shadw\" (did you mean \"shadow\"?)",
        ),
        // Nothing close: no suggestion.
        ("routes[2].to", "unknown upstream \"payments\""),
    ]
    .map(|(k, m)| (k.to_string(), m.to_string()));
    assert_eq!(got, want);
}

#[test]
fn unknown_keys_suggest_an_accepted_key_even_one_not_in_the_file() {
    let text = "[listen]\naddres = \"127.0.0.1:0\"\ndrain_timout = \"5s\"\ncolour = \"blue\"\n\
                [upstream.m]\ntargets = []\n\
                [upstreams.m]\ntargets = [{ url = \"http://127.0.0.1:1\", wieght = 2 }]\n\
                [upstreams.m.helth]\npath = \"/\"\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\nstrip_prefx = true\n\
                [routes.shadow]\nto = \"m\"\nsmaple = 0.5\n";
    let got: Vec<(String, String)> = errors(text)
        .into_iter()
        .filter(|e| e.3.starts_with("unknown key"))
        .map(|e| (e.2, e.3))
        .collect();
    let want = [
        ("listen.addres", " (did you mean \"address\"?)"),
        ("listen.drain_timout", " (did you mean \"drain_timeout\"?)"),
        ("listen.colour", ""),
        ("upstream", " (did you mean \"upstreams\"?)"),
        (
            "upstreams.m.targets[0].wieght",
            " (did you mean \"weight\"?)",
        ),
        ("upstreams.m.helth", " (did you mean \"health\"?)"),
        ("routes[0].strip_prefx", " (did you mean \"strip_prefix\"?)"),
        ("routes[0].shadow.smaple", " (did you mean \"sample\"?)"),
    ]
    .map(|(k, hint)| (k.to_string(), format!("unknown key{hint}")));
    assert_eq!(got, want);
}

#[test]
fn unknown_enumerated_values_suggest_the_closest() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[log]\nformat = \"jsno\"\n\
                [upstreams.m]\nbalance = \"round-robin\"\nprotocol = \"h2\"\n\
                targets = [\"http://127.0.0.1:1\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let got: Vec<String> = errors(text).into_iter().map(|e| e.3).collect();
    assert!(got[0].contains("(did you mean \"json\"?)"), "{got:#?}");
    assert!(
        got[1].contains("(did you mean \"round_robin\"?)"),
        "{got:#?}"
    );
    assert!(got[2].contains("(did you mean \"h2c\"?)"), "{got:#?}");
}

#[test]
fn the_bound_addresses_keep_their_positions() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[upstreams.m]\n\
                targets = [\"http://127.0.0.1:1\"]\n[[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let loaded = load_str(text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(loaded.position("listen.address"), Some("f.toml:2:11"));
    // Left to its default: nowhere in the file.
    assert_eq!(loaded.position("admin.address"), None);
}

// === warnings ===

/// A `to` route whose fallback is its own upstream is valid, with one
/// warning: rolling a route back to the monolith (`to = "monolith"`) must
/// be one edit even when the route keeps `fallback = "monolith"` (SPEC §2).
#[test]
fn a_fallback_naming_the_routes_own_upstream_is_a_warning() {
    let text = base("[[routes]]\nname = \"search\"\nprefix = \"/s\"\nto = \"monolith\"\nfallback = \"monolith\"\n");
    let loaded = load_str(&text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
    let own: Vec<&String> = loaded
        .warnings
        .iter()
        .filter(|w| w.contains("fallback"))
        .collect();
    assert_eq!(
        own,
        [
            "warning: routes[0].fallback: \"monolith\" is route \"search\"'s own upstream: it has no effect"
        ],
        "{:#?}",
        loaded.warnings
    );
}

/// A split falling back to one of its sides is the canary's normal set-up:
/// no warning.
#[test]
fn a_split_falling_back_to_one_of_its_sides_is_no_warning() {
    let text = base(
        "[[routes]]\nprefix = \"/s\"\nsplit = [{ to = \"orders\", weight = 1 }, { to = \"monolith\", weight = 99 }]\nfallback = \"monolith\"\n",
    );
    let loaded = load_str(&text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        !loaded.warnings.iter().any(|w| w.contains("fallback")),
        "{:#?}",
        loaded.warnings
    );
}

// === targets by DNS name (SPEC §10) ===

#[test]
fn dns_keys_inherit_from_defaults_and_upstreams_override_them() {
    use crate::config::DnsFamily;
    use std::time::Duration;
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[admin]\naddress = \"127.0.0.1:0\"\n\
                [runtime]\nresolver = \"127.0.0.1:5353\"\n\
                [defaults]\nresolve_interval = \"2s\"\ndns_family = \"all\"\n\
                [upstreams.m]\ntargets = [\"http://Orders.Shop.svc.cluster.local.:8080\", \"http://[::1]:9\"]\n\
                [upstreams.n]\ntargets = [\"http://localhost:1\"]\nresolve_interval = \"250ms\"\ndns_family = \"v6\"\n\
                [upstreams.o]\ntargets = [\"http://10.0.0.1:1\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let loaded = load_str(text, Path::new("f.toml")).unwrap_or_else(|e| panic!("{e}"));
    let c = &loaded.config;
    assert_eq!(c.runtime.resolver, Some("127.0.0.1:5353".parse().unwrap()));
    let (m, n, o) = (&c.upstreams[0], &c.upstreams[1], &c.upstreams[2]);
    assert_eq!(
        (m.resolve_interval, m.dns_family),
        (Duration::from_secs(2), DnsFamily::All)
    );
    assert_eq!(
        (n.resolve_interval, n.dns_family),
        (Duration::from_millis(250), DnsFamily::V6)
    );
    assert_eq!(
        (o.resolve_interval, o.dns_family),
        (Duration::from_secs(2), DnsFamily::All)
    );
    assert_eq!(
        m.targets[0].name.as_deref(),
        Some("orders.shop.svc.cluster.local.")
    );
    assert_eq!(
        m.targets[0].authority,
        "orders.shop.svc.cluster.local.:8080"
    );
    assert_eq!(m.targets[0].port, 8080);
    assert_eq!(
        (
            m.targets[1].name.as_deref(),
            m.targets[1].authority.as_str()
        ),
        (None, "[::1]:9")
    );
    assert_eq!(o.targets[0].name, None);
    // Without the keys: 5 s, v4_preferred, the system's resolver.
    let plain = load_str(
        &base("[[routes]]\nprefix = \"/\"\nto = \"monolith\"\n"),
        Path::new("f.toml"),
    );
    let plain = plain.unwrap_or_else(|e| panic!("{e}"));
    let u = &plain.config.upstreams[0];
    assert_eq!(
        (
            u.resolve_interval,
            u.dns_family,
            plain.config.runtime.resolver
        ),
        (Duration::from_secs(5), DnsFamily::V4Preferred, None)
    );
}

#[test]
fn dns_errors_are_at_their_values() {
    let text = "[listen]\naddress = \"127.0.0.1:0\"\n[runtime]\nresolver = \"dns.local:53\"\n\
                [defaults]\ndns_family = \"v4-preferred\"\n\
                [upstreams.m]\nresolve_interval = \"0s\"\n\
                targets = [\"http://bad_name.local:1\", \"http://-x.example:1\", \"http://300.1.1.1:1\", \"http://a..b:1\"]\n\
                [[routes]]\nprefix = \"/\"\nto = \"m\"\n";
    let (line, _, message) = error_at(text, "runtime.resolver");
    assert_eq!(line, 4, "{message}");
    let (line, _, message) = error_at(text, "defaults.dns_family");
    assert_eq!(line, 6);
    assert!(
        message.contains("(did you mean \"v4_preferred\"?)"),
        "{message}"
    );
    let (line, _, message) = error_at(text, "upstreams.m.resolve_interval");
    assert_eq!(line, 8, "{message}");
    for i in 0..4 {
        let (line, _, message) = error_at(text, &format!("upstreams.m.targets[{i}]"));
        assert_eq!(line, 9, "{message}");
        assert!(message.starts_with("invalid target"), "{message}");
    }
}
