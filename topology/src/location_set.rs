//! [`LocationSet`]: a fixed-size bitset over location indices. A service's set of locations and
//! a route's set of announcing locations are values of this type, so that a topology with 500
//! locations and 100,000 routes never materialises 50 million (route, location) objects.

use serde::{Deserialize, Serialize};

/// A set of location indices `0..capacity`, one bit each.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LocationSet {
    words: Vec<u64>,
}

impl LocationSet {
    /// Whether the set is made for indices `0..capacity` (as [`LocationSet::empty`] makes it).
    pub(crate) fn sized_for(&self, capacity: usize) -> bool {
        self.words.len() == capacity.div_ceil(64)
    }

    /// The empty set able to hold indices `0..capacity`.
    pub fn empty(capacity: usize) -> LocationSet {
        LocationSet {
            words: vec![0; capacity.div_ceil(64)],
        }
    }

    /// Every index in `0..capacity`.
    pub fn full(capacity: usize) -> LocationSet {
        let mut set = LocationSet::empty(capacity);
        for index in 0..capacity {
            set.insert(index);
        }
        set
    }

    pub fn insert(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word |= 1 << (index % 64);
        }
    }

    pub fn remove(&mut self, index: usize) {
        if let Some(word) = self.words.get_mut(index / 64) {
            *word &= !(1 << (index % 64));
        }
    }

    pub fn contains(&self, index: usize) -> bool {
        self.words
            .get(index / 64)
            .is_some_and(|word| word & (1 << (index % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.words
            .iter()
            .map(|word| word.count_ones() as usize)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|word| *word == 0)
    }

    fn zip(&self, other: &LocationSet, operation: impl Fn(u64, u64) -> u64) -> LocationSet {
        let length = self.words.len().max(other.words.len());
        LocationSet {
            words: (0..length)
                .map(|index| {
                    operation(
                        self.words.get(index).copied().unwrap_or(0),
                        other.words.get(index).copied().unwrap_or(0),
                    )
                })
                .collect(),
        }
    }

    pub fn union(&self, other: &LocationSet) -> LocationSet {
        self.zip(other, |left, right| left | right)
    }

    pub fn intersection(&self, other: &LocationSet) -> LocationSet {
        self.zip(other, |left, right| left & right)
    }

    /// Members of `self` that are not in `other`.
    pub fn difference(&self, other: &LocationSet) -> LocationSet {
        self.zip(other, |left, right| left & !right)
    }

    /// The size of the intersection, without building it.
    pub fn intersection_len(&self, other: &LocationSet) -> usize {
        self.words
            .iter()
            .zip(&other.words)
            .map(|(left, right)| (left & right).count_ones() as usize)
            .sum()
    }

    pub fn union_with(&mut self, other: &LocationSet) {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        for (word, other) in self.words.iter_mut().zip(&other.words) {
            *word |= other;
        }
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &LocationSet) -> bool {
        self.words
            .iter()
            .enumerate()
            .all(|(index, word)| word & !other.words.get(index).copied().unwrap_or(0) == 0)
    }

    /// Members in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(index, word)| {
            let mut remaining = *word;
            std::iter::from_fn(move || {
                if remaining == 0 {
                    return None;
                }
                let bit = remaining.trailing_zeros() as usize;
                remaining &= remaining - 1;
                Some(index * 64 + bit)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut left = LocationSet::empty(130);
        let mut right = LocationSet::empty(130);
        for index in [0, 5, 64, 129] {
            left.insert(index);
        }
        for index in [5, 64, 100] {
            right.insert(index);
        }
        assert_eq!(left.len(), 4);
        assert_eq!(
            left.intersection(&right).iter().collect::<Vec<_>>(),
            [5, 64]
        );
        assert_eq!(left.difference(&right).iter().collect::<Vec<_>>(), [0, 129]);
        assert_eq!(left.intersection_len(&right), 2);
        assert!(!left.is_subset(&right));
        assert!(left.intersection(&right).is_subset(&right));
        left.remove(129);
        assert!(!left.contains(129));
        assert_eq!(LocationSet::full(70).len(), 70);
    }
}
