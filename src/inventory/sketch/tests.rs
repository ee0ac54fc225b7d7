//! Unit tests of `inventory::sketch`, in a file of their own so the module's
//! source reads as the code it is.

use super::*;

fn counts(sketch: &Sketch) -> Vec<(String, u64, u64)> {
    let (entries, _) = merge(&[sketch.view()], usize::MAX);
    entries
        .into_iter()
        .map(|e| (e.template, e.count, e.error))
        .collect()
}

/// The heap's invariant and the table's agreement with the entries.
fn check(s: &Sketch) {
    assert!(s.entries.len() <= s.capacity);
    assert_eq!(s.heap.len(), s.entries.len());
    assert_eq!(s.table.len(), s.entries.len());
    for at in 1..s.heap.len() {
        assert!(s.count_at((at - 1) / 2) <= s.count_at(at));
    }
    for (i, slot) in s.entries.iter().enumerate() {
        assert_eq!(s.heap[slot.at as usize] as usize, i);
        let hash = s.hasher.hash_one(slot.entry.template.as_str());
        assert_eq!(slot.hash, hash);
        assert!(s.table.find(hash, |&j| j as usize == i).is_some());
    }
}

#[test]
fn counts_are_exact_below_capacity() {
    let mut s = Sketch::new(10);
    for (t, n) in [("/a", 5), ("/b", 3), ("/c", 1)] {
        for _ in 0..n {
            s.observe(t, 0);
        }
    }
    check(&s);
    assert_eq!(
        counts(&s),
        [
            ("/a".into(), 5, 0),
            ("/b".into(), 3, 0),
            ("/c".into(), 1, 0)
        ]
    );
    assert_eq!(s.total(), 9);
    assert_eq!(s.floor(), 0);
}

#[test]
fn a_newcomer_replaces_the_least_counted_and_inherits_its_count() {
    let mut s = Sketch::new(2);
    s.observe("/a", 0);
    s.observe("/a", 0);
    s.observe("/b", 2);
    s.observe("/c", 1);
    check(&s);
    assert_eq!(counts(&s), [("/a".into(), 2, 0), ("/c".into(), 2, 1)]);
    // Methods count from the entry's creation: /b's POST is gone.
    let c = s.entries().find(|e| e.template == "/c").unwrap();
    assert_eq!(c.methods[1], 1);
    assert_eq!(c.methods.iter().sum::<u64>(), 1);
    assert_eq!(s.total(), 4);
}

#[test]
fn methods_are_counted_by_name_and_the_rest_as_other() {
    let mut s = Sketch::new(4);
    for m in [
        Method::GET,
        Method::GET,
        Method::POST,
        Method::from_bytes(b"PROPFIND").unwrap(),
    ] {
        s.observe("/x", method_index(&m));
    }
    let e = s.entries().next().unwrap();
    assert_eq!(e.methods[0], 2);
    assert_eq!(e.methods[2], 1);
    assert_eq!(e.methods[8], 1);
}

#[test]
fn a_flood_of_distinct_templates_stays_bounded_and_keeps_the_heavy_ones() {
    let capacity = 50;
    let mut s = Sketch::new(capacity);
    let mut truth: HashMap<String, u64> = HashMap::new();
    // Ten heavy templates among 20,000 one-off ones, interleaved.
    for i in 0..20_000u64 {
        let t = if i % 4 == 0 {
            format!("/heavy/{}", i % 40 / 4)
        } else {
            format!("/noise/n{i}")
        };
        *truth.entry(t.clone()).or_default() += 1;
        s.observe(&t, 0);
        assert!(s.len() <= capacity);
    }
    check(&s);
    let (entries, total) = merge(&[s.view()], usize::MAX);
    assert_eq!(total, 20_000);
    for e in &entries {
        let t = truth[&e.template];
        assert!(e.count - e.error <= t && t <= e.count, "{e:?} true {t}");
    }
    let top: Vec<&str> = entries[..10].iter().map(|e| e.template.as_str()).collect();
    for h in 0..10 {
        assert!(top.contains(&format!("/heavy/{h}").as_str()), "{top:?}");
    }
}

#[test]
fn replacing_reuses_the_evicted_template_buffer() {
    let mut s = Sketch::new(1);
    s.observe("/a-rather-long-template-first", 0);
    let before = s.entries[0].entry.template.capacity();
    s.observe("/short", 0);
    assert_eq!(s.entries[0].entry.template, "/short");
    assert_eq!(s.entries[0].entry.template.capacity(), before);
}

#[test]
fn merge_sums_what_workers_keep() {
    let mut a = Sketch::new(10);
    let mut b = Sketch::new(10);
    a.observe("/x", 0);
    a.observe("/x", 0);
    b.observe("/x", 2);
    b.observe("/y", 0);
    let (entries, total) = merge(&[a.view(), b.view()], 10);
    assert_eq!(total, 4);
    assert_eq!(entries[0].template, "/x");
    assert_eq!((entries[0].count, entries[0].error), (3, 0));
    assert_eq!(entries[0].methods[0], 2);
    assert_eq!(entries[0].methods[2], 1);
    assert_eq!((entries[1].count, entries[1].error), (1, 0));
}

#[test]
fn merge_adds_a_full_workers_floor_to_templates_it_does_not_keep() {
    let mut full = Sketch::new(1);
    for _ in 0..3 {
        full.observe("/a", 0);
    }
    let mut other = Sketch::new(4);
    other.observe("/b", 0);
    let (entries, _) = merge(&[full.view(), other.view()], 10);
    let b = entries.iter().find(|e| e.template == "/b").unwrap();
    // /b may have been seen up to 3 times by the full worker.
    assert_eq!((b.count, b.error), (4, 3));
    let a = entries.iter().find(|e| e.template == "/a").unwrap();
    // The other worker is not full: /a was never seen there.
    assert_eq!((a.count, a.error), (3, 0));
}

#[test]
fn merged_bounds_hold_against_the_truth() {
    let mut workers: Vec<Sketch> = (0..3).map(|_| Sketch::new(8)).collect();
    let mut truth: HashMap<String, u64> = HashMap::new();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..30_000 {
        // A skewed distribution over 200 templates.
        let n = (rng.f64().powi(3) * 200.0) as u64;
        let t = format!("/t/{n}x");
        *truth.entry(t.clone()).or_default() += 1;
        workers[rng.usize(..3)].observe(&t, 0);
    }
    let views: Vec<View> = workers.iter().map(Sketch::view).collect();
    let (entries, total) = merge(&views, 8);
    assert_eq!(total, 30_000);
    assert_eq!(entries.len(), 8);
    for e in &entries {
        let t = truth[&e.template];
        assert!(e.count - e.error <= t && t <= e.count, "{e:?} true {t}");
    }
    assert_eq!(entries[0].template, "/t/0x");
}

#[test]
fn merge_cuts_to_keep() {
    let mut s = Sketch::new(10);
    for t in ["/a", "/a", "/b", "/c"] {
        s.observe(t, 0);
    }
    let (entries, total) = merge(&[s.view()], 1);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].template, "/a");
    assert_eq!(total, 4);
}
