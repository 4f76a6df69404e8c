//! The sequence filter's added latency per frame (`cargo bench --bench sequence_filter`):
//! a map of 10,000 entries (5,000 places 2 m apart along a winding route, two cameras each),
//! frames driving along it at 10 m/s and 10 Hz with 50 retrieval hits each (the truth's place
//! best, 30% of frames with an aliased place far away looking better). Measured, interleaved
//! in blocks: the filter's predict + observe per frame, and as the peer a dense forward step
//! (every place to every place, no pruning), over the same frames. Reported: mean and p99 per
//! frame of each, and the share of frames each puts within 10 m of the truth. The same frames
//! through a second filter moved by odometry (the true 1 m per frame), interleaved likewise:
//! the ring and the directed kernel instead of the three kernels without it.
//!
//! Env: DASGIL_BENCH_PLACES (default 5000), DASGIL_BENCH_FRAMES (default 100).

use std::time::Instant;

use dasgil::localize::sequence::{
    Places, SequenceFilter, Travel, HITS, MAX_SPEED, MOTION_FLOOR, UNIFORM_SHARE,
};
use dasgil::retrieval::Hit;
use rand::{Rng, SeedableRng};

/// Seeded draws (a test stream, not the product's).
type Draws = rand_chacha::ChaCha8Rng;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hits(n: usize, truth: usize, rng: &mut Draws) -> Vec<Hit> {
    let alias = (rng.random::<f64>() < 0.3).then(|| (rng.random::<f64>() * n as f64) as usize % n);
    let mut v: Vec<Hit> = (truth.saturating_sub(40)..(truth + 40).min(n))
        .map(|p| Hit {
            index: 2 * p,
            distance: (1.0 + 0.01 * (p as f64 - truth as f64).abs() + 0.02 * rng.random::<f64>())
                as f32,
        })
        .collect();
    if let Some(a) = alias {
        v.push(Hit {
            index: 2 * a,
            distance: 0.97,
        });
    }
    v.sort_by(|a, b| a.distance.total_cmp(&b.distance));
    v.truncate(HITS);
    v
}

/// The peer: one forward step with every place's motion kernel over every place.
fn dense_step(places: &Places, belief: &mut Vec<f64>, dt: f64, hits: &[Hit]) -> usize {
    let n = places.len();
    let s = MOTION_FLOOR + MAX_SPEED * dt;
    let mut next = vec![UNIFORM_SHARE / n as f64; n];
    for (i, &bi) in belief.iter().enumerate() {
        let ci = places.centre[i];
        let w: Vec<f64> = (0..n)
            .map(|j| {
                let cj = places.centre[j];
                let d2 =
                    (ci[0] - cj[0]).powi(2) + (ci[1] - cj[1]).powi(2) + (ci[2] - cj[2]).powi(2);
                (-d2 / (2.0 * s * s)).exp()
            })
            .collect();
        let sum: f64 = w.iter().sum();
        for j in 0..n {
            next[j] += (1.0 - UNIFORM_SHARE) * bi * w[j] / sum;
        }
    }
    let d1 = hits[0].distance as f64;
    let scale = (hits[4].distance as f64 - d1).max(1e-9);
    let floor = (-(hits[hits.len() - 1].distance as f64 - d1) / scale).exp();
    let mut lik = vec![floor; n];
    for h in hits {
        let p = places.of_row[h.index];
        lik[p] = lik[p].max((-(h.distance as f64 - d1) / scale).exp());
    }
    for (b, l) in next.iter_mut().zip(&lik) {
        *b *= l;
    }
    let sum: f64 = next.iter().sum();
    next.iter_mut().for_each(|b| *b /= sum);
    *belief = next;
    (0..n)
        .max_by(|&a, &b| belief[a].total_cmp(&belief[b]))
        .unwrap()
}

fn main() {
    let n = env("DASGIL_BENCH_PLACES", 5000);
    let frames = env("DASGIL_BENCH_FRAMES", 100);
    // A winding route: 2 m steps, turning slowly.
    let mut centres = Vec::with_capacity(2 * n);
    let (mut x, mut y, mut heading) = (0.0f64, 0.0f64, 0.0f64);
    for p in 0..n {
        heading += 0.02 * (p as f64 * 0.01).sin();
        x += 2.0 * heading.cos();
        y += 2.0 * heading.sin();
        centres.push([x, y, 0.0]);
        centres.push([x, y, 0.0]);
    }
    let places = Places::from_centres(centres.into_iter());
    println!(
        "sequence filter bench: {} map entries, {} places, {frames} frames at 10 Hz, 10 m/s",
        2 * n,
        places.len()
    );
    let mut rng = Draws::seed_from_u64(17);
    let truths: Vec<usize> = (0..frames)
        .map(|i| (100 + i / 2).min(places.len() - 1))
        .collect();
    let obs: Vec<Vec<Hit>> = truths
        .iter()
        .map(|&t| hits(places.len(), t, &mut rng))
        .collect();
    let (mut filt_ms, mut dense_ms, mut odo_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut filt_ok, mut dense_ok, mut odo_ok) = (0, 0, 0);
    let mut f = SequenceFilter::new(&places);
    let mut fo = SequenceFilter::new(&places);
    let mut belief = vec![1.0 / places.len() as f64; places.len()];
    let near = |a: usize, b: usize| {
        let (p, q) = (places.centre[a], places.centre[b]);
        ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt() <= 10.0
    };
    // Interleaved blocks of 10 frames: the filter, then the dense peer, over the same frames.
    for block in (0..frames).collect::<Vec<_>>().chunks(10) {
        for &i in block {
            let t = Instant::now();
            f.predict(&places, i as f64 * 0.1, None);
            let s = f.observe(&places, &obs[i], 0.0, |r| r % 2 == 0).unwrap();
            filt_ms.push(t.elapsed().as_secs_f64() * 1e3);
            filt_ok += near(s.place, truths[i]) as usize;
        }
        for &i in block {
            let travel = (i > 0).then_some(Travel {
                displacement: 1.0,
                path: 1.0,
            });
            let t = Instant::now();
            fo.predict(&places, i as f64 * 0.1, travel);
            let s = fo.observe(&places, &obs[i], 0.0, |r| r % 2 == 0).unwrap();
            odo_ms.push(t.elapsed().as_secs_f64() * 1e3);
            odo_ok += near(s.place, truths[i]) as usize;
        }
        for &i in block {
            let t = Instant::now();
            let p = dense_step(
                &places,
                &mut belief,
                if i == 0 { 1e6 } else { 0.1 },
                &obs[i],
            );
            dense_ms.push(t.elapsed().as_secs_f64() * 1e3);
            dense_ok += near(p, truths[i]) as usize;
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (mean, v[(v.len() * 99 / 100).min(v.len() - 1)])
    };
    let (fm, fp) = stats(&mut filt_ms);
    let (dm, dp) = stats(&mut dense_ms);
    let (om, op) = stats(&mut odo_ms);
    println!(
        "filter (pruned, k-d tree): mean {fm:.3} ms, p99 {fp:.3} ms per frame; within 10 m {:.1}%",
        100.0 * filt_ok as f64 / frames as f64
    );
    println!(
        "filter with odometry: mean {om:.3} ms, p99 {op:.3} ms per frame; within 10 m {:.1}%",
        100.0 * odo_ok as f64 / frames as f64
    );
    println!(
        "peer (dense forward step): mean {dm:.3} ms, p99 {dp:.3} ms per frame; within 10 m {:.1}%",
        100.0 * dense_ok as f64 / frames as f64
    );
}
