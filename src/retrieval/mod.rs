//! Exact top-K retrieval over a map's descriptors: L1 (default; with the per-layer scaling of
//! `encode` it equals the reference's distance), L2 or cosine. Rows are scanned in parallel
//! chunks, each keeping its own top-K, so a query allocates only O(threads x K). Candidates can
//! be restricted to one camera (the reference searches c0 and c1 separately) and to a radius
//! around a prior position (a k-d tree over the map's camera centres).

pub mod compress;

use rayon::prelude::*;

use crate::map::file::{Descriptors, MapFile};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    L1,
    L2,
    Cosine,
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "l1" | "L1" => Ok(Self::L1),
            "l2" | "L2" => Ok(Self::L2),
            "cosine" => Ok(Self::Cosine),
            other => Err(format!("expected l1, l2 or cosine, found `{other}`")),
        }
    }
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::L1 => "l1",
            Self::L2 => "l2",
            Self::Cosine => "cosine",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub index: usize,
    pub distance: f32,
}

const LANES: usize = 16;

/// The kernels are written once, inlined into a baseline (SSE2) and an AVX2 copy; the AVX2 one
/// is chosen at run time when the CPU has it. Same lanes, same order of additions: the same
/// results on either path.
macro_rules! dispatch {
    ($name:ident, $kernel:ident, $avx2:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx2")]
        unsafe fn $avx2(a: &[f32], b: &[f32]) -> f32 {
            $kernel(a, b)
        }

        fn $name(a: &[f32], b: &[f32]) -> f32 {
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU has AVX2 (checked just above).
                return unsafe { $avx2(a, b) };
            }
            $kernel(a, b)
        }
    };
}

dispatch!(l1, l1_kernel, l1_avx2);
dispatch!(l2, l2_kernel, l2_avx2);
dispatch!(cosine, cosine_kernel, cosine_avx2);
dispatch!(dot, dot_kernel, dot_avx2);

#[inline(always)]
fn l1_kernel(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += (x[i] - y[i]).abs();
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y).abs()).sum();
    acc.iter().sum::<f32>() + tail
}

#[inline(always)]
fn l2_kernel(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| (x - y) * (x - y)).sum();
    (acc.iter().sum::<f32>() + tail).sqrt()
}

/// The dot product in 16 lanes, then the lanes' sum, then the tail: a cosine's three sums are
/// each this (`cosine_kernel`), so a row's squared norm computed once (`SquaredNorms`) is the
/// same number the fused sum gave.
#[inline(always)]
fn dot_kernel(a: &[f32], b: &[f32]) -> f32 {
    let mut ab = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            ab[i] += x[i] * y[i];
        }
    }
    let mut s = ab.iter().sum::<f32>();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// 1 - cos from the dot product and the squared norms of the query and the row.
#[inline(always)]
fn cosine_of(ab: f32, aa: f32, bb: f32) -> f32 {
    1.0 - ab / (aa.sqrt() * bb.sqrt()).max(1e-20)
}

#[inline(always)]
fn cosine_kernel(a: &[f32], b: &[f32]) -> f32 {
    cosine_of(dot_kernel(a, b), dot_kernel(a, a), dot_kernel(b, b))
}

/// Distance between two descriptors under `metric`.
pub fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L1 => l1(a, b),
        Metric::L2 => l2(a, b),
        Metric::Cosine => cosine(a, b),
    }
}

/// Keeps the K smallest (distance, index) pairs, ties by index.
pub(crate) fn push_top(top: &mut Vec<Hit>, k: usize, hit: Hit) {
    if top.len() == k
        && top
            .last()
            .is_some_and(|w| (hit.distance, hit.index) >= (w.distance, w.index))
    {
        return;
    }
    let pos = top
        .binary_search_by(|h| {
            (h.distance, h.index)
                .partial_cmp(&(hit.distance, hit.index))
                .unwrap_or(std::cmp::Ordering::Less)
        })
        .unwrap_or_else(|p| p);
    top.insert(pos, hit);
    top.truncate(k);
}

pub(crate) fn merge(mut a: Vec<Hit>, b: Vec<Hit>, k: usize) -> Vec<Hit> {
    for h in b {
        push_top(&mut a, k, h);
    }
    a
}

/// Distance from `query` to row `i` of `descs` (`buf`: scratch for a float16 row); NaN counts
/// as infinitely far.
pub(crate) fn row_distance(
    descs: &Descriptors,
    dim: usize,
    metric: Metric,
    query: &[f32],
    i: usize,
    buf: &mut Vec<f32>,
) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let (Metric::L1, Descriptors::F16(v), true) = (metric, descs, *HAS_F16C) {
        // SAFETY: the CPU has AVX2 and F16C (checked once, HAS_F16C).
        return nan_far(unsafe { l1_f16_avx2(query, &v[i * dim..(i + 1) * dim]) });
    }
    // A float16 row converted exactly (8 wide with F16C), then the f32 kernel: the same
    // distances as the fused L1 kernel above.
    nan_far(distance(metric, query, row_f32(descs, dim, i, buf)))
}

/// A map's searchable rows: each entry's descriptor and, when the map has yaw views
/// (`build-map --yaw-views`), `per_entry` view rows per entry (entry-major).
pub struct EntryRows<'a> {
    pub base: Descriptors<'a>,
    pub views: Option<Descriptors<'a>>,
    pub per_entry: usize,
}

impl<'a> EntryRows<'a> {
    pub fn of(map: &'a MapFile) -> Self {
        Self {
            base: map.descriptors(),
            views: map.view_descriptors(),
            per_entry: map.views(),
        }
    }

    /// Rows without views.
    pub fn plain(base: Descriptors<'a>) -> Self {
        Self {
            base,
            views: None,
            per_entry: 0,
        }
    }
}

/// The squared norm of every row of a map (and of its yaw views), computed once per opened
/// map (`MapFile::squared_norms`) so that a cosine search reads each row once, as L1 does,
/// instead of summing the row's squares again for every query. The same sums as the fused
/// kernel: distances bit-identical to [`distance`]'s.
#[derive(Debug, Clone, PartialEq)]
pub struct SquaredNorms {
    pub base: Vec<f32>,
    pub views: Vec<f32>,
}

impl SquaredNorms {
    pub fn of(rows: &EntryRows, dim: usize) -> Self {
        let of = |descs: &Descriptors| -> Vec<f32> {
            let n = match descs {
                Descriptors::F32(v) => v.len(),
                Descriptors::F16(v) => v.len(),
            } / dim.max(1);
            (0..n)
                .into_par_iter()
                .map_init(Vec::new, |buf, i| {
                    let row = row_f32(descs, dim, i, buf);
                    dot(row, row)
                })
                .collect()
        };
        Self {
            base: of(&rows.base),
            views: rows.views.as_ref().map(of).unwrap_or_default(),
        }
    }
}

/// Row `i` as f32 (a float16 row converted exactly into `buf`).
pub(crate) fn row_f32<'b>(
    descs: &'b Descriptors,
    dim: usize,
    i: usize,
    buf: &'b mut Vec<f32>,
) -> &'b [f32] {
    match descs {
        Descriptors::F32(v) => &v[i * dim..(i + 1) * dim],
        Descriptors::F16(v) => {
            use half::slice::HalfFloatSliceExt;
            buf.resize(dim, 0.0);
            v[i * dim..(i + 1) * dim].convert_to_f32_slice(buf);
            buf
        }
    }
}

/// As [`entry_distance`] under the cosine metric, with the rows' squared norms given and the
/// query's (`query_sq`): one pass over each row.
fn entry_cosine(
    rows: &EntryRows,
    norms: &SquaredNorms,
    dim: usize,
    query: &[f32],
    query_sq: f32,
    i: usize,
    buf: &mut Vec<f32>,
) -> f32 {
    let mut d = nan_far(cosine_of(
        row_dot(&rows.base, dim, query, i, buf),
        query_sq,
        norms.base[i],
    ));
    if let Some(views) = &rows.views {
        for v in i * rows.per_entry..(i + 1) * rows.per_entry {
            d = d.min(nan_far(cosine_of(
                row_dot(views, dim, query, v, buf),
                query_sq,
                norms.views[v],
            )));
        }
    }
    d
}

/// The dot product of `query` and row `i`: a float16 row converted in registers when the CPU
/// can (bit-identical to converting first: [`dot_f16_avx2`]).
fn row_dot(descs: &Descriptors, dim: usize, query: &[f32], i: usize, buf: &mut Vec<f32>) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if let (Descriptors::F16(v), true) = (descs, *HAS_F16C) {
        // SAFETY: the CPU has AVX2 and F16C (checked once, HAS_F16C).
        return unsafe { dot_f16_avx2(query, &v[i * dim..(i + 1) * dim]) };
    }
    dot(query, row_f32(descs, dim, i, buf))
}

/// The dot product of an f32 query and a float16 row, converting in registers (a cosine scan
/// of an `--f16` map then reads half the bytes). The same 16 lanes and order of additions as
/// `dot_kernel` on the converted row (a product, then a sum: no fused multiply-add), and the
/// conversion is exact: bit-identical results.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn dot_f16_avx2(a: &[f32], b: &[half::f16]) -> f32 {
    // SAFETY: the caller's CPU has AVX2 and F16C, as this function's.
    let (acc, n) = unsafe { f16_lanes::<true>(a, b) };
    let mut s = acc.iter().sum::<f32>();
    for (x, y) in a[n..].iter().zip(&b[n..]) {
        s += x * y.to_f32();
    }
    s
}

/// The distance from `query` to entry `i`: the smallest over its descriptor and its views.
pub(crate) fn entry_distance(
    rows: &EntryRows,
    dim: usize,
    metric: Metric,
    query: &[f32],
    i: usize,
    buf: &mut Vec<f32>,
) -> f32 {
    let mut d = row_distance(&rows.base, dim, metric, query, i, buf);
    if let Some(views) = &rows.views {
        for v in i * rows.per_entry..(i + 1) * rows.per_entry {
            d = d.min(row_distance(views, dim, metric, query, v, buf));
        }
    }
    d
}

/// Which of entry `i`'s yaw views lies nearest `query`, when one is nearer than the entry's own
/// descriptor (the image as it was taken): its index among the map's views (the map's
/// `yaw_views_deg` order), else None (a map without views, or the image itself nearest; a tie
/// goes to the image). The views are the image's camera turned by those angles
/// (docs/map-format.md), so the nearest one says how far the query's camera is turned from it.
pub fn nearest_view(map: &MapFile, metric: Metric, query: &[f32], i: usize) -> Option<usize> {
    let rows = EntryRows::of(map);
    let views = rows.views.as_ref()?;
    if i >= map.len() || query.len() != map.dim() {
        return None;
    }
    let (dim, mut buf) = (map.dim(), Vec::new());
    let mut best = row_distance(&rows.base, dim, metric, query, i, &mut buf);
    let mut which = None;
    for (k, v) in (i * rows.per_entry..(i + 1) * rows.per_entry).enumerate() {
        let d = row_distance(views, dim, metric, query, v, &mut buf);
        if d < best {
            (best, which) = (d, Some(k));
        }
    }
    which
}

fn nan_far(d: f32) -> f32 {
    if d.is_nan() {
        f32::INFINITY
    } else {
        d
    }
}

#[cfg(target_arch = "x86_64")]
static HAS_F16C: std::sync::LazyLock<bool> = std::sync::LazyLock::new(|| {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("f16c")
});

/// L1 between an f32 query and a float16 row, converting in registers (the scan of an `--f16`
/// map reads half the bytes). The same 16 lanes and order of additions as `l1_kernel` on the
/// converted row, and the conversion is exact: bit-identical distances.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn l1_f16_avx2(a: &[f32], b: &[half::f16]) -> f32 {
    // SAFETY: the caller's CPU has AVX2 and F16C, as this function's.
    let (acc, n) = unsafe { f16_lanes::<false>(a, b) };
    let tail: f32 = a[n..]
        .iter()
        .zip(&b[n..])
        .map(|(x, y)| (x - y.to_f32()).abs())
        .sum();
    acc.iter().sum::<f32>() + tail
}

/// The 16 lanes of an f32 query against a float16 row, converted in registers, summed over the
/// whole chunks: |q - h| (`DOT` false: `l1_kernel`'s terms) or q h (`DOT`: `dot_kernel`'s), a
/// plain add per lane in the kernels' order. Returns the lanes and where the tail starts.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
#[inline]
unsafe fn f16_lanes<const DOT: bool>(a: &[f32], b: &[half::f16]) -> ([f32; LANES], usize) {
    use std::arch::x86_64::*;
    assert_eq!(a.len(), b.len());
    let n = a.len() / LANES * LANES;
    let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    let sign = _mm256_set1_ps(-0.0);
    let mut c = 0;
    while c < n {
        // SAFETY: c + 16 <= n <= len of both slices; unaligned loads.
        let (q0, q1, h0, h1) = unsafe {
            (
                _mm256_loadu_ps(a.as_ptr().add(c)),
                _mm256_loadu_ps(a.as_ptr().add(c + 8)),
                _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(c) as *const __m128i)),
                _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().add(c + 8) as *const __m128i)),
            )
        };
        if DOT {
            lo = _mm256_add_ps(lo, _mm256_mul_ps(q0, h0));
            hi = _mm256_add_ps(hi, _mm256_mul_ps(q1, h1));
        } else {
            lo = _mm256_add_ps(lo, _mm256_andnot_ps(sign, _mm256_sub_ps(q0, h0)));
            hi = _mm256_add_ps(hi, _mm256_andnot_ps(sign, _mm256_sub_ps(q1, h1)));
        }
        c += LANES;
    }
    let mut acc = [0f32; LANES];
    // SAFETY: acc holds 16 f32.
    unsafe {
        _mm256_storeu_ps(acc.as_mut_ptr(), lo);
        _mm256_storeu_ps(acc.as_mut_ptr().add(8), hi);
    }
    (acc, n)
}

/// The map's search: the compressed one when the map was built with `--compress`
/// (`maps::compress`), else the exact [`top_k`].
pub fn search(
    map: &MapFile,
    query: &[f32],
    k: usize,
    metric: Metric,
    candidates: Option<&[usize]>,
) -> Vec<Hit> {
    match &map.meta.compression {
        Some(c) => compress::top_k(map, c, query, k, metric, candidates),
        None => top_k(map, query, k, metric, candidates),
    }
}

/// Rows scanned per parallel task.
const CHUNK: usize = 256;

/// The `k` nearest rows of `map` to `query`, best first; only `candidates` when given.
pub fn top_k(
    map: &MapFile,
    query: &[f32],
    k: usize,
    metric: Metric,
    candidates: Option<&[usize]>,
) -> Vec<Hit> {
    let dim = map.dim();
    assert_eq!(query.len(), dim, "query length");
    let entries = EntryRows::of(map);
    // Cosine reads the rows' squared norms, summed once for the opened map.
    let norms = (metric == Metric::Cosine).then(|| map.squared_norms());
    scan_rows(
        &entries,
        norms,
        dim,
        map.len(),
        query,
        k,
        metric,
        candidates,
    )
}

/// [`top_k`] over `len` entries' rows (`norms`: their squared norms, for a cosine search).
#[allow(clippy::too_many_arguments)] // top_k's arguments, the map taken apart
fn scan_rows(
    entries: &EntryRows,
    norms: Option<&SquaredNorms>,
    dim: usize,
    len: usize,
    query: &[f32],
    k: usize,
    metric: Metric,
    candidates: Option<&[usize]>,
) -> Vec<Hit> {
    let k = k.max(1);
    let query_sq = dot(query, query);
    let scan = |rows: &mut dyn Iterator<Item = usize>| {
        let mut top = Vec::with_capacity(k + 1);
        let mut buf = Vec::new();
        for i in rows {
            let distance = match norms {
                Some(n) => entry_cosine(entries, n, dim, query, query_sq, i, &mut buf),
                None => entry_distance(entries, dim, metric, query, i, &mut buf),
            };
            push_top(&mut top, k, Hit { index: i, distance });
        }
        top
    };
    match candidates {
        Some(c) => c
            .par_chunks(CHUNK)
            .map(|chunk| scan(&mut chunk.iter().copied()))
            .reduce(Vec::new, |a, b| merge(a, b, k)),
        None => (0..len.div_ceil(CHUNK))
            .into_par_iter()
            .map(|c| scan(&mut (c * CHUNK..((c + 1) * CHUNK).min(len))))
            .reduce(Vec::new, |a, b| merge(a, b, k)),
    }
}

/// Map rows by camera, and a k-d tree over camera centres for geo-gating.
pub struct MapIndex {
    pub by_camera: std::collections::BTreeMap<String, Vec<usize>>,
    /// One tree item per distinct camera centre: kiddo's fixed-size leaves cannot hold more
    /// than their bucket size (32) of identical points (a map whose poses are placeholders has
    /// hundreds at one spot), so identical centres share an item; `places[item]` are its rows.
    tree: kiddo::KdTree<f64, 3>,
    places: Vec<Vec<usize>>,
    /// `centres[item]`: the camera centre of `places[item]`.
    centres: Vec<[f64; 3]>,
}

impl MapIndex {
    pub fn new(map: &MapFile) -> Self {
        Self::from_parts(
            &map.meta.cameras,
            (0..map.len()).map(|i| {
                let t = map.pose(i).translation.vector;
                [t.x, t.y, t.z]
            }),
        )
    }

    /// The index of rows with these cameras and camera centres (row order).
    pub fn from_parts(cameras: &[String], centres: impl Iterator<Item = [f64; 3]>) -> Self {
        let mut by_camera: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        let mut tree: kiddo::KdTree<f64, 3> = kiddo::KdTree::new();
        let mut places: Vec<Vec<usize>> = Vec::new();
        let mut place_centres: Vec<[f64; 3]> = Vec::new();
        let mut seen: std::collections::HashMap<[u64; 3], usize> = Default::default();
        for (i, (cam, c)) in cameras.iter().zip(centres).enumerate() {
            by_camera.entry(cam.clone()).or_default().push(i);
            // +0.0 for -0.0, so the two zeros are one place.
            let key = c.map(|v| (v + 0.0).to_bits());
            let item = *seen.entry(key).or_insert_with(|| {
                tree.add(&c, places.len() as u64);
                places.push(Vec::new());
                place_centres.push(c);
                places.len() - 1
            });
            places[item].push(i);
        }
        Self {
            by_camera,
            tree,
            places,
            centres: place_centres,
        }
    }

    /// Candidate rows: of `camera` (None: all), inside the gate `near` (None: any).
    pub fn candidates(
        &self,
        camera: Option<&str>,
        near: Option<&crate::localize::gate::Gate>,
    ) -> Option<Vec<usize>> {
        let of_camera = camera.and_then(|c| self.by_camera.get(c));
        match near {
            None => of_camera.cloned(),
            Some(g) => {
                // The sphere that holds the gate, then the gate itself.
                let mut rows: Vec<usize> = self
                    .tree
                    .within_unsorted::<kiddo::SquaredEuclidean>(&g.centre, g.reach * g.reach)
                    .into_iter()
                    .filter(|n| g.contains(self.centres[n.item as usize]))
                    .flat_map(|n| self.places[n.item as usize].iter().copied())
                    .collect();
                rows.sort_unstable();
                if let Some(cam) = of_camera {
                    rows.retain(|i| cam.binary_search(i).is_ok());
                }
                Some(rows)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localize::gate::Gate;

    #[test]
    fn the_runtime_dispatched_kernels_equal_the_baseline_ones_bit_for_bit() {
        let a: Vec<f32> = (0..8203).map(|i| (i as f32 * 0.37).sin() * 1e-3).collect();
        let b: Vec<f32> = (0..8203).map(|i| (i as f32 * 0.11).cos() * 1e-3).collect();
        assert_eq!(l1(&a, &b).to_bits(), l1_kernel(&a, &b).to_bits());
        assert_eq!(l2(&a, &b).to_bits(), l2_kernel(&a, &b).to_bits());
        assert_eq!(cosine(&a, &b).to_bits(), cosine_kernel(&a, &b).to_bits());
        assert_eq!(dot(&a, &b).to_bits(), dot_kernel(&a, &b).to_bits());
    }

    #[test]
    fn the_fused_float16_l1_equals_converting_first_bit_for_bit() {
        let a: Vec<f32> = (0..8203).map(|i| (i as f32 * 0.37).sin() * 1e-3).collect();
        let b: Vec<half::f16> = (0..8203)
            .map(|i| half::f16::from_f32((i as f32 * 0.11).cos() * 1e-3))
            .collect();
        let converted: Vec<f32> = b.iter().map(|h| h.to_f32()).collect();
        let want = l1_kernel(&a, &converted);
        let descs = Descriptors::F16(&b);
        let got = row_distance(&descs, b.len(), Metric::L1, &a, 0, &mut Vec::new());
        assert_eq!(got.to_bits(), want.to_bits());
        #[cfg(target_arch = "x86_64")]
        if *HAS_F16C {
            // SAFETY: checked just above.
            let fused = unsafe { l1_f16_avx2(&a, &b) };
            assert_eq!(fused.to_bits(), want.to_bits());
        }
        for metric in [Metric::L2, Metric::Cosine] {
            let got = row_distance(&descs, b.len(), metric, &a, 0, &mut Vec::new());
            assert_eq!(got.to_bits(), distance(metric, &a, &converted).to_bits());
        }
        // The cosine scan's product with a float16 row, at every tail length.
        for len in (0..=40).chain([b.len()]) {
            let (q, h) = (&a[..len], &b[..len]);
            let want = dot_kernel(q, &converted[..len]);
            let got = row_dot(&Descriptors::F16(h), len, q, 0, &mut Vec::new());
            assert_eq!(got.to_bits(), want.to_bits(), "length {len}");
        }
    }

    /// The cosine search with the rows' squared norms summed once gives the hits and distances,
    /// bit for bit, of computing every distance whole: f32 and float16 rows, yaw views, a
    /// candidate subset, a zero row.
    #[test]
    fn cosine_with_precomputed_norms_equals_the_whole_distance_bit_for_bit() {
        let (n, d, views) = (300usize, 70usize, 2usize);
        let mut desc: Vec<f32> = (0..n * d)
            .map(|i| ((i as f32 * 0.731).sin() + (i % 7) as f32 * 0.1) * 0.01)
            .collect();
        desc[5 * d..6 * d].fill(0.0);
        let query: Vec<f32> = (0..d).map(|i| (i as f32 * 0.377).cos() * 0.01).collect();
        // Views near the query, each off by its own amount and scale: they are the entries'
        // best rows, so a view's norm counts.
        let view_desc: Vec<f32> = (0..n * views * d)
            .map(|i| {
                let v = (i / d) as f32;
                query[i % d] * (1.0 + 0.1 * v) + (i as f32 * 0.173).cos() * 1e-3 * (v % 7.0)
            })
            .collect();
        let half: Vec<half::f16> = desc.iter().map(|&v| half::f16::from_f32(v)).collect();
        let view_half: Vec<half::f16> = view_desc.iter().map(|&v| half::f16::from_f32(v)).collect();
        let odd: Vec<usize> = (0..n).filter(|i| i % 2 == 1).collect();
        for rows in [
            EntryRows::plain(Descriptors::F32(&desc)),
            EntryRows::plain(Descriptors::F16(&half)),
            EntryRows {
                base: Descriptors::F32(&desc),
                views: Some(Descriptors::F32(&view_desc)),
                per_entry: views,
            },
            EntryRows {
                base: Descriptors::F16(&half),
                views: Some(Descriptors::F16(&view_half)),
                per_entry: views,
            },
        ] {
            let norms = SquaredNorms::of(&rows, d);
            assert_eq!(norms.base.len(), n);
            for cands in [None, Some(&odd[..])] {
                // Every entry's distance (k = n), the zero row's included.
                let fast = scan_rows(&rows, Some(&norms), d, n, &query, n, Metric::Cosine, cands);
                let whole = scan_rows(&rows, None, d, n, &query, n, Metric::Cosine, cands);
                let bits = |h: &[Hit]| -> Vec<(usize, u32)> {
                    h.iter().map(|h| (h.index, h.distance.to_bits())).collect()
                };
                assert_eq!(bits(&fast), bits(&whole));
                assert_eq!(fast.len(), cands.map_or(n, |c| c.len()));
            }
        }
    }

    /// The kernel as it was before the norms were kept (three sums fused in one pass): the
    /// cosine distance is still the same number, bit for bit, at every tail length.
    #[test]
    fn the_cosine_kernel_equals_the_fused_one_it_replaced_bit_for_bit() {
        fn fused(a: &[f32], b: &[f32]) -> f32 {
            let (mut ab, mut aa, mut bb) = ([0f32; LANES], [0f32; LANES], [0f32; LANES]);
            let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
            let (ra, rb) = (ca.remainder(), cb.remainder());
            for (x, y) in ca.zip(cb) {
                for i in 0..LANES {
                    ab[i] += x[i] * y[i];
                    aa[i] += x[i] * x[i];
                    bb[i] += y[i] * y[i];
                }
            }
            let mut s = [
                ab.iter().sum::<f32>(),
                aa.iter().sum::<f32>(),
                bb.iter().sum::<f32>(),
            ];
            for (x, y) in ra.iter().zip(rb) {
                s[0] += x * y;
                s[1] += x * x;
                s[2] += y * y;
            }
            1.0 - s[0] / (s[1].sqrt() * s[2].sqrt()).max(1e-20)
        }
        for len in (0..=50).chain([2048, 8203]) {
            let a: Vec<f32> = (0..len).map(|i| (i as f32 * 0.37).sin() * 1e-2).collect();
            let b: Vec<f32> = (0..len).map(|i| (i as f32 * 0.11).cos() * 3e-3).collect();
            assert_eq!(
                cosine(&a, &b).to_bits(),
                fused(&a, &b).to_bits(),
                "length {len}"
            );
            assert_eq!(
                cosine_of(dot(&a, &b), dot(&a, &a), dot(&b, &b)).to_bits(),
                fused(&a, &b).to_bits(),
                "length {len}"
            );
        }
    }

    #[test]
    fn distances_match_their_definitions() {
        let a: Vec<f32> = (0..37).map(|i| i as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.3).sin()).collect();
        let l1_ref: f32 = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).sum();
        let l2_ref: f32 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).powi(2))
            .sum::<f32>()
            .sqrt();
        assert!((l1(&a, &b) - l1_ref).abs() < 1e-3);
        assert!((l2(&a, &b) - l2_ref).abs() < 1e-3);
        assert!(cosine(&a, &a).abs() < 1e-6);
        let neg: Vec<f32> = a.iter().map(|x| -x).collect();
        assert!((cosine(&a, &neg) - 2.0).abs() < 1e-5);
    }

    #[test]
    fn a_thousand_map_images_at_one_spot_are_indexed_and_gated() {
        // Placeholder poses: every image at the origin (kiddo alone panics past 32), and two
        // real places; -0.0 and 0.0 are the same spot.
        let mut centres = vec![[0.0, 0.0, 0.0]; 1000];
        centres[7] = [-0.0, 0.0, -0.0];
        centres.push([30.0, 0.0, 0.0]);
        centres.push([0.0, 4.0, 0.0]);
        let cameras: Vec<String> = (0..centres.len())
            .map(|i| if i % 2 == 0 { "c0" } else { "c1" }.to_string())
            .collect();
        let index = MapIndex::from_parts(&cameras, centres.into_iter());
        let near = index
            .candidates(None, Some(&Gate::sphere([0.0, 0.0, 0.0], 5.0)))
            .unwrap();
        assert_eq!(near.len(), 1001, "1000 at the origin and the one 4 m away");
        assert!(near.windows(2).all(|w| w[0] < w[1]), "sorted rows");
        assert!(!near.contains(&1000), "the image 30 m away is outside 5 m");
        let c1 = index
            .candidates(Some("c1"), Some(&Gate::sphere([0.0, 0.0, 0.0], 5.0)))
            .unwrap();
        assert_eq!(c1.len(), 501);
        assert_eq!(
            index.candidates(None, Some(&Gate::sphere([30.0, 0.0, 0.0], 1.0))),
            Some(vec![1000])
        );
        // An ellipsoid 1 m across and 30.02 m long along x (a prior unsure along x only): the
        // images at the origin and 30 m along x, not the one 4 m along y.
        let along_x = nalgebra::Matrix3::from_diagonal(&nalgebra::Vector3::new(900.0, 0.0, 0.0));
        let g = Gate::around([0.0; 3], 1.0, 1.0, Some(&along_x)).unwrap();
        let rows = index.candidates(None, Some(&g)).unwrap();
        assert_eq!(rows.len(), 1001);
        assert!(rows.contains(&1000) && !rows.contains(&1001));
    }

    #[test]
    fn top_keeps_the_k_smallest_in_order() {
        let mut top = Vec::new();
        for (i, d) in [5.0, 1.0, 3.0, 1.0, 9.0, 0.5].iter().enumerate() {
            push_top(
                &mut top,
                3,
                Hit {
                    index: i,
                    distance: *d,
                },
            );
        }
        let got: Vec<(usize, f32)> = top.iter().map(|h| (h.index, h.distance)).collect();
        assert_eq!(got, [(5, 0.5), (1, 1.0), (3, 1.0)]);
    }
}
