//! Unit tests of `inventory`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

fn on(capacity: usize) -> Inventory {
    let inventory = Inventory::default();
    inventory.configure(InventorySpec {
        enabled: true,
        capacity,
    });
    inventory
}

fn requests(report: &Value, i: usize) -> u64 {
    report["routes"][i]["requests"].as_u64().unwrap()
}

#[test]
fn each_thread_counts_in_its_own_summary_and_the_report_merges_them() {
    let inventory = on(10);
    let pair = inventory.pair("orders", "monolith").unwrap();
    std::thread::scope(|s| {
        for t in 0..3 {
            let pair = &pair;
            s.spawn(move || {
                for i in 0..100 {
                    pair.record("/api/orders", &format!("/api/orders/{i}"), 0);
                }
                pair.record("/api/orders", &format!("/api/orders/only-{t}"), 2);
            });
        }
    });
    assert_eq!(lock(&inventory.core.workers).len(), 3);
    let report = inventory.report([("orders", "monolith", &*pair)], None);
    assert_eq!(requests(&report, 0), 303);
    let paths = &report["routes"][0]["paths"];
    assert_eq!(paths[0]["template"], "/api/orders/{id}");
    assert_eq!(paths[0]["requests"], 300);
    assert_eq!(paths[0]["methods"], json!({"GET": 300}));
    assert_eq!(paths[1]["template"], "/api/orders/only-0");
    assert_eq!(paths[1]["methods"], json!({"POST": 1}));
    assert_eq!(paths.as_array().unwrap().len(), 4);
}

#[test]
fn a_pair_kept_by_the_next_compile_keeps_its_counts() {
    let inventory = on(10);
    let pair = inventory.pair("orders", "monolith").unwrap();
    pair.record("/", "/a", 0);
    inventory.configure(InventorySpec {
        enabled: true,
        capacity: 10,
    });
    let again = inventory.pair("orders", "monolith").unwrap();
    assert!(Arc::ptr_eq(&pair, &again));
}

#[test]
fn a_pair_the_last_compile_left_out_does_not_come_back() {
    let inventory = on(10);
    let spec = InventorySpec {
        enabled: true,
        capacity: 10,
    };
    let old = inventory.pair("orders", "monolith").unwrap();
    old.record("/", "/a", 0);
    // Renamed away, while a request on the old table still holds it...
    inventory.configure(spec);
    let _renamed = inventory.pair("orders-v2", "monolith").unwrap();
    // ... and back: a new pair, with no counts.
    inventory.configure(spec);
    let back = inventory.pair("orders", "monolith").unwrap();
    assert!(!Arc::ptr_eq(&old, &back));
    let report = inventory.report([("orders", "monolith", &*back)], None);
    assert_eq!(requests(&report, 0), 0);
}

#[test]
fn a_dropped_pair_leaves_no_entries_and_its_id_serves_the_next() {
    let inventory = on(10);
    let pair = inventory.pair("orders", "monolith").unwrap();
    pair.record("/", "/a", 0);
    let id = pair.id;
    drop(pair);
    let worker = lock(&inventory.core.workers)[0].clone();
    assert!(lock(&worker.slots).iter().all(Option::is_none));
    inventory.configure(InventorySpec {
        enabled: true,
        capacity: 10,
    });
    let next = inventory.pair("users", "monolith").unwrap();
    assert_eq!(next.id, id);
    let report = inventory.report([("users", "monolith", &*next)], None);
    assert_eq!(requests(&report, 0), 0);
}

#[test]
fn a_changed_section_hands_out_new_pairs_and_off_hands_out_none() {
    let inventory = on(10);
    let pair = inventory.pair("orders", "monolith").unwrap();
    let since = inventory.since().unwrap();
    inventory.configure(InventorySpec {
        enabled: true,
        capacity: 20,
    });
    let resized = inventory.pair("orders", "monolith").unwrap();
    assert!(!Arc::ptr_eq(&pair, &resized));
    assert_eq!(resized.capacity, 20);
    assert!(inventory.since().unwrap() >= since);
    inventory.configure(InventorySpec {
        enabled: false,
        capacity: 20,
    });
    assert!(inventory.pair("orders", "monolith").is_none());
    assert_eq!(inventory.since(), None);
    let report = inventory.report([("orders", "monolith", &*resized)], None);
    assert_eq!(report, json!({"since": null, "routes": []}));
}

#[test]
fn the_report_lists_routes_by_requests_and_cuts_paths_to_top() {
    let inventory = on(10);
    let a = inventory.pair("a", "monolith").unwrap();
    let b = inventory.pair("b", "monolith").unwrap();
    a.record("/a", "/a/1", 0);
    for p in ["/b/x", "/b/x", "/b/y", "/b/z"] {
        b.record("/b", p, 0);
    }
    let report = inventory.report([("a", "monolith", &*a), ("b", "monolith", &*b)], Some(2));
    assert_eq!(report["routes"][0]["route"], "b");
    assert_eq!(requests(&report, 0), 4);
    assert_eq!(report["routes"][0]["paths"].as_array().unwrap().len(), 2);
    assert_eq!(report["routes"][0]["paths"][0]["template"], "/b/x");
    assert_eq!(report["routes"][1]["route"], "a");
}
