//! Training-time augmentation (`augment: true` in the training configuration; off by default,
//! so the paper's training is reproduced exactly). Not in the paper or the authors' code: it
//! makes the encoder's descriptors depend less on colour, tone and sensor, the shift that
//! separates worlds drawn by different hands (maps/models/MODEL_CARD.md).
//!
//! Each labelled image of a triplet (anchor, positive, negative) is augmented independently, with
//! draws keyed by (seed, step, triplet, part), so a batch is the same whatever the loader's
//! thread count and a resumed run continues bit for bit. The flip of the anchor and its positive
//! stays shared, as the reference has it (`TripletDraw::flip_pair`). Real-domain images are not
//! augmented: they are the discriminator's target look.
//!
//! In this order, each with its probability:
//! - geometry (p 0.5): zoom x1.0-1.15, rotation within +-3 degrees, shift within the zoom's
//!   margin; RGB bilinear, depth and classes by the same map, nearest (values never blended);
//! - colour jitter (each p 0.8): brightness x0.6-1.4, contrast x0.6-1.4 about the mean,
//!   saturation x0.4-1.6, hue within +-0.08 turns (rotation of the YIQ chroma plane);
//! - grey (p 0.1); gamma 0.7-1.5 (p 0.5);
//! - Gaussian noise, sigma up to 0.04 (p 0.3), then the 8-bit image; Gaussian blur, sigma
//!   0.3-1.5 px (p 0.2);
//! - JPEG at quality 30-90 (p 0.3).
//!
//! With `augment_palette` (`train --augment-palette`), after the colour jitter and before grey,
//! the palette is remapped (p 0.5), as another renderer or camera draws the same place in other
//! colours and tones: a channel swap (p 0.2: one of the five other orders of R, G, B); a channel
//! mix towards a random stochastic matrix (each output channel a random convex combination of
//! the three, weight 0-0.7 against the identity); then a monotone tone curve per channel
//! (piecewise linear through five knots with random slopes, black point up to 0.15, white point
//! from 0.85). It draws nothing when off, so runs without it keep their batches.
//!
//! With `augment_yaw_deg` (`train --augment-yaw DEG`), first of all (p 0.5) the camera is turned
//! about its vertical axis by a yaw drawn uniformly within +-DEG, as a vehicle passing the same
//! place a little turned sees it: the pure-rotation homography of the frame's intrinsics, the
//! same as build-map's yaw views (`crate::map::views`; RGB bilinear, black where the image
//! shows nothing, until the colour changes after it tint that black too); depth and classes by the same rays, nearest, edge-clamped where the image
//! shows nothing, depth as the point's z in the turned camera (the source's z over the turned
//! ray's z; the far plane, 655.35 m, stays the far plane). The anchor and its positive are turned independently, so a positive pair differs
//! by up to 2 DEG of heading. Its draws come from a stream of their own: runs without it keep
//! their batches.

use image::{Rgb, RgbImage};
use nalgebra::Vector3;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::geom::Pinhole;

/// Depth of Virtual KITTI 2's far plane in metres (`data::vkitti2::FAR_VALUE` / 100).
const FAR_M: f32 = crate::data::vkitti2::FAR_VALUE as f32 / 100.0;

/// Draws of one image: a function of the run's seed, the step, the triplet and the part
/// (0 anchor, 1 positive, 2 negative).
pub fn key(seed: u64, step: u64, triplet: usize, part: usize) -> u64 {
    let mut h = 0xA06_3E47u64 ^ seed.rotate_left(17);
    for v in [step, triplet as u64, part as u64] {
        h = (h ^ v).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
    }
    h
}

/// What one image's augmentation draws from (module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Draws {
    /// The image's [`key`].
    pub key: u64,
    /// Remap the palette too (`augment_palette`).
    pub palette: bool,
    /// Turn the camera by up to this many degrees about its vertical axis (`augment_yaw_deg`;
    /// 0: never). Needs the frame's intrinsics.
    pub yaw_deg: f64,
}

/// Augments one labelled image in place: `rgb` (W x H), `depth` (metres along the optical
/// axis) and `classes` (row-major H x W, geometry only); `camera`: the image's intrinsics (any
/// size, scaled to the image's; needed when `draws.yaw_deg` > 0, the turn is skipped without).
pub fn augment<T: Copy>(
    rgb: &mut RgbImage,
    depth: &mut [f32],
    classes: &mut [T],
    draws: &Draws,
    camera: Option<&Pinhole>,
) {
    if draws.yaw_deg > 0.0 {
        // A stream of its own: the other draws are those of a run without the turn.
        let mut rng = ChaCha8Rng::seed_from_u64(draws.key ^ 0x7A3D_11E5_0B0A_F00D);
        if let (true, Some(k)) = (rng.random_bool(0.5), camera) {
            let yaw = rng.random_range(-draws.yaw_deg..=draws.yaw_deg);
            turn(rgb, depth, classes, k, yaw);
        }
    }
    let (key, palette) = (draws.key, draws.palette);
    let mut rng = ChaCha8Rng::seed_from_u64(key);
    let (w, h) = rgb.dimensions();
    if rng.random_bool(0.5) {
        let zoom = rng.random_range(1.0..1.15f64);
        let angle = rng.random_range(-3.0..3.0f64).to_radians();
        // The shift keeps the zoomed view inside the image.
        let margin = |n: u32| (n as f64) * (1.0 - 1.0 / zoom) / 2.0;
        let shift = [
            rng.random_range(-1.0..1.0) * margin(w),
            rng.random_range(-1.0..1.0) * margin(h),
        ];
        warp(rgb, depth, classes, zoom, angle, shift);
    }
    let mut px: Vec<[f32; 3]> = rgb
        .pixels()
        .map(|p| p.0.map(|v| v as f32 / 255.0))
        .collect();
    let lum = |c: &[f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
    // Colour jitter, in a random order of its four parts (as torchvision's ColorJitter).
    let mut order = [0u8, 1, 2, 3];
    for i in (1..4).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    for op in order {
        if !rng.random_bool(0.8) {
            continue;
        }
        match op {
            0 => {
                let b = rng.random_range(0.6..1.4f32);
                px.iter_mut().for_each(|c| *c = c.map(|v| v * b));
            }
            1 => {
                let f = rng.random_range(0.6..1.4f32);
                let mean = px.iter().map(lum).sum::<f32>() / px.len().max(1) as f32;
                px.iter_mut()
                    .for_each(|c| *c = c.map(|v| mean + (v - mean) * f));
            }
            2 => {
                let s = rng.random_range(0.4..1.6f32);
                px.iter_mut().for_each(|c| {
                    let l = lum(c);
                    *c = c.map(|v| l + (v - l) * s);
                });
            }
            _ => {
                let turn = rng.random_range(-0.08..0.08f32) * std::f32::consts::TAU;
                let (sn, cs) = turn.sin_cos();
                px.iter_mut().for_each(|c| {
                    let y = lum(c);
                    let i = 0.596 * c[0] - 0.274 * c[1] - 0.322 * c[2];
                    let q = 0.211 * c[0] - 0.523 * c[1] + 0.312 * c[2];
                    let (i, q) = (i * cs - q * sn, i * sn + q * cs);
                    *c = [
                        y + 0.956 * i + 0.621 * q,
                        y - 0.272 * i - 0.647 * q,
                        y - 1.106 * i + 1.703 * q,
                    ];
                });
            }
        }
    }
    if palette && rng.random_bool(0.5) {
        remap_palette(&mut px, &mut rng);
    }
    if rng.random_bool(0.1) {
        px.iter_mut().for_each(|c| *c = [lum(c); 3]);
    }
    if rng.random_bool(0.5) {
        let g = rng.random_range(0.7..1.5f32);
        px.iter_mut()
            .for_each(|c| *c = c.map(|v| v.clamp(0.0, 1.0).powf(g)));
    }
    let blur = rng.random_bool(0.2).then(|| rng.random_range(0.3..1.5f32));
    let noise = rng.random_bool(0.3).then(|| rng.random_range(0.0..0.04f32));
    if let Some(sigma) = noise {
        for c in px.iter_mut() {
            for v in c.iter_mut() {
                *v += sigma * gaussian(&mut rng);
            }
        }
    }
    for (p, c) in rgb.pixels_mut().zip(&px) {
        *p = Rgb(c.map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8));
    }
    if let Some(sigma) = blur {
        *rgb = image::imageops::blur(rgb, sigma);
    }
    if rng.random_bool(0.3) {
        let quality = rng.random_range(30..=90u8);
        if let Some(img) = jpeg_round_trip(rgb, quality) {
            *rgb = img;
        }
    }
}

/// The palette remapping of `augment_palette` (module docs): channel swap, channel mix, tone
/// curves. Values stay in 0..1 for inputs in 0..1.
fn remap_palette(px: &mut [[f32; 3]], rng: &mut ChaCha8Rng) {
    // The five orders of (R, G, B) other than the identity.
    const SWAPS: [[usize; 3]; 5] = [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    let swap = rng
        .random_bool(0.2)
        .then(|| SWAPS[rng.random_range(0..SWAPS.len())]);
    // Mix: (1 - a) I + a R, R's rows random points of the simplex (normalised exponentials).
    let a = rng.random_range(0.0..0.7f32);
    let mut mix = [[0f32; 3]; 3];
    for (i, row) in mix.iter_mut().enumerate() {
        let w: [f32; 3] = std::array::from_fn(|_| -rng.random_range(f32::EPSILON..1.0f32).ln());
        let sum: f32 = w.iter().sum();
        for (j, v) in row.iter_mut().enumerate() {
            *v = a * w[j] / sum + if i == j { 1.0 - a } else { 0.0 };
        }
    }
    // Tone curves: knots at 0, 1/4, ..., 1; random positive slopes, rescaled to end at 1, then
    // mapped onto [black, white].
    let curves: [[f32; 5]; 3] = std::array::from_fn(|_| {
        let steps: [f32; 4] = std::array::from_fn(|_| rng.random_range(0.3..1.7f32));
        let total: f32 = steps.iter().sum();
        let black = rng.random_range(0.0..0.15f32);
        let white = rng.random_range(0.85..1.0f32);
        let mut knots = [black; 5];
        let mut acc = 0.0;
        for (k, s) in steps.iter().enumerate() {
            acc += s / total;
            knots[k + 1] = black + (white - black) * acc;
        }
        knots
    });
    let tone = |knots: &[f32; 5], v: f32| {
        let x = v.clamp(0.0, 1.0) * 4.0;
        let k = (x.floor() as usize).min(3);
        knots[k] + (knots[k + 1] - knots[k]) * (x - k as f32)
    };
    for c in px.iter_mut() {
        let src = match swap {
            Some(o) => [c[o[0]], c[o[1]], c[o[2]]],
            None => *c,
        };
        *c = std::array::from_fn(|i| {
            let m = mix[i][0] * src[0] + mix[i][1] * src[1] + mix[i][2] * src[2];
            tone(&curves[i], m)
        });
    }
}

/// A standard normal draw (Box-Muller).
fn gaussian(rng: &mut ChaCha8Rng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

fn jpeg_round_trip(rgb: &RgbImage, quality: u8) -> Option<RgbImage> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, quality)
        .encode_image(rgb)
        .ok()?;
    Some(
        image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg)
            .ok()?
            .to_rgb8(),
    )
}

/// The image as the camera turned left by `yaw_deg` about its vertical axis would have seen it
/// (module docs): RGB by [`crate::map::views::yaw_view`]; depth and classes by the same rays,
/// nearest, edge-clamped where the image shows nothing; depth the point's z in the turned camera.
pub fn turn<T: Copy>(
    rgb: &mut RgbImage,
    depth: &mut [f32],
    classes: &mut [T],
    camera: &Pinhole,
    yaw_deg: f64,
) {
    let (w, h) = rgb.dimensions();
    let k = if (camera.width, camera.height) == (w, h) {
        *camera
    } else {
        camera.scaled(w, h)
    };
    *rgb = crate::map::views::yaw_view(rgb, &k, None, yaw_deg);
    let cam_from_view = crate::map::views::view_from_cam(yaw_deg).transpose();
    let (old_depth, old_classes) = (depth.to_vec(), classes.to_vec());
    let (wm, hm) = ((w - 1) as f64, (h - 1) as f64);
    for v in 0..h {
        for u in 0..w {
            // The view pixel's ray (z = 1) in the image's frame: the source pixel is its
            // projection, and a point at the source's depth z lies at z / r.z in the view.
            let r = cam_from_view
                * Vector3::new((u as f64 - k.cx) / k.fx, (v as f64 - k.cy) / k.fy, 1.0);
            if r.z <= 1e-6 {
                continue;
            }
            let su = (k.fx * r.x / r.z + k.cx).round().clamp(0.0, wm) as usize;
            let sv = (k.fy * r.y / r.z + k.cy).round().clamp(0.0, hm) as usize;
            let (i, src) = ((v * w + u) as usize, sv * w as usize + su);
            // The far plane (Virtual KITTI 2's 65535, "at or beyond") stays the far plane.
            let z = old_depth[src];
            depth[i] = if z >= FAR_M {
                z
            } else {
                ((z as f64 / r.z) as f32).min(FAR_M)
            };
            classes[i] = old_classes[src];
        }
    }
}

/// Zoom about the centre by `zoom`, rotate by `angle`, shift by `shift` pixels: each output pixel
/// reads the source point that maps onto it (edges clamped). RGB bilinear; depth and classes
/// nearest, by the same map.
fn warp<T: Copy>(
    rgb: &mut RgbImage,
    depth: &mut [f32],
    classes: &mut [T],
    zoom: f64,
    angle: f64,
    shift: [f64; 2],
) {
    let (w, h) = rgb.dimensions();
    let (cx, cy) = ((w as f64 - 1.0) / 2.0, (h as f64 - 1.0) / 2.0);
    let (s, c) = angle.sin_cos();
    let src_of = |x: u32, y: u32| {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        (
            cx + (c * dx + s * dy) / zoom + shift[0],
            cy + (-s * dx + c * dy) / zoom + shift[1],
        )
    };
    let clamp = |v: f64, n: u32| v.clamp(0.0, n as f64 - 1.0);
    let src = rgb.clone();
    let (old_depth, old_classes) = (depth.to_vec(), classes.to_vec());
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = src_of(x, y);
            let (sx, sy) = (clamp(sx, w), clamp(sy, h));
            let (x0, y0) = (sx.floor() as u32, sy.floor() as u32);
            let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
            let (fx, fy) = ((sx - x0 as f64) as f32, (sy - y0 as f64) as f32);
            let p = |xx: u32, yy: u32| src.get_pixel(xx, yy).0;
            let (a, b, cc, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
            let out: [u8; 3] = std::array::from_fn(|k| {
                let top = a[k] as f32 + (b[k] as f32 - a[k] as f32) * fx;
                let bottom = cc[k] as f32 + (d[k] as f32 - cc[k] as f32) * fx;
                (top + (bottom - top) * fy).round() as u8
            });
            rgb.put_pixel(x, y, Rgb(out));
            let near = (sy.round() as usize) * w as usize + sx.round() as usize;
            let i = (y * w + x) as usize;
            depth[i] = old_depth[near];
            classes[i] = old_classes[near];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`without_the_palette_the_images_are_those_augmented_before_it_came`]'s checksum.
    const PINNED: u64 = 0x094c_a059_5c33_8cee;

    fn plain(key: u64, palette: bool) -> Draws {
        Draws {
            key,
            palette,
            yaw_deg: 0.0,
        }
    }

    fn sample(w: u32, h: u32) -> (RgbImage, Vec<f32>, Vec<u8>) {
        let rgb = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 7) as u8, (y * 11) as u8, 90]));
        let depth = (0..w * h).map(|i| 1.0 + (i % w) as f32 * 0.5).collect();
        let classes = (0..w * h).map(|i| ((i / w) % 5) as u8).collect();
        (rgb, depth, classes)
    }

    #[test]
    fn the_same_key_gives_the_same_image_and_labels_keep_their_values() {
        let (rgb, depth, classes) = sample(32, 16);
        let run = |k: u64| {
            let (mut r, mut d, mut c) = (rgb.clone(), depth.clone(), classes.clone());
            augment(&mut r, &mut d, &mut c, &plain(k, false), None);
            (r, d, c)
        };
        assert_eq!(run(3), run(3));
        let mut changed = 0;
        for k in 0..40 {
            let (r, d, c) = run(k);
            changed += (r != rgb) as usize;
            // Nearest sampling: every label value is one of the source's.
            assert!(
                d.iter().all(|v| depth.contains(v)),
                "key {k}: blended depth"
            );
            assert!(c.iter().all(|v| *v < 5), "key {k}: class out of range");
        }
        assert!(changed >= 38, "{changed} of 40 images changed");
        assert_ne!(key(1, 2, 0, 0), key(1, 2, 0, 1));
        assert_ne!(key(1, 2, 0, 0), key(1, 3, 0, 0));
        assert_ne!(key(1, 2, 0, 0), key(2, 2, 0, 0));
    }

    #[test]
    fn the_palette_remapping_changes_colours_only_and_leaves_the_other_draws_alone() {
        let (rgb, depth, classes) = sample(32, 16);
        let run = |k: u64, palette: bool| {
            let (mut r, mut d, mut c) = (rgb.clone(), depth.clone(), classes.clone());
            augment(&mut r, &mut d, &mut c, &plain(k, palette), None);
            (r, d, c)
        };
        assert_eq!(run(5, true), run(5, true));
        // The balance of red against blue over 60 augmentations of one image: the remapping
        // spreads it much wider than the colour jitter alone.
        let balance = |r: &RgbImage| {
            let sum = |ch: usize| r.pixels().map(|p| p.0[ch] as f64 + 1.0).sum::<f64>();
            (sum(0) / sum(2)).ln()
        };
        let spread = |v: &[f64]| {
            let m = v.iter().sum::<f64>() / v.len() as f64;
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let (mut plain, mut remapped) = (Vec::new(), Vec::new());
        for k in 0..60 {
            let (r0, d0, c0) = run(k, false);
            let (r1, d1, c1) = run(k, true);
            // The geometry is drawn before the palette: labels are the same with and without.
            assert_eq!((d0, c0), (d1, c1), "key {k}: the palette moved the labels");
            plain.push(balance(&r0));
            remapped.push(balance(&r1));
        }
        let (s0, s1) = (spread(&plain), spread(&remapped));
        assert!(
            s1 > 1.5 * s0,
            "red/blue spread {s1:.3} with the palette, {s0:.3} without"
        );
        // Tone curves are monotone and stay in range; a swap permutes the channels.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..50 {
            let mut ramp: Vec<[f32; 3]> = (0..=20).map(|i| [i as f32 / 20.0; 3]).collect();
            remap_palette(&mut ramp, &mut rng);
            for w in ramp.windows(2) {
                assert!(
                    w[1].iter().zip(&w[0]).all(|(b, a)| *b >= a - 1e-6),
                    "not monotone: {ramp:?}"
                );
            }
            assert!(ramp.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn without_the_palette_the_images_are_those_augmented_before_it_came() {
        // FNV-1a over the augmented images and depths of keys 0..24, pinned when the palette
        // came (2026-12-04; the path without it was not changed): runs recorded before it,
        // resumed, get the same batches.
        let (rgb, depth, classes) = sample(32, 16);
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for k in 0..24 {
            let (mut r, mut d, mut c) = (rgb.clone(), depth.clone(), classes.clone());
            augment(&mut r, &mut d, &mut c, &plain(k, false), None);
            let bytes = r
                .as_raw()
                .iter()
                .copied()
                .chain(d.iter().flat_map(|v| v.to_le_bytes()));
            for b in bytes {
                h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
            }
        }
        assert_eq!(h, PINNED, "{h:#x}");
    }

    fn camera(w: u32, h: u32) -> Pinhole {
        Pinhole {
            width: w,
            height: h,
            fx: 0.6 * w as f64,
            fy: 0.6 * w as f64,
            cx: (w as f64 - 1.0) / 2.0 + 1.5,
            cy: (h as f64 - 1.0) / 2.0 - 0.5,
        }
    }

    /// z of the plane n . X = 1 (camera coordinates) on pixel (u, v)'s ray.
    fn plane_depth(k: &Pinhole, n: &Vector3<f64>, u: f64, v: f64) -> f64 {
        1.0 / n.dot(&Vector3::new((u - k.cx) / k.fx, (v - k.cy) / k.fy, 1.0))
    }

    #[test]
    fn a_turn_is_the_map_views_homography_and_moves_depth_into_the_turned_camera() {
        // A slanted plane seen by a camera; turned by 7 degrees, every pixel's depth must be
        // the plane's z in the turned camera (its normal turned by view_from_cam), to within
        // what nearest sampling moves (half a pixel of the plane's depth gradient).
        let (w, h) = (96u32, 48u32);
        let k = camera(w, h);
        let n = Vector3::new(0.02, -0.01, 0.1);
        let mut depth: Vec<f32> = (0..w * h)
            .map(|i| plane_depth(&k, &n, (i % w) as f64, (i / w) as f64) as f32)
            .collect();
        let rgb = RgbImage::from_fn(w, h, |x, y| Rgb([(x * 5) as u8, (y * 3) as u8, 40]));
        let mut turned = rgb.clone();
        let mut classes: Vec<u8> = (0..w * h).map(|i| ((i % w) / 10) as u8).collect();
        let yaw = 7.0;
        turn(&mut turned, &mut depth, &mut classes, &k, yaw);
        assert_eq!(turned, crate::map::views::yaw_view(&rgb, &k, None, yaw));
        let n_view = crate::map::views::view_from_cam(yaw) * n;
        let mut checked = 0;
        for v in 2..h - 2 {
            // The columns the source shows (a turn left brings new scene in on the left).
            for u in 24..w - 2 {
                let want = plane_depth(&k, &n_view, u as f64, v as f64);
                let got = depth[(v * w + u) as usize] as f64;
                assert!(
                    (got - want).abs() <= 0.01 * want,
                    "({u}, {v}): depth {got}, the plane's {want}"
                );
                checked += 1;
            }
        }
        assert!(checked > 2000);
        // The scene moved right: the left columns show what the source's left edge showed.
        assert!(classes[..w as usize].iter().take(10).all(|c| *c == 0));
        // The far plane stays the far plane; nearer depth never passes it.
        let (mut r1, mut d1, mut c1) = sample(64, 32);
        d1.iter_mut()
            .enumerate()
            .for_each(|(i, d)| *d = if i < 64 * 8 { FAR_M } else { FAR_M - 1.0 });
        turn(&mut r1, &mut d1, &mut c1, &camera(64, 32), 8.0);
        assert!(d1[..64 * 4].iter().all(|d| *d == FAR_M));
        assert!(d1.iter().all(|d| *d <= FAR_M));
        // No turn: nothing moves.
        let (mut r0, mut d0, mut c0) = sample(32, 16);
        let before = (r0.clone(), d0.clone(), c0.clone());
        turn(&mut r0, &mut d0, &mut c0, &camera(64, 32), 0.0);
        assert_eq!((r0, d0, c0), before);
    }

    #[test]
    fn the_turn_draws_from_a_stream_of_its_own() {
        // With the turn, each image is either the one augmented without it (turn not drawn)
        // or a turned one; about half are turned; without intrinsics nothing is turned.
        let (rgb, depth, classes) = sample(48, 24);
        let k = camera(96, 48);
        let run = |d: &Draws, cam: Option<&Pinhole>| {
            let (mut r, mut dd, mut c) = (rgb.clone(), depth.clone(), classes.clone());
            augment(&mut r, &mut dd, &mut c, d, cam);
            (r, dd, c)
        };
        let mut turned = 0;
        for key in 0..40 {
            let base = run(&plain(key, false), Some(&k));
            let yawed = Draws {
                yaw_deg: 8.0,
                ..plain(key, false)
            };
            assert_eq!(run(&yawed, None), base, "key {key}: no intrinsics, no turn");
            let out = run(&yawed, Some(&k));
            assert_eq!(out, run(&yawed, Some(&k)), "key {key}: not repeatable");
            turned += (out != base) as usize;
        }
        assert!((10..=30).contains(&turned), "{turned} of 40 turned");
    }

    #[test]
    fn warp_moves_labels_with_the_pixels() {
        // Identity warp changes nothing; a pure shift of one pixel moves everything by one.
        let (mut rgb, mut depth, mut classes) = sample(8, 4);
        let (r0, d0, c0) = (rgb.clone(), depth.clone(), classes.clone());
        warp(&mut rgb, &mut depth, &mut classes, 1.0, 0.0, [0.0, 0.0]);
        assert_eq!(
            (rgb.clone(), depth.clone(), classes.clone()),
            (r0.clone(), d0.clone(), c0.clone())
        );
        warp(&mut rgb, &mut depth, &mut classes, 1.0, 0.0, [1.0, 0.0]);
        for y in 0..4u32 {
            for x in 0..7u32 {
                let i = (y * 8 + x) as usize;
                assert_eq!(rgb.get_pixel(x, y), r0.get_pixel(x + 1, y));
                assert_eq!(depth[i], d0[i + 1]);
                assert_eq!(classes[i], c0[i + 1]);
            }
        }
    }
}
