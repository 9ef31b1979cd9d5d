//! Remembers the sids this process saw issued, with bounded memory (oldest evicted).
//!
//! Feeds the `sid_not_issued_here` flag: a request carrying a sid that this sidecar never
//! saw in an open packet points at another pod (or at a restart).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// A bounded set of issued sids.
pub(crate) struct SidRegistry {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    set: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

impl SidRegistry {
    /// A registry that remembers at most `capacity` sids.
    pub(crate) fn new(capacity: usize) -> Self {
        SidRegistry {
            inner: Mutex::new(Inner {
                set: HashSet::new(),
                order: VecDeque::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    /// Remembers `sid` as issued here, evicting the oldest when full.
    pub(crate) fn insert(&self, sid: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.set.contains(sid) {
            return;
        }
        if inner.order.len() >= self.capacity
            && let Some(old) = inner.order.pop_front()
        {
            inner.set.remove(&old);
        }
        let sid: Box<str> = sid.into();
        inner.set.insert(sid.clone());
        inner.order.push_back(sid);
    }

    /// True when `sid` was issued here (and not yet evicted).
    pub(crate) fn contains(&self, sid: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.set.contains(sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_and_evicts_oldest() {
        let r = SidRegistry::new(2);
        r.insert("a");
        r.insert("b");
        r.insert("a");
        assert!(r.contains("a") && r.contains("b"));
        r.insert("c");
        assert!(!r.contains("a"), "oldest evicted");
        assert!(r.contains("b") && r.contains("c"));
        assert!(!r.contains("zzz"));
    }
}
