//! The compressed search mode for large maps: each descriptor is projected to `dims` values by
//! a fixed random projection (entries +-1/sqrt(dims), seeded; it preserves L2 distances in
//! expectation, Johnson-Lindenstrauss) and stored as int8 codes with one scale per row. A query
//! is projected the same way; the codes give approximate distances for every candidate row
//! (dims bytes a row instead of 4 x D), the `shortlist` closest are re-ranked with the exact
//! metric on the full descriptors, and the best K of those are returned. Its recall cost
//! against the exact search is measured by `cargo bench --bench retrieval` and reported there.

use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::{Hit, Metric};
use crate::map::file::MapFile;

/// What a compressed map stores besides the exact descriptors (metadata `compression`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionMeta {
    /// `random-projection-int8`.
    pub kind: String,
    pub dims: usize,
    pub seed: u64,
    /// Rows re-ranked exactly per query.
    pub shortlist: usize,
}

pub const KIND: &str = "random-projection-int8";

/// The dims x D projection matrix (row-major) of `seed`.
pub fn projection(dims: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v = 1.0 / (dims as f32).sqrt();
    (0..dims * d)
        .map(|_| if rng.random::<bool>() { v } else { -v })
        .collect()
}

/// y = P x.
pub fn project(p: &[f32], dims: usize, x: &[f32]) -> Vec<f32> {
    let d = x.len();
    (0..dims)
        .map(|r| {
            let row = &p[r * d..(r + 1) * d];
            let mut acc = [0f32; 8];
            for (a, b) in row.chunks_exact(8).zip(x.chunks_exact(8)) {
                for i in 0..8 {
                    acc[i] += a[i] * b[i];
                }
            }
            let tail: f32 = row
                .chunks_exact(8)
                .remainder()
                .iter()
                .zip(x.chunks_exact(8).remainder())
                .map(|(a, b)| a * b)
                .sum();
            acc.iter().sum::<f32>() + tail
        })
        .collect()
}

/// int8 codes and the row's scale: y ~ scale * code.
pub fn quantize(y: &[f32]) -> (Vec<i8>, f32) {
    let m = y.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if m > 0.0 { m / 127.0 } else { 1.0 };
    (
        y.iter()
            .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8)
            .collect(),
        scale,
    )
}

/// Codes of `rows` descriptors ([rows, D] row-major) with projection `p`.
pub fn encode_rows(p: &[f32], dims: usize, desc: &[f32], d: usize) -> (Vec<i8>, Vec<f32>) {
    use rayon::prelude::*;
    let per_row: Vec<(Vec<i8>, f32)> = desc
        .par_chunks(d)
        .map(|row| quantize(&project(p, dims, row)))
        .collect();
    let mut codes = Vec::with_capacity(per_row.len() * dims);
    let mut scales = Vec::with_capacity(per_row.len());
    for (c, s) in per_row {
        codes.extend(c);
        scales.push(s);
    }
    (codes, scales)
}

/// What a map stores for the compressed mode: the `projection`, `codes` and `code_scales`
/// tensors of `n` descriptors ([n, d] row-major), and the metadata.
pub fn map_tensors(
    desc: &[f32],
    n: usize,
    d: usize,
    dims: usize,
    shortlist: usize,
) -> (Vec<crate::map::file::RawTensor>, CompressionMeta) {
    use safetensors::tensor::Dtype;
    let p = projection(dims, d, crate::map::PROJECTION_SEED);
    let (codes, scales) = encode_rows(&p, dims, desc, d);
    (
        vec![
            crate::map::file::RawTensor::new("projection", Dtype::F32, vec![dims, d], &p),
            crate::map::file::RawTensor::new("codes", Dtype::I8, vec![n, dims], &codes),
            crate::map::file::RawTensor::new("code_scales", Dtype::F32, vec![n], &scales),
        ],
        CompressionMeta {
            kind: KIND.into(),
            dims,
            seed: crate::map::PROJECTION_SEED,
            shortlist,
        },
    )
}

/// The compressed search: approximate L2 on the codes for every candidate, exact `metric` on
/// the `shortlist` best, the best `k` of those returned (best first).
pub fn top_k(
    map: &MapFile,
    c: &CompressionMeta,
    query: &[f32],
    k: usize,
    metric: Metric,
    candidates: Option<&[usize]>,
) -> Vec<Hit> {
    let codes = Codes {
        projection: bytemuck::cast_slice(map.bytes("projection").expect("checked on open").2),
        dims: c.dims,
        codes: bytemuck::cast_slice(map.bytes("codes").expect("checked on open").2),
        scales: bytemuck::cast_slice(map.bytes("code_scales").expect("checked on open").2),
    };
    let rows: Vec<usize> = match candidates {
        Some(c) => c.to_vec(),
        None => (0..map.len()).collect(),
    };
    rerank_top_k(
        &codes,
        c.shortlist,
        &super::EntryRows::of(map),
        map.dim(),
        query,
        k,
        metric,
        &rows,
    )
}

/// A compressed map's codes: the projection ([dims, D] row-major), the int8 codes ([n, dims])
/// and one scale per row.
pub struct Codes<'a> {
    pub projection: &'a [f32],
    pub dims: usize,
    pub codes: &'a [i8],
    pub scales: &'a [f32],
}

/// [`top_k`] on the parts of a map: the `shortlist` (at least `k`) of `rows` closest by the codes'
/// approximate L2 (of the entries' own descriptors), re-ranked by the exact `metric` on `entries`
/// (the smallest over an entry's descriptor and its yaw views).
#[allow(clippy::too_many_arguments)]
pub fn rerank_top_k(
    codes: &Codes<'_>,
    shortlist: usize,
    entries: &super::EntryRows<'_>,
    dim: usize,
    query: &[f32],
    k: usize,
    metric: Metric,
    rows: &[usize],
) -> Vec<Hit> {
    use rayon::prelude::*;
    let dims = codes.dims;
    let y = project(codes.projection, dims, query);
    let approx = |i: usize| -> f32 {
        let s = codes.scales[i];
        let row = &codes.codes[i * dims..(i + 1) * dims];
        let mut acc = [0f32; 8];
        for (cs, ys) in row.chunks_exact(8).zip(y.chunks_exact(8)) {
            for j in 0..8 {
                let d = ys[j] - s * cs[j] as f32;
                acc[j] += d * d;
            }
        }
        let tail: f32 = row
            .chunks_exact(8)
            .remainder()
            .iter()
            .zip(y.chunks_exact(8).remainder())
            .map(|(c, y)| (y - s * *c as f32).powi(2))
            .sum();
        acc.iter().sum::<f32>() + tail
    };
    let shortlist = shortlist.max(k);
    let short = rows
        .par_chunks(4096)
        .map(|chunk| {
            let mut top = Vec::with_capacity(shortlist + 1);
            for &i in chunk {
                super::push_top(
                    &mut top,
                    shortlist,
                    Hit {
                        index: i,
                        distance: approx(i),
                    },
                );
            }
            top
        })
        .reduce(Vec::new, |a, b| super::merge(a, b, shortlist));
    let mut buf = Vec::new();
    let mut exact = Vec::with_capacity(k + 1);
    for h in short {
        let distance = super::entry_distance(entries, dim, metric, query, h.index, &mut buf);
        super::push_top(
            &mut exact,
            k,
            Hit {
                index: h.index,
                distance,
            },
        );
    }
    exact
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_is_seeded_and_quantization_round_trips() {
        assert_eq!(projection(4, 16, 7), projection(4, 16, 7));
        assert_ne!(projection(4, 16, 7), projection(4, 16, 8));
        let y = [0.5f32, -1.0, 0.25, 0.0];
        let (c, s) = quantize(&y);
        assert_eq!(c, vec![64, -127, 32, 0]);
        for (v, q) in y.iter().zip(&c) {
            assert!((v - s * *q as f32).abs() <= s / 2.0 + 1e-7);
        }
    }

    /// With a shortlist that covers the map, the compressed search is the exact search: the same
    /// rows in the same order with the exact metric's distances (not the codes' approximate L2),
    /// for every metric and for a candidate subset.
    #[test]
    fn a_shortlist_covering_the_map_gives_the_exact_results_and_distances() {
        use crate::map::file::Descriptors;
        let (n, d, dims) = (40usize, 48usize, 16usize);
        let desc: Vec<f32> = (0..n * d)
            .map(|i| ((i as f32 * 0.731).sin() + (i % 7) as f32 * 0.1) * 0.01)
            .collect();
        let query: Vec<f32> = (0..d).map(|i| (i as f32 * 0.377).cos() * 0.01).collect();
        let p = projection(dims, d, 3);
        let (c, s) = encode_rows(&p, dims, &desc, d);
        let codes = Codes {
            projection: &p,
            dims,
            codes: &c,
            scales: &s,
        };
        let entries = super::super::EntryRows::plain(Descriptors::F32(&desc));
        let all: Vec<usize> = (0..n).collect();
        let odd: Vec<usize> = (0..n).filter(|i| i % 2 == 1).collect();
        for metric in [Metric::L1, Metric::L2, Metric::Cosine] {
            for rows in [&all, &odd] {
                let mut want: Vec<(usize, f32)> = rows
                    .iter()
                    .map(|&i| {
                        (
                            i,
                            super::super::distance(metric, &query, &desc[i * d..(i + 1) * d]),
                        )
                    })
                    .collect();
                want.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                want.truncate(5);
                let got: Vec<(usize, f32)> =
                    rerank_top_k(&codes, n, &entries, d, &query, 5, metric, rows)
                        .iter()
                        .map(|h| (h.index, h.distance))
                        .collect();
                assert_eq!(
                    got,
                    want,
                    "{metric:?} over {} rows: compressed (index, distance) vs exact",
                    rows.len()
                );
            }
        }
        // A shortlist of 1 still returns k (the shortlist is at least k).
        let got = rerank_top_k(&codes, 1, &entries, d, &query, 3, Metric::L1, &all);
        assert_eq!(got.len(), 3, "k hits from a shortlist smaller than k");
    }
}
