//! Sets of item numbers as sorted, merged half-open intervals.

use serde::{Deserialize, Serialize};

/// A set of `u64` as disjoint, sorted, non-adjacent `[start, end)` intervals.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeSet(Vec<(u64, u64)>);

impl RangeSet {
    pub fn new() -> Self {
        RangeSet(Vec::new())
    }

    /// The set `[start, end)`.
    pub fn interval(start: u64, end: u64) -> Self {
        let mut s = RangeSet::new();
        s.insert(start, end);
        s
    }

    pub fn intervals(&self) -> &[(u64, u64)] {
        &self.0
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether every element of `[start, end)` is in the set.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        start >= end || self.0.iter().any(|&(s, e)| s <= start && end <= e)
    }

    /// Whether any element of `[start, end)` is in the set.
    pub fn intersects(&self, start: u64, end: u64) -> bool {
        self.0.iter().any(|&(s, e)| s < end && start < e)
    }

    /// Adds `[start, end)`, merging neighbours.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        let mut placed = false;
        for &(a, b) in &self.0 {
            if b < s {
                out.push((a, b));
            } else if e < a {
                if !placed {
                    out.push((s, e));
                    placed = true;
                }
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        if !placed {
            out.push((s, e));
        }
        self.0 = out;
    }

    /// Removes `[start, end)`, which must be wholly inside the set; returns false (and changes
    /// nothing) otherwise.
    pub fn remove(&mut self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        let Some(i) = self.0.iter().position(|&(s, e)| s <= start && end <= e) else {
            return false;
        };
        let (s, e) = self.0[i];
        let mut repl = Vec::with_capacity(2);
        if s < start {
            repl.push((s, start));
        }
        if end < e {
            repl.push((end, e));
        }
        self.0.splice(i..=i, repl);
        true
    }

    /// Removes and returns up to `n` elements from the front, as intervals.
    pub fn take_front(&mut self, mut n: u64) -> Vec<(u64, u64)> {
        let mut taken = Vec::new();
        while n > 0 {
            let Some(&(s, e)) = self.0.first() else { break };
            let k = (e - s).min(n);
            taken.push((s, s + k));
            n -= k;
            if s + k == e {
                self.0.remove(0);
            } else {
                self.0[0].0 = s + k;
            }
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    proptest! {
        #[test]
        fn behaves_like_a_set_of_integers(ops in proptest::collection::vec((0u8..3, 0u64..64, 0u64..16), 0..60)) {
            let mut s = RangeSet::new();
            let mut model = BTreeSet::new();
            for (op, start, len) in ops {
                let end = start + len;
                match op {
                    0 => { s.insert(start, end); model.extend(start..end); }
                    1 => {
                        let inside = (start..end).all(|x| model.contains(&x)) && (len == 0 || s.contains(start, end));
                        prop_assert_eq!(s.remove(start, end), inside || len == 0);
                        if inside { for x in start..end { model.remove(&x); } }
                    }
                    _ => {
                        let got: Vec<u64> = s.take_front(len).into_iter().flat_map(|(a, b)| a..b).collect();
                        let want: Vec<u64> = model.iter().copied().take(len as usize).collect();
                        for x in &want { model.remove(x); }
                        prop_assert_eq!(got, want);
                    }
                }
                let flat: Vec<u64> = s.intervals().iter().flat_map(|&(a, b)| a..b).collect();
                prop_assert_eq!(flat, model.iter().copied().collect::<Vec<_>>());
                prop_assert!(s.intervals().windows(2).all(|w| w[0].1 < w[1].0), "merged");
            }
        }
    }
}
