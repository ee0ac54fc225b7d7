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
