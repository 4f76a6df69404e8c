//! Synthetic Oxford RobotCar traversals: the whole loop driven several times under different
//! conditions, each with raw GBRG Bayer images from `stereo/centre`, `stereo.timestamps` and a
//! `gps/ins.csv` at 50 Hz in the real header. INS world: northing = world y + N0, easting =
//! world x + E0, down = -z; yaw from north towards east. The INS rows are the INS unit's pose:
//! the rendered stereo camera's pose composed with the RobotCar SDK's extrinsics, so that the
//! reader (`data::robotcar`) gets the camera pose back. `vo/vo.csv` holds the drive's visual
//! odometry at the stereo rate ([`VO_RATE`]): the true relative poses of the vehicle frame
//! with a per-traversal scale error and yaw drift (`vo_rows`), as a real VO drifts.

use std::fmt::Write as _;
use std::path::PathBuf;

use image::GrayImage;

use super::condition::{Condition, Sensor};
use super::render::render;
use super::world::{World, WorldParams};
use super::{camera_pose, on_route, run_parallel, save_png_gray, Summary, SynthError};
use crate::atomic::write_atomic;
use crate::data::robotcar::{BayerPattern, INS_HEADER};
use crate::geom::Pinhole;

/// Oxford's UTM origin for the synthetic world (zone 30U).
pub const NORTHING0: f64 = 5_735_000.0;
pub const EASTING0: f64 = 619_000.0;
pub const CAMERA_HEIGHT: f64 = 1.5;
const INS_RATE: f64 = 50.0;
/// Rows per second of `vo/vo.csv` (the Bumblebee stereo camera's frame rate, about 16 Hz).
pub const VO_RATE: f64 = 16.0;
/// The visual odometry's scale error is drawn per traversal up to this (its distances are 1 +
/// e times the true ones), and its yaw drift up to [`VO_YAW_DRIFT`] degrees per second.
pub const VO_SCALE_ERROR: f64 = 0.03;
pub const VO_YAW_DRIFT: f64 = 0.3;
const CONDITIONS: [&str; 5] = ["overcast", "clone", "rain", "sunset", "fog"];
const STARTS: [&str; 5] = [
    "2014-12-09-13-21-02",
    "2015-05-19-14-06-38",
    "2014-11-25-09-18-32",
    "2015-08-28-09-50-22",
    "2014-12-16-18-44-24",
];
const START_US: [i64; 5] = [
    1_418_131_262_000_000,
    1_432_044_398_000_000,
    1_416_907_112_000_000,
    1_440_755_422_000_000,
    1_418_755_464_000_000,
];

/// The stereo narrow-left model (1280x960, f = 964.828979), scaled.
pub fn intrinsics(width: u32, height: u32) -> Pinhole {
    Pinhole {
        width: 1280,
        height: 960,
        fx: 964.828979,
        fy: 964.828979,
        cx: 643.788025,
        cy: 484.407990,
    }
    .scaled(width, height)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub seed: u64,
    pub traversals: usize,
    /// Images per traversal, evenly along the whole loop.
    pub frames: usize,
    pub width: u32,
    pub height: u32,
}

pub fn traversal_name(i: usize) -> String {
    STARTS
        .get(i)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("2016-01-{:02}-12-00-00", 1 + i))
}

/// Arc length (metres along the loop) of frame `f` of traversal `t`, `frames` evenly along
/// the loop: the first traversal's at the middle of each stretch, every other one's shifted by
/// a fraction of the spacing of its own (the golden ratio's, 0.38 for the second, 0.76 for
/// the third, ...), as a real drive's frames never fall where another drive's did: a query
/// traversal's frames lie between the reference's.
pub fn frame_arc(t: usize, f: usize, frames: usize, loop_len: f64) -> f64 {
    let phase = (0.5 + t as f64 * 0.381_966_011_250_105).fract();
    (f as f64 + phase) * loop_len / frames as f64
}

/// Speed (m/s) and start time of traversal `i`.
fn timing(i: usize) -> (f64, i64) {
    (
        8.0 + (i % 3) as f64,
        START_US
            .get(i)
            .copied()
            .unwrap_or(1_451_649_600_000_000 + i as i64 * 86_400_000_000),
    )
}

/// The synthetic world (x east, y north, z up) in the RobotCar INS world (local NED: x north =
/// world y + N0, y east = world x + E0, z down).
fn ned_from_synth() -> crate::geom::Pose {
    crate::geom::Pose::from_parts(
        nalgebra::Translation3::new(NORTHING0, EASTING0, 0.0),
        nalgebra::UnitQuaternion::from_matrix(&nalgebra::Matrix3::new(
            0.0, 1.0, 0.0, //
            1.0, 0.0, 0.0, //
            0.0, 0.0, -1.0,
        )),
    )
}

/// Bayer mosaic of an RGB image.
pub fn mosaic(rgb: &image::RgbImage, pattern: BayerPattern) -> GrayImage {
    GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| {
        image::Luma([rgb.get_pixel(x, y).0[pattern.channel(x, y)]])
    })
}

pub fn generate(opts: &Options) -> Result<Summary, SynthError> {
    if opts.traversals == 0 || opts.frames == 0 || opts.width < 16 || opts.height < 16 {
        return Err(SynthError::Options(
            "--traversals and --frames must be at least 1, --width/--height at least 16".into(),
        ));
    }
    let world = World::generate(opts.seed.wrapping_add(0x0CA2), WorldParams::default());
    let loop_len = world.route.length();
    let cam = intrinsics(opts.width, opts.height);
    let tasks: Vec<(usize, usize)> = (0..opts.traversals)
        .flat_map(|t| (0..opts.frames).map(move |f| (t, f)))
        .collect();
    let frame_time = |t: usize, f: usize| {
        let (speed, t0) = timing(t);
        let s = frame_arc(t, f, opts.frames, loop_len);
        (s, t0 + (s / speed * 1e6).round() as i64)
    };
    run_parallel("synth robotcar", &tasks, |&(t, f)| {
        let mut cond = Condition::vkitti2(CONDITIONS[t % CONDITIONS.len()]).expect("condition");
        cond.texture_seed = 0x0C ^ t as u64;
        let (s, ts) = frame_time(t, f);
        let (p, h) = on_route(&world, s, 0.0);
        let frame = render(
            &world,
            &cam,
            &camera_pose(p, h, 0.0, CAMERA_HEIGHT),
            s / 9.0,
            &cond,
            &Sensor {
                noise: 0.012,
                ..Sensor::clean()
            },
        );
        let dir = opts.out.join(traversal_name(t)).join("stereo/centre");
        save_png_gray(
            &dir.join(format!("{ts}.png")),
            &mosaic(&frame.rgb, BayerPattern::Gbrg),
        )
    })?;
    let ins_from_image = crate::data::robotcar::ins_from_image("stereo/centre")
        .expect("stereo/centre has published extrinsics");
    for t in 0..opts.traversals {
        let dir = opts.out.join(traversal_name(t));
        let mut stamps = String::new();
        // Three download chunks per traversal, numbered from 1 as the data set's.
        for f in 0..opts.frames {
            let _ = writeln!(stamps, "{} {}", frame_time(t, f).1, 1 + f * 3 / opts.frames);
        }
        write_atomic(&dir.join("stereo.timestamps"), stamps.as_bytes())?;
        // INS from one second before the first image to one second after the last.
        let (speed, t0) = timing(t);
        let end_s = loop_len + speed;
        let mut ins = format!("{INS_HEADER}\n");
        let n = ((end_s / speed + 1.0) * INS_RATE) as i64;
        for k in 0..=n {
            let time = k as f64 / INS_RATE - 1.0;
            let s = time * speed;
            let (p, h) = on_route(&world, s, 0.0);
            // The INS pose that, through the SDK's extrinsics, puts the stereo camera where the
            // frame was rendered: world_from_ins = world_from_image * inverse(ins_from_image).
            let world_from_image = ned_from_synth() * camera_pose(p, h, 0.0, CAMERA_HEIGHT);
            let world_from_ins = world_from_image * ins_from_image.inverse();
            let t = world_from_ins.translation.vector;
            let (northing, easting, down) = (t.x, t.y, t.z);
            let (roll, pitch, yaw) = world_from_ins.rotation.euler_angles();
            let lat = 51.75 + p[1] / 111_320.0;
            let lon = -1.26 + p[0] / (111_320.0 * 51.75f64.to_radians().cos());
            let _ = writeln!(
                ins,
                "{},INS_SOLUTION_GOOD,{lat:.9},{lon:.9},60.000,{northing:.4},{easting:.4},{down:.4},30U,{:.4},{:.4},0,{roll:.6},{pitch:.6},{yaw:.6}",
                t0 + (time * 1e6).round() as i64,
                speed * h.sin(),
                speed * h.cos(),
            );
        }
        write_atomic(&dir.join("gps/ins.csv"), ins.as_bytes())?;
        let vo = vo_rows(
            opts.seed ^ t as u64,
            (end_s / speed + 1.0, t0 - 1_000_000),
            |time| on_route(&world, (time - 1.0) * speed, 0.0),
        );
        write_atomic(&dir.join("vo/vo.csv"), vo.as_bytes())?;
    }
    Ok(Summary {
        images: tasks.len(),
        files: tasks.len() + 3 * opts.traversals,
    })
}

/// `vo/vo.csv` (header and rows, data::robotcar::VO_HEADER) of a drive of `span.0` seconds
/// from `span.1` µs, the vehicle at `at(seconds since the start)` (position, heading in the
/// synthetic world): the relative pose of each frame to the previous one in the vehicle frame
/// (x forward, y right, z down), its translation scaled by 1 + e and its yaw offset by the
/// drift rate times the frame interval (e and the rate drawn from `seed`).
fn vo_rows(seed: u64, span: (f64, i64), at: impl Fn(f64) -> ([f64; 2], f64)) -> String {
    let mut rng = super::noise::Rng::new(seed ^ 0x0D0E);
    let scale = 1.0 + rng.range(-VO_SCALE_ERROR, VO_SCALE_ERROR);
    let drift = rng.range(-VO_YAW_DRIFT, VO_YAW_DRIFT).to_radians() / VO_RATE;
    // world_from_vehicle in the synthetic world: x forward, y right, z down (a proper rotation).
    let vehicle = |time: f64| {
        let (p, h) = at(time);
        let forward = nalgebra::Vector3::new(h.cos(), h.sin(), 0.0);
        let right = nalgebra::Vector3::new(h.sin(), -h.cos(), 0.0);
        let down = nalgebra::Vector3::new(0.0, 0.0, -1.0);
        crate::geom::Pose::from_parts(
            nalgebra::Translation3::new(p[0], p[1], CAMERA_HEIGHT),
            nalgebra::UnitQuaternion::from_matrix(&nalgebra::Matrix3::from_columns(&[
                forward, right, down,
            ])),
        )
    };
    let stamp = |k: i64| span.1 + (k as f64 / VO_RATE * 1e6).round() as i64;
    let mut out = format!("{}\n", crate::data::robotcar::VO_HEADER);
    let n = (span.0 * VO_RATE) as i64;
    let mut prev = vehicle(0.0);
    for k in 1..=n {
        let next = vehicle(k as f64 / VO_RATE);
        let rel = prev.inverse() * next;
        let t = rel.translation.vector * scale;
        let (roll, pitch, yaw) = rel.rotation.euler_angles();
        let _ = writeln!(
            out,
            "{},{},{:.6},{:.6},{:.6},{roll:.8},{pitch:.8},{:.8}",
            stamp(k),
            stamp(k - 1),
            t.x,
            t.y,
            t.z,
            yaw + drift,
        );
        prev = next;
    }
    out
}
