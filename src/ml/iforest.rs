//! Isolation Forest (Liu, Ting & Zhou, "Isolation Forest", ICDM 2008), implemented as the
//! paper describes it: 100 trees, each grown on a subsample of ψ = 256 points drawn without
//! replacement, to a height limit of ceil(log2 ψ) = 8; a point's score is
//! `2^(−E[h(x)] / c(ψ))`, where `h(x)` is the path length to the external node that `x` falls
//! in, plus `c(size)` when that node still holds more than one training point (the subtree
//! the height limit cut off).
//!
//! Anomalies are few and different, so random axis-parallel splits isolate them in fewer
//! steps: a score near 1 is an anomaly, well below 0.5 is normal, and about 0.5 everywhere
//! means the sample has no distinct anomalies.
//!
//! Deterministic: every tree draws from a generator seeded from the forest's seed and its
//! index, so the same data and seed always give the same forest.

/// Trees in the forest, as in the paper.
pub const TREES: usize = 100;
/// Points each tree is grown on (ψ), as in the paper.
pub const SUBSAMPLE: usize = 256;
/// Euler–Mascheroni constant, for the harmonic number approximation H(i) ≈ ln(i) + γ.
const EULER_GAMMA: f64 = 0.577_215_664_9;

/// Marks a node as external: its `child` field then holds how many training points reached it.
const EXTERNAL: u32 = u32::MAX;

/// The average path length of an unsuccessful search in a binary search tree of `n` points,
/// `c(n) = 2H(n−1) − 2(n−1)/n`: the expected depth of a point in a random tree of `n` points,
/// used both to normalise scores (`c(ψ)`) and to stand in for the subtree under an external
/// node that the height limit cut off. `c(2) = 1` exactly (the approximation of H(1) would give
/// 0.15) and `c(n) = 0` for n ≤ 1: there is nothing left to isolate.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// One node of a tree, 16 bytes. Internal nodes send `x[feature] < split` to `child` and the
/// rest to `child + 1`; external nodes have `feature == EXTERNAL` and `child` = their size.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    split: f64,
    feature: u32,
    child: u32,
}

/// A trained forest. All trees' nodes live in one vector (`roots` gives where each starts), so
/// scoring walks contiguous memory.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    dims: usize,
    height_limit: usize,
    /// `c(ψ)`, the normaliser of path lengths.
    normaliser: f64,
}

impl IsolationForest {
    /// Grows the forest on `samples` (rows of equal length). With fewer than 256 rows, each
    /// tree takes all of them (ψ = n) and the height limit becomes ceil(log2 n), as the paper
    /// prescribes.
    ///
    /// # Panics
    /// If `samples` is empty or its rows differ in length.
    pub fn fit<R: AsRef<[f64]>>(samples: &[R], seed: u64) -> IsolationForest {
        assert!(!samples.is_empty(), "an isolation forest needs data");
        let dims = samples[0].as_ref().len();
        assert!(
            samples.iter().all(|r| r.as_ref().len() == dims),
            "every sample must have {dims} features"
        );
        let psi = samples.len().min(SUBSAMPLE);
        let height_limit = (psi as f64).log2().ceil() as usize;
        let mut forest = IsolationForest {
            nodes: Vec::new(),
            roots: Vec::with_capacity(TREES),
            dims,
            height_limit,
            normaliser: average_path_length(psi),
        };
        let mut indices: Vec<usize> = (0..samples.len()).collect();
        let mut grower = Grower {
            samples,
            nodes: &mut forest.nodes,
            bounds: vec![(0.0, 0.0); dims],
            candidates: Vec::with_capacity(dims),
        };
        for tree in 0..TREES {
            let mut rng =
                fastrand::Rng::with_seed(seed ^ (tree as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // A partial Fisher–Yates shuffle: the first ψ indices become a uniform sample
            // without replacement.
            for i in 0..psi {
                let j = rng.usize(i..indices.len());
                indices.swap(i, j);
            }
            forest.roots.push(grower.nodes.len() as u32);
            grower.nodes.push(Node {
                split: 0.0,
                feature: EXTERNAL,
                child: 0,
            });
            let root = grower.nodes.len() - 1;
            grower.grow(root, &mut indices[..psi], 0, height_limit, &mut rng);
        }
        forest.nodes.shrink_to_fit();
        forest
    }

    /// The anomaly score of `point`, `2^(−E[h(x)] / c(ψ))`, in (0, 1].
    ///
    /// # Panics
    /// If `point` does not have as many features as the training data.
    pub fn score(&self, point: &[f64]) -> f64 {
        if self.normaliser == 0.0 {
            // Trained on a single point: nothing can be told apart.
            return 0.5;
        }
        2f64.powf(-self.mean_path_length(point) / self.normaliser)
    }

    /// E[h(x)]: the mean over trees of the depth at which `point` reaches an external node,
    /// plus c(size) for the points that node still holds.
    pub fn mean_path_length(&self, point: &[f64]) -> f64 {
        assert_eq!(
            point.len(),
            self.dims,
            "point has the wrong number of features"
        );
        let total: f64 = self
            .roots
            .iter()
            .map(|&root| {
                let mut at = root as usize;
                let mut depth = 0.0;
                loop {
                    let node = self.nodes[at];
                    if node.feature == EXTERNAL {
                        return depth + average_path_length(node.child as usize);
                    }
                    at = if point[node.feature as usize] < node.split {
                        node.child as usize
                    } else {
                        node.child as usize + 1
                    };
                    depth += 1.0;
                }
            })
            .sum();
        total / self.roots.len() as f64
    }

    /// How many features each point has.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The height limit the trees were grown to, ceil(log2 ψ).
    pub fn height_limit(&self) -> usize {
        self.height_limit
    }

    /// Bytes of memory the forest holds (its node and root vectors).
    pub fn heap_bytes(&self) -> usize {
        self.nodes.capacity() * std::mem::size_of::<Node>()
            + self.roots.capacity() * std::mem::size_of::<u32>()
    }

    /// The depth of the deepest node in any tree (the root is depth 0).
    #[cfg(test)]
    fn max_depth(&self) -> usize {
        fn depth(nodes: &[Node], at: usize) -> usize {
            let node = nodes[at];
            if node.feature == EXTERNAL {
                0
            } else {
                let c = node.child as usize;
                1 + depth(nodes, c).max(depth(nodes, c + 1))
            }
        }
        self.roots
            .iter()
            .map(|&r| depth(&self.nodes, r as usize))
            .max()
            .unwrap_or(0)
    }
}

/// The scratch state of growing trees.
struct Grower<'a, R> {
    samples: &'a [R],
    nodes: &'a mut Vec<Node>,
    /// Per feature, the (min, max) of the points at the current node.
    bounds: Vec<(f64, f64)>,
    /// Features that vary at the current node.
    candidates: Vec<usize>,
}

impl<R: AsRef<[f64]>> Grower<'_, R> {
    /// Turns node `at` (already pushed as external) into the root of an iTree over `points`.
    fn grow(
        &mut self,
        at: usize,
        points: &mut [usize],
        depth: usize,
        height_limit: usize,
        rng: &mut fastrand::Rng,
    ) {
        self.nodes[at].child = points.len() as u32;
        if depth >= height_limit || points.len() <= 1 {
            return;
        }
        // The paper picks a feature at random and a split uniformly between its minimum and
        // maximum at the node. A feature that is constant here cannot split anything, so the
        // pick is among the features that vary (as scikit-learn does); when none vary the
        // points are identical and the node stays external.
        for b in self.bounds.iter_mut() {
            *b = (f64::INFINITY, f64::NEG_INFINITY);
        }
        for &p in points.iter() {
            for (b, &x) in self.bounds.iter_mut().zip(self.samples[p].as_ref()) {
                b.0 = b.0.min(x);
                b.1 = b.1.max(x);
            }
        }
        self.candidates.clear();
        self.candidates
            .extend((0..self.bounds.len()).filter(|&f| self.bounds[f].0 < self.bounds[f].1));
        if self.candidates.is_empty() {
            return;
        }
        let feature = self.candidates[rng.usize(..self.candidates.len())];
        let (lo, hi) = self.bounds[feature];
        // Uniform in [lo, hi); `max` keeps the split above `lo` so that the left side is never
        // empty, and `x < split` then puts at least the minimum left and the maximum right.
        let split = (lo + rng.f64() * (hi - lo)).max(next_up(lo)).min(hi);
        let mut left = 0;
        for i in 0..points.len() {
            if self.samples[points[i]].as_ref()[feature] < split {
                points.swap(i, left);
                left += 1;
            }
        }
        let child = self.nodes.len();
        let external = Node {
            split: 0.0,
            feature: EXTERNAL,
            child: 0,
        };
        self.nodes.push(external);
        self.nodes.push(external);
        self.nodes[at] = Node {
            split,
            feature: feature as u32,
            child: child as u32,
        };
        let (l, r) = points.split_at_mut(left);
        self.grow(child, l, depth + 1, height_limit, rng);
        self.grow(child + 1, r, depth + 1, height_limit, rng);
    }
}

/// The smallest f64 above `x` (for finite `x`).
fn next_up(x: f64) -> f64 {
    if x == 0.0 {
        f64::from_bits(1)
    } else if x > 0.0 {
        f64::from_bits(x.to_bits() + 1)
    } else {
        f64::from_bits(x.to_bits() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 points from a 2-D standard normal (Box–Muller), seeded.
    fn gaussian_cloud(n: usize, seed: u64) -> Vec<Vec<f64>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|_| {
                let (u, v) = (1.0 - rng.f64(), rng.f64());
                let r = (-2.0 * u.ln()).sqrt();
                let theta = 2.0 * std::f64::consts::PI * v;
                vec![r * theta.cos(), r * theta.sin()]
            })
            .collect()
    }

    #[test]
    fn average_path_length_matches_the_paper() {
        // 2 (ln 255 + γ) − 2 · 255/256
        let expected = 2.0 * (255f64.ln() + 0.577_215_664_9) - 2.0 * 255.0 / 256.0;
        assert!((average_path_length(256) - expected).abs() < 1e-12);
        assert!((average_path_length(256) - 10.244_770).abs() < 1e-5);
        assert_eq!(average_path_length(2), 1.0);
        assert_eq!(average_path_length(1), 0.0);
    }

    #[test]
    fn outliers_score_high_and_inliers_low() {
        let data = gaussian_cloud(1000, 7);
        let forest = IsolationForest::fit(&data, 42);
        for outlier in [[6.0, 6.0], [-7.0, 0.5], [0.0, 8.0]] {
            let s = forest.score(&outlier);
            assert!(s > 0.6, "outlier {outlier:?} scored {s}");
        }
        for inlier in [[0.0, 0.0], [0.3, -0.2], [-0.5, 0.4]] {
            let s = forest.score(&inlier);
            assert!(s < 0.5, "inlier {inlier:?} scored {s}");
        }
    }

    #[test]
    fn same_seed_same_forest_other_seed_other_forest() {
        let data = gaussian_cloud(600, 3);
        let a = IsolationForest::fit(&data, 9);
        let b = IsolationForest::fit(&data, 9);
        let c = IsolationForest::fit(&data, 10);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.score(&[2.5, -1.0]), b.score(&[2.5, -1.0]));
    }

    #[test]
    fn trees_stop_at_the_height_limit_with_the_paper_parameters() {
        let forest = IsolationForest::fit(&gaussian_cloud(5000, 11), 1);
        assert_eq!(forest.height_limit(), 8);
        assert_eq!(forest.roots.len(), TREES);
        assert_eq!(forest.max_depth(), 8);
        // Every tree holds exactly ψ = 256 training points in its external nodes.
        let mut sizes = 0;
        for node in &forest.nodes {
            if node.feature == EXTERNAL {
                sizes += node.child as usize;
            }
        }
        assert_eq!(sizes, TREES * SUBSAMPLE);
        // A point deep inside the cloud reaches the limit and gets c(size) added, so its path
        // is longer than the limit alone.
        assert!(forest.mean_path_length(&[0.0, 0.0]) > 8.0);
    }

    #[test]
    fn small_samples_use_all_points_and_a_lower_limit() {
        let forest = IsolationForest::fit(&gaussian_cloud(100, 5), 1);
        assert_eq!(forest.height_limit(), 7);
        assert!((forest.normaliser - average_path_length(100)).abs() < 1e-12);
    }

    #[test]
    fn identical_points_are_not_split() {
        let forest = IsolationForest::fit(&vec![vec![1.0, 2.0]; 50], 1);
        assert_eq!(forest.nodes.len(), TREES);
        // Each tree is one external node of 50 points: h = c(50), score exactly 0.5.
        assert!((forest.score(&[1.0, 2.0]) - 0.5).abs() < 1e-12);
    }
}
