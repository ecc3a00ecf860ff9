//! The in-memory series index: ids to label sets, and postings from (label, value) to ids.
//! Rebuilt from the `series` table at start; never touches SQLite itself.

use std::collections::HashMap;

// FxHash: label sets are hashed once per series per batch on the ingest path, where SipHash's
// DoS resistance costs a third of the time; series labels come from authenticated agents. hashbrown
// for `Equivalent`: a borrowed `LabelView` finds its `LabelSet` without building one.
use rustc_hash::FxBuildHasher;

use crate::model::{LabelSet, LabelView, MatchOp, Matcher};

/// Dense series ids, assigned by the store from 1.
pub type SeriesId = u32;

#[derive(Default)]
pub struct SeriesIndex {
    by_labels: hashbrown::HashMap<LabelSet, SeriesId, FxBuildHasher>,
    /// `labels[id]`; slot 0 is unused so that ids can start at 1.
    labels: Vec<Option<LabelSet>>,
    postings: HashMap<String, HashMap<String, Vec<SeriesId>>>,
}

impl SeriesIndex {
    pub fn get_view(&self, labels: &LabelView<'_>) -> Option<SeriesId> {
        self.by_labels.get(labels).copied()
    }

    pub fn labels(&self, id: SeriesId) -> Option<&LabelSet> {
        self.labels.get(id as usize).and_then(|l| l.as_ref())
    }

    pub fn len(&self) -> usize {
        self.by_labels.len()
    }

    pub fn next_id(&self) -> SeriesId {
        self.labels.len().max(1) as SeriesId
    }

    pub fn insert(&mut self, id: SeriesId, labels: LabelSet) {
        let slot = id as usize;
        if self.labels.len() <= slot {
            self.labels.resize(slot + 1, None);
        }
        for (k, v) in labels.iter() {
            let ids = self.postings.entry(k.to_string()).or_default().entry(v.to_string()).or_default();
            // Ids arrive in increasing order, so each postings list stays sorted.
            ids.push(id);
        }
        self.by_labels.insert(labels.clone(), id);
        self.labels[slot] = Some(labels);
    }

    /// Ids of the series that pass every matcher, in increasing order.
    ///
    /// Starts from the smallest postings list among the equality matchers with a non-empty value
    /// (usually `__name__`), then checks the other matchers on each candidate's labels.
    pub fn select(&self, matchers: &[Matcher]) -> Vec<SeriesId> {
        let seed = matchers
            .iter()
            .filter(|m| matches!(m.op, MatchOp::Equal) && !m.value.is_empty())
            .map(|m| self.postings.get(&m.name).and_then(|vals| vals.get(&m.value)).map_or(&[][..], |v| &v[..]))
            .min_by_key(|ids| ids.len());
        let keep = |id: &SeriesId| self.labels(*id).is_some_and(|l| matchers.iter().all(|m| m.matches_labels(l)));
        match seed {
            Some(ids) => ids.iter().copied().filter(|id| keep(id)).collect(),
            None => (1..self.labels.len() as SeriesId).filter(|id| keep(id)).collect(),
        }
    }

    /// All label names in use, sorted.
    pub fn label_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.postings.keys().cloned().collect();
        names.sort();
        names
    }

    /// All values of one label, sorted.
    pub fn label_values(&self, name: &str) -> Vec<String> {
        let mut vals: Vec<String> = self.postings.get(name).map(|m| m.keys().cloned().collect()).unwrap_or_default();
        vals.sort();
        vals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ls(pairs: &[(&str, &str)]) -> LabelSet {
        LabelSet::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn select_uses_all_matchers_and_absent_labels_compare_as_empty() {
        let mut idx = SeriesIndex::default();
        idx.insert(1, ls(&[("__name__", "up"), ("job", "a")]));
        idx.insert(2, ls(&[("__name__", "up"), ("job", "b")]));
        idx.insert(3, ls(&[("__name__", "up")]));
        idx.insert(4, ls(&[("__name__", "down"), ("job", "a")]));
        let m = |n: &str, op: &str, v: &str| Matcher::new(n, op, v).expect("valid test matcher");
        assert_eq!(idx.select(&[m("__name__", "=", "up")]), vec![1, 2, 3]);
        assert_eq!(idx.select(&[m("__name__", "=", "up"), m("job", "!=", "a")]), vec![2, 3]);
        assert_eq!(idx.select(&[m("__name__", "=", "up"), m("job", "=", "")]), vec![3]);
        assert_eq!(idx.select(&[m("job", "=~", "a|b")]), vec![1, 2, 4]);
        assert_eq!(idx.label_values("job"), vec!["a", "b"]);
    }
}
