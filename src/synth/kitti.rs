//! Synthetic KITTI odometry sequences: the "real" domain. The same kind of world as the
//! Virtual KITTI 2 output, seen through a real-looking camera (noise, blur, vignetting, harder
//! tone curve, colour cast) with other textures, so domain adaptation has a gap to close.
//! Layout: `dataset/sequences/NN/image_2/%06d.png`, `times.txt`, `calib.txt`, `dataset/poses/NN.txt`.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::condition::{Condition, Sensor};
use super::noise::{hash, unit};
use super::render::render;
use super::style::Style;
use super::world::{World, WorldParams};
use super::{camera_pose, on_route, run_parallel, save_png_rgb, Summary, SynthError};
use crate::atomic::write_atomic;
use crate::geom::{rows_from_isometry, Pinhole, Pose};

/// KITTI odometry sequences 00-02: 1241x376, f = 718.856.
pub fn intrinsics(width: u32, height: u32) -> Pinhole {
    Pinhole {
        width: 1241,
        height: 376,
        fx: 718.856,
        fy: 718.856,
        cx: 607.1928,
        cy: 185.2157,
    }
    .scaled(width, height)
}

pub const CAMERA_HEIGHT: f64 = 1.65;
pub const FRAME_RATE: f64 = 10.0;
pub const FRAME_STEP: f64 = 1.1;

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub seed: u64,
    pub sequences: usize,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    /// Each sequence in its own "real" style (`Style::real`: natural muted materials with
    /// weathering, a camera's cast) and its own camera (noise, blur, vignetting, tone curve
    /// drawn per sequence), so the unlabelled domain looks unlike the labelled worlds.
    pub styled: bool,
}

/// World, start and condition of sequence `i`.
fn sequence(seed: u64, i: usize, styled: bool) -> (World, f64, Condition) {
    let world = World::generate(
        seed.wrapping_mul(31).wrapping_add(1000 + i as u64),
        WorldParams::default(),
    );
    let start = world.route.length() * (i as f64 * 0.29 + 0.1).fract();
    let mut cond = if i % 3 == 2 {
        Condition::vkitti2("overcast").expect("overcast")
    } else {
        Condition::clear()
    };
    cond.texture_seed = 0xBEEF ^ seed;
    cond.grass = [0.33, 0.40, 0.19];
    if styled {
        cond.style = Style::real(hash(&[seed as i64, i as i64, 0x4EA1]));
    }
    (world, start, cond)
}

/// The camera of sequence `s`: KITTI-like (`Sensor::real`), with its noise, blur, vignetting,
/// contrast and cast drawn per sequence when styled.
fn sequence_sensor(seed: u64, s: usize, styled: bool) -> Sensor {
    let base = Sensor::real(seed ^ s as u64);
    if !styled {
        return base;
    }
    let d = |k: i64| unit(hash(&[seed as i64, s as i64, 0x5E45, k])) as f32;
    Sensor {
        noise: 0.01 + 0.025 * d(1),
        blur: 0.4 + 1.0 * d(2),
        vignetting: 0.15 + 0.4 * d(3),
        contrast: 1.0 + 0.4 * d(4),
        tint: [0.95 + 0.12 * d(5), 1.0, 0.82 + 0.15 * d(6)],
        gamma: 1.8 + 0.5 * d(7),
        ..base
    }
}

pub fn frame_pose(world: &World, start: f64, f: usize) -> Pose {
    let (p, h) = on_route(world, start + f as f64 * FRAME_STEP, 0.0);
    camera_pose(p, h, 0.0, CAMERA_HEIGHT)
}

pub fn generate(opts: &Options) -> Result<Summary, SynthError> {
    if opts.sequences == 0 || opts.frames == 0 || opts.width < 16 || opts.height < 16 {
        return Err(SynthError::Options(
            "--sequences and --frames must be at least 1, --width/--height at least 16".into(),
        ));
    }
    let cam = intrinsics(opts.width, opts.height);
    let seqs: Vec<(World, f64, Condition)> = (0..opts.sequences)
        .map(|i| sequence(opts.seed, i, opts.styled))
        .collect();
    let dataset = opts.out.join("dataset");
    let tasks: Vec<(usize, usize)> = (0..opts.sequences)
        .flat_map(|s| (0..opts.frames).map(move |f| (s, f)))
        .collect();
    run_parallel("synth kitti", &tasks, |&(s, f)| {
        let (world, start, cond) = &seqs[s];
        let frame = render(
            world,
            &cam,
            &frame_pose(world, *start, f),
            f as f64 / FRAME_RATE,
            cond,
            &sequence_sensor(opts.seed, s, opts.styled),
        );
        save_png_rgb(
            &dataset.join(format!("sequences/{s:02}/image_2/{f:06}.png")),
            &frame.rgb,
        )
    })?;
    for (s, (world, start, _)) in seqs.iter().enumerate() {
        let first_inv = frame_pose(world, *start, 0).inverse();
        let (mut times, mut poses) = (String::new(), String::new());
        for f in 0..opts.frames {
            let _ = writeln!(times, "{:e}", f as f64 / FRAME_RATE);
            // Camera-to-world with the world = the first camera frame.
            let rows = rows_from_isometry(&(first_inv * frame_pose(world, *start, f)));
            let _ = writeln!(
                poses,
                "{}",
                rows.iter()
                    .map(|v| format!("{v:e}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let k = format!(
            "{:e} 0 {:e} 0 0 {:e} {:e} 0 0 0 1 0",
            cam.fx, cam.cx, cam.fy, cam.cy
        );
        let calib = format!("P0: {k}\nP1: {k}\nP2: {k}\nP3: {k}\nTr: 1 0 0 0 0 1 0 0 0 0 1 0\n");
        let seq_dir = dataset.join(format!("sequences/{s:02}"));
        write_atomic(&seq_dir.join("times.txt"), times.as_bytes())?;
        write_atomic(&seq_dir.join("calib.txt"), calib.as_bytes())?;
        write_atomic(&dataset.join(format!("poses/{s:02}.txt")), poses.as_bytes())?;
    }
    Ok(Summary {
        images: tasks.len(),
        files: tasks.len() + 3 * opts.sequences,
    })
}
