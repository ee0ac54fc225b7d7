//! `[inventory]`: the legacy inventory (SPEC §11), whether it counts and
//! how many path templates it keeps per (route, legacy upstream) pair. The
//! section is reloadable; what a change of it does to the counts is the
//! runtime's business (`inventory`), not the reader's.

use super::doc::{Problems, Table};
use super::model::InventorySpec;

/// The largest `capacity`: each entry costs a few hundred bytes per worker
/// and per pair, and `GET /inventory` lists them all.
const MAX_CAPACITY: i64 = 100_000;

pub(super) fn read_inventory(root: &mut Table<'_, '_>, problems: &mut Problems) -> InventorySpec {
    let mut spec = InventorySpec::default();
    let Some(mut t) = root.table("inventory", problems) else {
        return spec;
    };
    if let Some(enabled) = t.boolean("enabled", problems) {
        spec.enabled = enabled;
    }
    match t.integer("capacity", problems) {
        Some(n) if (1..=MAX_CAPACITY).contains(&n.value) => spec.capacity = n.value as usize,
        Some(n) => problems.add(
            n.span,
            t.key_path("capacity"),
            format!("must be between 1 and {MAX_CAPACITY}"),
        ),
        None => {}
    }
    t.finish(problems);
    spec
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{load_str, InventorySpec};

    const BASE: &str = "[listen]\naddress = \"127.0.0.1:8080\"\n\
        [upstreams.monolith]\nlegacy = true\ntargets = [\"http://127.0.0.1:9000\"]\n\
        [[routes]]\nprefix = \"/\"\nto = \"monolith\"\n";

    fn spec(section: &str) -> InventorySpec {
        let text = format!("{BASE}{section}");
        match load_str(&text, Path::new("f.toml")) {
            Ok(loaded) => loaded.config.inventory,
            Err(e) => panic!("rejected:\n{e}"),
        }
    }

    fn errors(section: &str) -> Vec<String> {
        let text = format!("{BASE}{section}");
        match load_str(&text, Path::new("f.toml")) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.messages,
        }
    }

    #[test]
    fn on_with_200_entries_unless_the_file_says_otherwise() {
        assert_eq!(
            spec(""),
            InventorySpec {
                enabled: true,
                capacity: 200
            }
        );
        assert_eq!(
            spec("[inventory]\n"),
            InventorySpec {
                enabled: true,
                capacity: 200
            }
        );
        assert_eq!(
            spec("[inventory]\nenabled = false\ncapacity = 5\n"),
            InventorySpec {
                enabled: false,
                capacity: 5
            }
        );
    }

    #[test]
    fn a_capacity_below_one_is_an_error_at_its_value() {
        // BASE is 8 lines: `[inventory]` is line 9, `capacity` line 10.
        for bad in ["0", "-3", "100001"] {
            let messages = errors(&format!("[inventory]\ncapacity = {bad}\n"));
            assert_eq!(
                messages,
                ["f.toml:10:12: inventory.capacity: must be between 1 and 100000".to_string()]
            );
        }
    }

    #[test]
    fn wrong_types_and_unknown_keys_are_errors_with_their_position() {
        let messages = errors("[inventory]\nenabled = \"yes\"\ncapacity = 1.5\ncapacty = 3\n");
        assert_eq!(messages.len(), 3, "{messages:#?}");
        assert!(
            messages[0].starts_with("f.toml:10:11: inventory.enabled:"),
            "{messages:#?}"
        );
        assert!(
            messages[1].starts_with("f.toml:11:12: inventory.capacity:"),
            "{messages:#?}"
        );
        assert!(
            messages[2].starts_with("f.toml:12:1: inventory.capacty:"),
            "{messages:#?}"
        );
        assert!(
            messages[2].contains("capacity"),
            "suggests the key: {messages:#?}"
        );
    }
}
