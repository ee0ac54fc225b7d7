//! One shard of the per-key buckets: a small map from key hash to bucket,
//! with the buckets in a doubly-linked list by last use (indices into one
//! `Vec`, no allocation per key once the shard has grown), so that the
//! least recently used key is the one dropped at the shard's cap and idle
//! keys are found at the list's tail in O(1) each.

use rustc_hash::FxHashMap;

use super::gcra::Rule;

const NIL: u32 = u32::MAX;

struct Entry {
    /// The key's hash: the map's key, kept for removal.
    key: u64,
    /// The bucket's full-again time (see `gcra`).
    tat: u64,
    /// When the key last asked, in clock ns.
    used: u64,
    /// Towards the most recently used.
    newer: u32,
    /// Towards the least recently used.
    older: u32,
}

pub struct Shard {
    /// Key hashes are already uniform (a seeded hash): Fx only spreads them.
    index: FxHashMap<u64, u32>,
    entries: Vec<Entry>,
    /// Slots of dropped entries, reused before the `Vec` grows.
    free: Vec<u32>,
    newest: u32,
    oldest: u32,
    cap: usize,
}

impl Shard {
    pub fn new(cap: usize) -> Shard {
        Shard {
            index: FxHashMap::default(),
            entries: Vec::new(),
            free: Vec::new(),
            newest: NIL,
            oldest: NIL,
            cap: cap.max(1),
        }
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Takes a token from `key`'s bucket (a new key's starts full), making
    /// it the most recently used; `Err` holds the ns until a token.
    pub fn admit(&mut self, key: u64, rule: Rule, now: u64) -> Result<(), u64> {
        let slot = match self.index.get(&key) {
            Some(&slot) => {
                self.unlink(slot);
                slot
            }
            None => self.insert(key),
        };
        self.push_newest(slot);
        let entry = &mut self.entries[slot as usize];
        entry.used = entry.used.max(now);
        let next = rule.admit(entry.tat, now)?;
        entry.tat = next;
        Ok(())
    }

    /// Drops keys unused since `before`, oldest first, at most `limit`.
    pub fn drop_idle(&mut self, before: u64, limit: usize) {
        for _ in 0..limit {
            let oldest = self.oldest;
            if oldest == NIL || self.entries[oldest as usize].used > before {
                return;
            }
            self.remove(oldest);
        }
    }

    /// A slot for a new key, unlinked: a free one, a new one, or, at the
    /// cap, the least recently used key's.
    fn insert(&mut self, key: u64) -> u32 {
        if self.index.len() >= self.cap {
            self.remove(self.oldest);
        }
        let entry = Entry {
            key,
            tat: 0,
            used: 0,
            newer: NIL,
            older: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot as usize] = entry;
                slot
            }
            None => {
                if self.entries.len() == self.entries.capacity() {
                    // Grow by doubling, but never past the cap.
                    let room = self.cap - self.entries.len();
                    self.entries
                        .reserve_exact(self.entries.len().max(8).min(room.max(1)));
                }
                self.entries.push(entry);
                (self.entries.len() - 1) as u32
            }
        };
        self.index.insert(key, slot);
        slot
    }

    fn remove(&mut self, slot: u32) {
        if slot == NIL {
            return;
        }
        self.unlink(slot);
        self.index.remove(&self.entries[slot as usize].key);
        self.free.push(slot);
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let e = &self.entries[slot as usize];
            (e.newer, e.older)
        };
        match newer {
            NIL => self.newest = older,
            n => self.entries[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.entries[o as usize].newer = newer,
        }
    }

    fn push_newest(&mut self, slot: u32) {
        let old_newest = self.newest;
        {
            let e = &mut self.entries[slot as usize];
            e.newer = NIL;
            e.older = old_newest;
        }
        match old_newest {
            NIL => self.oldest = slot,
            n => self.entries[n as usize].newer = slot,
        }
        self.newest = slot;
    }

    #[cfg(test)]
    pub fn contains(&self, key: u64) -> bool {
        self.index.contains_key(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_least_recently_used_key_goes_first_at_the_cap() {
        let rule = Rule::new(1.0, 1);
        let mut shard = Shard::new(3);
        for key in [1, 2, 3] {
            shard.admit(key, rule, S).unwrap();
        }
        // 1 is used again, so 2 is the oldest when 4 arrives.
        assert!(shard.admit(1, rule, S).is_err());
        shard.admit(4, rule, S).unwrap();
        assert_eq!(shard.len(), 3);
        assert!(!shard.contains(2));
        assert!(shard.contains(1) && shard.contains(3) && shard.contains(4));
        // A dropped key comes back with a full bucket.
        shard.admit(2, rule, S).unwrap();
        assert!(!shard.contains(3));
        assert_eq!(shard.entries.len(), 3, "slots are reused, not added");
    }

    #[test]
    fn idle_keys_are_dropped_oldest_first() {
        let rule = Rule::new(1.0, 1);
        let mut shard = Shard::new(10);
        shard.admit(1, rule, S).unwrap();
        shard.admit(2, rule, 2 * S).unwrap();
        shard.admit(3, rule, 3 * S).unwrap();
        shard.drop_idle(2 * S, usize::MAX);
        assert_eq!(shard.len(), 1);
        assert!(shard.contains(3));
        shard.drop_idle(3 * S, 0);
        assert_eq!(shard.len(), 1, "the limit bounds the work");
        shard.drop_idle(3 * S, 1);
        assert_eq!(shard.len(), 0);
        shard.admit(4, rule, 4 * S).unwrap();
        assert!(shard.contains(4));
    }

    #[test]
    fn many_keys_never_pass_the_cap() {
        let rule = Rule::new(1.0, 1);
        let mut shard = Shard::new(100);
        for key in 0..10_000u64 {
            let _ = shard.admit(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), rule, S);
            assert!(shard.len() <= 100);
        }
        assert!(shard.entries.capacity() <= 100);
    }
}
