//! Bounded time series for the console's charts. Each node samples every
//! [`SAMPLE_SECS`] seconds and keeps the last [`POINTS`] points of each
//! series (one hour) in a ring buffer; at most [`MAX_SERIES`] series are
//! kept (the least recently updated one goes first). Longer history is
//! Prometheus's job (`/metrics`).

use std::collections::{HashMap, VecDeque};

/// Seconds between samples.
pub const SAMPLE_SECS: u64 = 10;
/// Points kept per series: one hour at [`SAMPLE_SECS`].
pub const POINTS: usize = 360;
/// Series kept per node.
pub const MAX_SERIES: usize = 4096;

/// One point: Unix milliseconds and a value.
pub type Point = (u64, f64);

/// A ring buffer of the last `cap` points.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    cap: usize,
    items: VecDeque<T>,
}

impl<T> Ring<T> {
    pub fn new(cap: usize) -> Ring<T> {
        Ring {
            cap: cap.max(1),
            items: VecDeque::new(),
        }
    }

    /// Appends, dropping the oldest item when full.
    pub fn push(&mut self, item: T) {
        if self.items.len() == self.cap {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn first(&self) -> Option<&T> {
        self.items.front()
    }

    pub fn last(&self) -> Option<&T> {
        self.items.back()
    }
}

/// Named series of points, bounded in number and length.
#[derive(Debug)]
pub struct SeriesStore {
    max_series: usize,
    points: usize,
    series: HashMap<String, Ring<Point>>,
}

impl Default for SeriesStore {
    fn default() -> Self {
        SeriesStore::new(MAX_SERIES, POINTS)
    }
}

impl SeriesStore {
    pub fn new(max_series: usize, points: usize) -> SeriesStore {
        SeriesStore {
            max_series: max_series.max(1),
            points,
            series: HashMap::new(),
        }
    }

    /// Appends a point to series `key`, making room if needed.
    pub fn push(&mut self, key: &str, point: Point) {
        if let Some(r) = self.series.get_mut(key) {
            r.push(point);
            return;
        }
        if self.series.len() >= self.max_series {
            // Evict the series updated least recently.
            let stale = self
                .series
                .iter()
                .min_by_key(|(_, r)| r.last().map_or(0, |p| p.0))
                .map(|(k, _)| k.clone());
            if let Some(k) = stale {
                self.series.remove(&k);
            }
        }
        let mut r = Ring::new(self.points);
        r.push(point);
        self.series.insert(key.to_owned(), r);
    }

    /// The points of series `key`, oldest first.
    pub fn points(&self, key: &str) -> Vec<Point> {
        self.series
            .get(key)
            .map(|r| r.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Drops the series whose last point is older than `before` (ms).
    pub fn forget_older_than(&mut self, before: u64) {
        self.series
            .retain(|_, r| r.last().is_some_and(|p| p.0 >= before));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_keeps_the_last_points_only() {
        let mut r = Ring::new(3);
        for i in 0..5 {
            r.push(i);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(r.first(), Some(&2));
    }

    #[test]
    fn the_store_is_bounded_in_series_and_points() {
        let mut s = SeriesStore::new(2, 2);
        s.push("a", (1, 1.0));
        s.push("b", (2, 1.0));
        s.push("a", (3, 2.0));
        s.push("a", (4, 3.0));
        assert_eq!(s.points("a"), vec![(3, 2.0), (4, 3.0)]);
        // "b" was updated least recently: it goes.
        s.push("c", (5, 1.0));
        assert_eq!(s.len(), 2);
        assert!(s.points("b").is_empty());
        s.forget_older_than(5);
        assert_eq!(s.len(), 1);
    }
}
