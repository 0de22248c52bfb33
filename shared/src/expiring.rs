//! A bounded in-memory map whose entries expire: what the verified-token cache and the
//! profile cache share.
//!
//! Each entry carries its own deadline in whatever clock the caller keeps (token expiry in
//! Unix seconds, an `Instant`); the caller passes `now`. When the map is full, expired
//! entries go first, and if that is not enough, all of them: a cache that forgets costs one
//! recomputation per key, a cache that grows without bound costs the process.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// The map; share it behind an `Arc`.
pub struct ExpiringMap<K, V, T> {
    capacity: usize,
    entries: Mutex<HashMap<K, (T, V)>>,
}

impl<K: Eq + Hash, V: Clone, T: Ord + Copy> ExpiringMap<K, V, T> {
    /// An empty map holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value under `key` if its deadline is after `now` and `keep` accepts it; an
    /// expired entry is dropped.
    pub fn get_if(&self, key: &K, now: T, keep: impl FnOnce(&V) -> bool) -> Option<V> {
        let mut entries = self.entries.lock().ok()?;
        let (deadline, value) = entries.get(key)?;
        if *deadline <= now {
            entries.remove(key);
            return None;
        }
        keep(value).then(|| value.clone())
    }

    /// The value under `key` if its deadline is after `now`.
    pub fn get(&self, key: &K, now: T) -> Option<V> {
        self.get_if(key, now, |_| true)
    }

    /// Stores `value` under `key` until `deadline`, making room first if the map is full.
    pub fn insert(&self, key: K, value: V, deadline: T, now: T) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, (deadline, _)| *deadline > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (deadline, value));
    }

    /// Drops the entry under `key`, if any.
    pub fn remove(&self, key: &K) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// How many entries are held (expired ones included until they are dropped).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether the map holds nothing.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_served_until_their_deadline_only() {
        let map = ExpiringMap::new(4);
        map.insert("a", 1, 10u64, 0);
        assert_eq!(map.get(&"a", 9), Some(1));
        assert_eq!(map.get(&"a", 10), None, "the deadline is exclusive");
        assert!(map.is_empty(), "an expired entry is dropped when seen");
    }

    #[test]
    fn get_if_serves_only_what_the_caller_accepts() {
        let map = ExpiringMap::new(4);
        map.insert("a", (7u64, "old"), 10u64, 0);
        assert_eq!(map.get_if(&"a", 1, |(v, _)| *v == 8), None);
        assert_eq!(map.get_if(&"a", 1, |(v, _)| *v == 7), Some((7, "old")));
        map.remove(&"a");
        assert_eq!(map.get(&"a", 1), None);
    }

    #[test]
    fn a_full_map_drops_expired_entries_first_and_never_grows_past_its_capacity() {
        let map = ExpiringMap::new(3);
        map.insert(1, (), 5u64, 0);
        map.insert(2, (), 100, 0);
        map.insert(3, (), 100, 0);
        map.insert(4, (), 100, 6);
        assert_eq!(map.len(), 3);
        assert_eq!(map.get(&1, 6), None);
        assert_eq!(
            map.get(&2, 6),
            Some(()),
            "a live entry survives the clean-up"
        );
        for key in 5..100 {
            map.insert(key, (), 100, 6);
            assert!(map.len() <= 3);
        }
        map.insert(99, (), 100, 6);
        assert_eq!(
            map.get(&99, 6),
            Some(()),
            "replacing a key never clears the map"
        );
    }
}
