//! A map that keeps only the most recently used entries, in bounded memory. Pure.
//!
//! Two generations: new and touched entries live in `current`; when it holds `half`
//! entries it becomes `previous` and the old `previous` is dropped whole. Nothing is
//! removed one by one in bulk, so the tables never fill with tombstones and double in
//! size (what `HashMap::retain` followed by inserts does), and memory stays at two tables
//! of `half` entries at most.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

#[derive(Debug)]
pub struct Recent<K, V> {
    half: usize,
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    /// Entries dropped so far.
    pub forgotten: u64,
}

impl<K: Hash + Eq, V> Recent<K, V> {
    /// Keeps between `half` and `2 × half` of the most recently used entries.
    pub fn new(half: usize) -> Recent<K, V> {
        Recent {
            half: half.max(1),
            current: HashMap::new(),
            previous: HashMap::new(),
            forgotten: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    /// The entry for `key` (moved to the current generation), made with `make` when absent;
    /// `owned` turns the key into the stored form.
    pub fn entry<Q>(
        &mut self,
        key: &Q,
        owned: impl FnOnce(&Q) -> K,
        make: impl FnOnce() -> V,
    ) -> &mut V
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if self.current.contains_key(key) {
            return self.current.get_mut(key).expect("just looked up");
        }
        let (k, v) = match self.previous.remove_entry(key) {
            Some(kv) => kv,
            None => (owned(key), make()),
        };
        if self.current.len() >= self.half {
            self.forgotten += self.previous.len() as u64;
            self.previous = std::mem::replace(&mut self.current, HashMap::with_capacity(self.half));
        }
        self.current.entry(k).or_insert(v)
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current
            .remove(key)
            .or_else(|| self.previous.remove(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.current.get(key).or_else(|| self.previous.get(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_recent_and_counts_the_forgotten() {
        // (operations as (key, touch=true / remove=false), half, kept keys, forgotten)
        type Ops<'a> = &'a [(&'a str, bool)];
        let cases: &[(Ops, usize, &[&str], u64)] = &[
            (&[("a", true), ("b", true)], 2, &["a", "b"], 0),
            (
                &[("a", true), ("b", true), ("c", true)],
                2,
                &["a", "b", "c"],
                0,
            ),
            (
                &[
                    ("a", true),
                    ("b", true),
                    ("c", true),
                    ("d", true),
                    ("e", true),
                ],
                2,
                &["c", "d", "e"],
                2,
            ),
            // Touching "a" again moves it forward: it survives the next rotation.
            (
                &[
                    ("a", true),
                    ("b", true),
                    ("c", true),
                    ("a", true),
                    ("d", true),
                    ("e", true),
                ],
                2,
                &["a", "c", "d", "e"],
                1,
            ),
            (&[("a", true), ("b", true), ("a", false)], 2, &["b"], 0),
            (
                &[("a", true), ("b", true), ("c", true), ("a", false)],
                2,
                &["b", "c"],
                0,
            ),
        ];
        for (ops, half, kept, forgotten) in cases {
            let mut r: Recent<Box<str>, u32> = Recent::new(*half);
            for (k, touch) in *ops {
                if *touch {
                    *r.entry(*k, |s: &str| Box::from(s), || 0) += 1;
                } else {
                    r.remove(*k);
                }
            }
            let mut got: Vec<&str> = ["a", "b", "c", "d", "e"]
                .into_iter()
                .filter(|k| r.get(*k).is_some())
                .collect();
            got.sort_unstable();
            assert_eq!(&got, kept, "{ops:?}");
            assert_eq!(r.forgotten, *forgotten, "{ops:?}");
            assert!(r.len() <= 2 * half);
        }
    }

    #[test]
    fn values_survive_a_move() {
        let mut r: Recent<Box<str>, u32> = Recent::new(1);
        *r.entry("a", |s: &str| Box::from(s), || 0) = 7;
        *r.entry("b", |s: &str| Box::from(s), || 0) = 8; // "a" moves to previous
        assert_eq!(*r.entry("a", |s: &str| Box::from(s), || 0), 7); // and back, with its value
        assert_eq!(r.get("b"), Some(&8));
    }
}
