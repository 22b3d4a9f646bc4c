//! A set of half-open time ranges `[start, end)` in ns, kept sorted and disjoint. Rollup
//! bookkeeping uses it for the buckets that late data made dirty.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RangeSet(Vec<(i64, i64)>);

impl RangeSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn ranges(&self) -> &[(i64, i64)] {
        &self.0
    }

    /// Adds `[start, end)`, merging with ranges it touches. An empty range is ignored.
    pub fn add(&mut self, start: i64, end: i64) {
        if start >= end {
            return;
        }
        let (mut s, mut e) = (start, end);
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < s || a > e {
                out.push((a, b));
            } else {
                s = s.min(a);
                e = e.max(b);
            }
        }
        out.push((s, e));
        out.sort_unstable();
        self.0 = out;
    }

    /// Removes `[start, end)` from the set.
    pub fn subtract(&mut self, start: i64, end: i64) {
        if start >= end {
            return;
        }
        let mut out = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b <= start || a >= end {
                out.push((a, b));
                continue;
            }
            if a < start {
                out.push((a, start));
            }
            if b > end {
                out.push((end, b));
            }
        }
        self.0 = out;
    }

    /// The parts of the set below `limit`.
    pub fn below(&self, limit: i64) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(a, _)| *a < limit)
                .map(|&(a, b)| (a, b.min(limit)))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_merges_and_subtract_splits() {
        let mut r = RangeSet::default();
        r.add(10, 20);
        r.add(30, 40);
        r.add(20, 25);
        assert_eq!(r.ranges(), &[(10, 25), (30, 40)]);
        r.add(5, 35);
        assert_eq!(r.ranges(), &[(5, 40)]);
        r.subtract(10, 20);
        assert_eq!(r.ranges(), &[(5, 10), (20, 40)]);
        r.subtract(0, 100);
        assert!(r.is_empty());
        r.add(3, 3);
        assert!(r.is_empty());
        r.add(0, 10);
        assert_eq!(r.below(4).ranges(), &[(0, 4)]);
    }
}
