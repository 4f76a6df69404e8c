//! Synthetic Virtual KITTI 2: scenes driven along the world's loop, each in the ten variations
//! (same trajectory per scene in every variation; the camera rig yawed 15/30 degrees left or
//! right; fog, morning, overcast, rain and sunset change light, colour and visibility), written
//! in the official layout (and optionally the authors' repackaged one).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, RgbImage};

use super::condition::{Appearance, Condition, Sensor};
use super::render::{render_through, Frame};
use super::style::Style;
use super::world::{World, WorldParams};
use super::{
    camera_pose, on_route, run_parallel, save_jpeg, save_png_gray, save_png_gray16, save_png_rgb,
    Summary, SynthError,
};
use crate::atomic::write_atomic;
use crate::data::vkitti2::{
    Layout, Vkitti2Roots, CLASSES, COLORS_HEADER, EXTRINSIC_HEADER, FAR_VALUE, INTRINSIC_HEADER,
    VARIATIONS,
};
use crate::geom::{matrix_rows, Pinhole, Pose};
use crate::map::views::Distortion;

/// The real data set's scene names (more scenes continue from Scene30).
const SCENE_NAMES: [&str; 5] = ["Scene01", "Scene02", "Scene06", "Scene18", "Scene20"];
/// Camera_1 sits this far to the right of Camera_0 (VKITTI2 documentation).
pub const BASELINE: f64 = 0.532725;
pub const CAMERA_HEIGHT: f64 = 1.6;
/// Metres driven per frame (10 Hz at 36 km/h).
pub const FRAME_STEP: f64 = 1.0;
pub const FRAME_RATE: f64 = 10.0;

/// The real camera (1242x375, f = 725.0087); scaled to the requested size.
pub fn intrinsics(width: u32, height: u32) -> Pinhole {
    Pinhole {
        width: 1242,
        height: 375,
        fx: 725.0087,
        fy: 725.0087,
        cx: 620.5,
        cy: 187.0,
    }
    .scaled(width, height)
}

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub seed: u64,
    pub scenes: usize,
    pub frames: usize,
    pub width: u32,
    pub height: u32,
    /// 1 (Camera_0) or 2 (stereo).
    pub cameras: u8,
    /// Official layout (all modalities under `out`), or the authors' repackaged one
    /// (`out/vkitti_2.0.3_{rgb,depth,classSegmentation,textgt}`, class-index segmentation).
    pub layout: Layout,
    /// Fixed (Virtual KITTI 2's look) or wide (a season drawn per scene and variation).
    pub appearance: Appearance,
    /// The most a variation's drive lies beside the scene's lane, in metres ([`LATERAL`]): 0,
    /// Virtual KITTI 2's (every variation on one line); more, each scene and variation draws
    /// its own offset in [0, lateral] to the left of the lane, the same for all its frames, so
    /// that a positive pair sees one place from two spots on the road (up to `lateral` apart),
    /// as a query driven in another lane sees a map image.
    pub lateral: f64,
}

/// What `synth vkitti2 --lateral` takes.
pub const LATERAL: &str = "metres, 0 to 2.5";

/// Whether a largest sideways offset is one [`LATERAL`] allows. The offset goes left, towards
/// the centre line: the drive's lane is 1.9 m right of it, so at 2.5 m camera 0 is 0.6 m left
/// of the centre, clear of the oncoming lane's traffic (whose near side is 1 m or more left of
/// it); to the right, the parking strip starts 2.9 m from the centre, where a camera would
/// end up inside parked cars.
pub fn lateral_ok(v: f64) -> bool {
    v.is_finite() && (0.0..=2.5).contains(&v)
}

pub fn scene_name(i: usize) -> String {
    SCENE_NAMES
        .get(i)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("Scene{}", 30 + i))
}

/// Yaw of the camera rig in a variation (radians, positive left).
pub fn variation_yaw(variation: &str) -> f64 {
    let deg = match variation {
        "15-deg-left" => 15.0,
        "15-deg-right" => -15.0,
        "30-deg-left" => 30.0,
        "30-deg-right" => -30.0,
        _ => 0.0,
    };
    f64::to_radians(deg)
}

/// A scene: its world and where along the loop its drive starts.
pub struct SceneSpec {
    pub world: World,
    pub start: f64,
}

pub fn scene_spec(seed: u64, scene: usize) -> SceneSpec {
    scene_spec_with(seed, scene, Appearance::Fixed)
}

/// A scene's world; `Appearance::Random` also draws its building heights and tree sizes (the
/// same in every variation: the place's geometry is fixed).
pub fn scene_spec_with(seed: u64, scene: usize, appearance: Appearance) -> SceneSpec {
    let mut params = WorldParams::default();
    if appearance == Appearance::Random {
        let key = super::noise::hash(&[seed as i64, scene as i64, 0x5CA1E]);
        let d = |i: i64| super::noise::unit(super::noise::hash(&[key as i64, i]));
        params.building_height = 0.6 + 1.0 * d(1);
        params.tree_size = 0.6 + 0.9 * d(2);
        params.block = 85.0 + 50.0 * d(3);
    }
    let world = World::generate(seed.wrapping_add(scene as u64 * 7919), params);
    let start = world.route.length() * (scene as f64 * 0.37).fract();
    SceneSpec { world, start }
}

/// Where the camera sits on the vehicle and how wide it sees: Virtual KITTI 2's rig by default;
/// `Appearance::Random` draws one per scene and variation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rig {
    /// Metres above the ground.
    pub height: f64,
    /// Radians, positive looking up.
    pub pitch: f64,
    /// Multiplier of the focal length (field of view).
    pub focal: f64,
    /// Metres to the left (positive) of the scene's lane, the same for every frame.
    pub lateral: f64,
    /// The lens: OpenCV's k1, k2, p1, p2, k3 (all zero: an ideal pinhole, as Virtual KITTI 2's
    /// own images). The intrinsics file stays a pinhole's, as the real data set's has no
    /// distortion fields; depth and classes are drawn through the same lens, so every modality
    /// still agrees pixel by pixel.
    pub lens: Distortion,
}

impl Default for Rig {
    fn default() -> Self {
        Self {
            height: CAMERA_HEIGHT,
            pitch: 0.0,
            focal: 1.0,
            lateral: 0.0,
            lens: [0.0; 5],
        }
    }
}

/// A lens drawn from `d` (uniform draws in [0, 1) by index): two in five an ideal pinhole,
/// the others radial distortion from a mild pincushion (k1 = 0.05) to a barrel stronger than
/// Extended CMU-Seasons' cameras (k1 = -0.45; theirs is about -0.4), k2 following k1 as in
/// those cameras (about -0.47 k1, so a barrel never folds back inside the image: 9 k1^2 < 20
/// k2; a pincushion, k2 = 0, never folds), and a tangential part of up to 0.001.
fn random_lens(d: impl Fn(i64) -> f64) -> Distortion {
    if d(6) < 0.4 {
        return [0.0; 5];
    }
    let k1 = -0.45 + 0.5 * d(7);
    let k2 = (-0.47 * k1).max(0.0) * (0.8 + 0.4 * d(8));
    let tangential = |i: i64| 0.001 * (2.0 * d(i) - 1.0);
    [k1, k2, tangential(9), tangential(10), 0.0]
}

/// Camera-to-world pose of `camera` at `frame` in a variation.
pub fn frame_pose(spec: &SceneSpec, frame: usize, camera: u8, variation: &str) -> Pose {
    frame_pose_with(spec, frame, camera, variation, &Rig::default())
}

/// Camera-to-world pose of `camera` at `frame` in a variation, on `rig`.
pub fn frame_pose_with(
    spec: &SceneSpec,
    frame: usize,
    camera: u8,
    variation: &str,
    rig: &Rig,
) -> Pose {
    let (p, h) = on_route(
        &spec.world,
        spec.start + frame as f64 * FRAME_STEP,
        rig.lateral,
    );
    let mut cam0 = camera_pose(p, h, variation_yaw(variation), rig.height);
    if rig.pitch != 0.0 {
        // Camera x points right and y down: a positive rotation about x turns the optical axis
        // (z) towards -y, up.
        cam0.rotation *=
            nalgebra::UnitQuaternion::from_axis_angle(&nalgebra::Vector3::x_axis(), rig.pitch);
    }
    if camera == 0 {
        return cam0;
    }
    let right = cam0.rotation * nalgebra::Vector3::x();
    Pose::from_parts(
        nalgebra::Translation3::from(cam0.translation.vector + right * BASELINE),
        cam0.rotation,
    )
}

/// The light, weather and season of a scene's variation.
pub fn variation_condition(opts: &Options, scene: usize, variation: &str) -> Condition {
    variation_look(opts, scene, variation).condition
}

/// How a scene's variation is drawn: light, weather, season and style; the camera's
/// development; the rig.
pub struct Look {
    pub condition: Condition,
    pub sensor: Sensor,
    pub rig: Rig,
}

pub fn variation_look(opts: &Options, scene: usize, variation: &str) -> Look {
    let v = VARIATIONS.iter().position(|&x| x == variation).unwrap_or(0);
    let key = |salt: i64| super::noise::hash(&[opts.seed as i64, scene as i64, v as i64, salt]);
    let mut look = appearance_look(opts, variation, key);
    if opts.lateral > 0.0 {
        // Its own draw, so that --lateral moves the camera and nothing else of the look.
        look.rig.lateral = opts.lateral * super::noise::unit(key(0x1A7E));
    }
    look
}

fn appearance_look(opts: &Options, variation: &str, key: impl Fn(i64) -> u64) -> Look {
    let cond = Condition::vkitti2(variation).expect("known variation");
    match opts.appearance {
        Appearance::Fixed => Look {
            condition: cond,
            sensor: Sensor::clean(),
            rig: Rig::default(),
        },
        Appearance::Wide => Look {
            condition: cond.widened(key(0xA99E)),
            sensor: Sensor::clean(),
            rig: Rig::default(),
        },
        Appearance::Random => {
            let mut condition = cond.widened(key(0xA99E));
            condition.style = Style::training(key(0x57F1E));
            // Fog for about one in six on top of the variation's own.
            let k = key(0xF06);
            let d = |i: i64| super::noise::unit(super::noise::hash(&[k as i64, i])) as f32;
            if d(1) < 0.17 {
                condition.fog_density = condition.fog_density.max(0.004 + 0.03 * d(2) as f64);
            }
            let rig = Rig {
                height: 1.2 + 1.0 * d(3) as f64,
                pitch: (-8.0 + 12.0 * d(4) as f64).to_radians(),
                focal: 0.75 + 0.55 * d(5) as f64,
                lateral: 0.0,
                lens: random_lens(|i| d(i) as f64),
            };
            Look {
                condition,
                sensor: Sensor::randomized(key(0x5E45)),
                rig,
            }
        }
    }
}

/// Class colours of a frame.
pub fn class_colours(frame: &Frame) -> RgbImage {
    RgbImage::from_fn(frame.width, frame.height, |x, y| {
        image::Rgb(CLASSES[frame.class[(y * frame.width + x) as usize] as usize].1)
    })
}

/// z-depth in centimetres, 65535 at or beyond the far plane.
pub fn depth_png(frame: &Frame) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(frame.width, frame.height, |x, y| {
        let z = frame.depth[(y * frame.width + x) as usize];
        Luma([if z.is_finite() {
            (z * 100.0).round().min(FAR_VALUE as f32) as u16
        } else {
            FAR_VALUE
        }])
    })
}

pub fn generate(opts: &Options) -> Result<Summary, SynthError> {
    if !(1..=2).contains(&opts.cameras) {
        return Err(SynthError::Options(format!(
            "--cameras: expected 1 or 2, found {}",
            opts.cameras
        )));
    }
    if opts.scenes == 0 || opts.frames == 0 || opts.width < 16 || opts.height < 16 {
        return Err(SynthError::Options(
            "--scenes and --frames must be at least 1, --width/--height at least 16".into(),
        ));
    }
    if !lateral_ok(opts.lateral) {
        return Err(SynthError::Options(format!(
            "--lateral: expected {LATERAL}, found {}",
            opts.lateral
        )));
    }
    let specs: Vec<SceneSpec> = (0..opts.scenes)
        .map(|i| scene_spec_with(opts.seed, i, opts.appearance))
        .collect();
    let roots = match opts.layout {
        Layout::Official => Vkitti2Roots::official(&opts.out),
        Layout::Dasgil => Vkitti2Roots::dasgil(&opts.out),
    };
    let cam = intrinsics(opts.width, opts.height);
    let mut tasks = Vec::new();
    for s in 0..opts.scenes {
        for var in VARIATIONS {
            for f in 0..opts.frames {
                for c in 0..opts.cameras {
                    tasks.push((s, var, f, c));
                }
            }
        }
    }
    run_parallel("synth vkitti2", &tasks, |&(s, var, f, c)| {
        let look = variation_look(opts, s, var);
        let pose = frame_pose_with(&specs[s], f, c, var, &look.rig);
        let frame = render_through(
            &specs[s].world,
            &rig_intrinsics(&cam, &look.rig),
            Some(&look.rig.lens),
            &pose,
            f as f64 / FRAME_RATE,
            &look.condition,
            &look.sensor,
        );
        write_frame(&roots, &scene_name(s), var, f, c, &frame)
    })?;
    for (s, spec) in specs.iter().enumerate() {
        for var in VARIATIONS {
            write_text(
                &roots.textgt.join(scene_name(s)).join(var),
                s,
                spec,
                var,
                opts,
                &cam,
            )?;
        }
    }
    let images = tasks.len();
    Ok(Summary {
        images,
        files: images * 3 + opts.scenes * VARIATIONS.len() * 3,
    })
}

fn write_frame(
    roots: &Vkitti2Roots,
    scene: &str,
    var: &str,
    f: usize,
    c: u8,
    frame: &Frame,
) -> Result<(), SynthError> {
    let rel = Path::new(scene).join(var).join("frames");
    let cam = format!("Camera_{c}");
    let modality =
        |root: &Path, kind: &str, name: String| root.join(&rel).join(kind).join(&cam).join(name);
    save_jpeg(
        &modality(&roots.rgb, "rgb", format!("rgb_{f:05}.jpg")),
        &frame.rgb,
    )?;
    save_png_gray16(
        &modality(&roots.depth, "depth", format!("depth_{f:05}.png")),
        &depth_png(frame),
    )?;
    let seg_path = modality(
        &roots.seg,
        "classSegmentation",
        format!("classgt_{f:05}.png"),
    );
    match roots.layout {
        Layout::Official => save_png_rgb(&seg_path, &class_colours(frame)),
        Layout::Dasgil => {
            let index = GrayImage::from_raw(frame.width, frame.height, frame.class.clone())
                .expect("one class per pixel");
            save_png_gray(&seg_path, &index)
        }
    }
}

/// The camera with the rig's focal multiplier.
fn rig_intrinsics(cam: &Pinhole, rig: &Rig) -> Pinhole {
    Pinhole {
        fx: cam.fx * rig.focal,
        fy: cam.fy * rig.focal,
        ..*cam
    }
}

fn write_text(
    dir: &Path,
    scene: usize,
    spec: &SceneSpec,
    var: &str,
    opts: &Options,
    cam: &Pinhole,
) -> Result<(), SynthError> {
    let (mut intr, mut extr) = (
        format!("{INTRINSIC_HEADER}\n"),
        format!("{EXTRINSIC_HEADER}\n"),
    );
    let rig = variation_look(opts, scene, var).rig;
    let cam = rig_intrinsics(cam, &rig);
    for f in 0..opts.frames {
        for c in 0..opts.cameras {
            let _ = writeln!(intr, "{f} {c} {} {} {} {}", cam.fx, cam.fy, cam.cx, cam.cy);
            let m = matrix_rows(&frame_pose_with(spec, f, c, var, &rig).inverse());
            let row: Vec<String> = m.iter().map(|v| v.to_string()).collect();
            let _ = writeln!(extr, "{f} {c} {}", row.join(" "));
        }
    }
    // The named classes, then Undefined last (as in one of the two published variants).
    let mut colors = format!("{COLORS_HEADER}\n");
    for (name, [r, g, b]) in CLASSES.iter().skip(1).chain(CLASSES.iter().take(1)) {
        let _ = writeln!(colors, "{name} {r} {g} {b}");
    }
    write_atomic(&dir.join("intrinsic.txt"), intr.as_bytes())?;
    write_atomic(&dir.join("extrinsic.txt"), extr.as_bytes())?;
    write_atomic(&dir.join("colors.txt"), colors.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::views::{fold_r2, undistort};
    use crate::synth::render::render;

    /// Random looks' lenses: about two in five pinholes, k1 from -0.45 to 0.05, and no lens
    /// folds back inside the widest image the rig draws (focal 0.75): every pixel has a ray.
    #[test]
    fn random_lenses_span_pinhole_to_strong_barrel_and_never_fold_inside_the_image() {
        let cam = rig_intrinsics(
            &intrinsics(828, 250),
            &Rig {
                focal: 0.75,
                ..Rig::default()
            },
        );
        let corner = ((0.0 - cam.cx) / cam.fx, (0.0 - cam.cy) / cam.fy);
        let (mut pinholes, mut k1s) = (0, Vec::new());
        for key in 0..400i64 {
            let d = |i: i64| super::super::noise::unit(super::super::noise::hash(&[key, i]));
            let lens = random_lens(d);
            if lens == [0.0; 5] {
                pinholes += 1;
                continue;
            }
            k1s.push(lens[0]);
            assert!((-0.45..=0.05).contains(&lens[0]), "{lens:?}");
            assert!(lens[2].abs() <= 1e-3 && lens[3].abs() <= 1e-3);
            assert!(fold_r2(&lens).is_none(), "{lens:?} folds");
            assert!(undistort(&lens, corner.0, corner.1).is_some(), "{lens:?}");
        }
        assert!((120..200).contains(&pinholes), "{pinholes} pinholes of 400");
        let barrels = k1s.iter().filter(|&&k| k < -0.3).count();
        assert!(barrels > 50, "{barrels} lenses with k1 < -0.3");
    }

    #[test]
    fn a_positive_pitch_looks_up_and_the_rig_sets_height_and_focal_length() {
        let spec = scene_spec(3, 0);
        let rig = Rig {
            height: 2.0,
            pitch: 5f64.to_radians(),
            focal: 1.2,
            lateral: 0.0,
            lens: [0.0; 5],
        };
        let flat = frame_pose(&spec, 0, 0, "clone");
        let up = frame_pose_with(&spec, 0, 0, "clone", &rig);
        let forward = |p: &Pose| p.rotation * nalgebra::Vector3::z();
        assert!(forward(&flat).z.abs() < 1e-9);
        assert!(
            (forward(&up).z - 5f64.to_radians().sin()).abs() < 1e-9,
            "optical axis {:?}",
            forward(&up)
        );
        assert!((up.translation.vector.z - 2.0).abs() < 1e-12);
        let cam = rig_intrinsics(&intrinsics(828, 250), &rig);
        assert!((cam.fx - 1.2 * intrinsics(828, 250).fx).abs() < 1e-9);
    }

    #[test]
    fn random_looks_change_colours_but_never_depth_or_classes() {
        let opts = Options {
            out: PathBuf::new(),
            seed: 11,
            scenes: 1,
            frames: 1,
            width: 96,
            height: 32,
            cameras: 1,
            layout: Layout::Official,
            appearance: Appearance::Random,
            lateral: 0.0,
        };
        let spec = scene_spec_with(opts.seed, 0, opts.appearance);
        let cam = intrinsics(96, 32);
        let pose = frame_pose(&spec, 0, 0, "clone");
        let mut styled = 0;
        let base = render(
            &spec.world,
            &cam,
            &pose,
            0.0,
            &Condition::clear(),
            &Sensor::clean(),
        );
        for var in VARIATIONS {
            let look = variation_look(&opts, 0, var);
            // Same leaves (bare trees let rays through) to compare the geometry alone.
            let cond = Condition {
                foliage: Condition::clear().foliage,
                ..look.condition.clone()
            };
            let frame = render(&spec.world, &cam, &pose, 0.0, &cond, &look.sensor);
            assert_eq!(frame.class, base.class, "{var}: classes");
            assert_eq!(frame.depth, base.depth, "{var}: depth");
            if !cond.style.is_none() {
                styled += 1;
                assert_ne!(frame.rgb, base.rgb, "{var}: styled but unchanged");
            }
        }
        assert!(styled >= 6, "{styled} of 10 variations styled");
    }

    #[test]
    fn lateral_moves_each_variation_sideways_by_its_own_draw_and_changes_nothing_else() {
        let opts = |lateral| Options {
            out: PathBuf::new(),
            seed: 5,
            scenes: 4,
            frames: 3,
            width: 96,
            height: 32,
            cameras: 2,
            layout: Layout::Official,
            appearance: Appearance::Random,
            lateral,
        };
        let (still, moved) = (opts(0.0), opts(2.0));
        let mut offsets = Vec::new();
        for scene in 0..still.scenes {
            let spec = scene_spec_with(still.seed, scene, still.appearance);
            for var in VARIATIONS {
                let (a, b) = (
                    variation_look(&still, scene, var),
                    variation_look(&moved, scene, var),
                );
                assert_eq!(a.condition, b.condition, "{var}: the light");
                assert_eq!(a.sensor, b.sensor, "{var}: the sensor");
                assert_eq!(a.rig.lateral, 0.0);
                assert_eq!(
                    Rig {
                        lateral: 0.0,
                        ..b.rig
                    },
                    a.rig,
                    "{var}: the rig"
                );
                let d = b.rig.lateral;
                assert!(
                    (0.0..=2.0).contains(&d),
                    "{var}: {d} m, left of the lane only"
                );
                offsets.push(d);
                for f in 0..still.frames {
                    for c in 0..2 {
                        let (p, q) = (
                            frame_pose_with(&spec, f, c, var, &a.rig),
                            frame_pose_with(&spec, f, c, var, &b.rig),
                        );
                        assert_eq!(p.rotation, q.rotation);
                        // Sideways: along the route's left normal, which is horizontal and
                        // square to the direction driven.
                        let (_, h) = on_route(&spec.world, spec.start + f as f64 * FRAME_STEP, 0.0);
                        let left = nalgebra::Vector3::new(-h.sin(), h.cos(), 0.0);
                        let shift = q.translation.vector - p.translation.vector;
                        assert!(
                            (shift - left * d).norm() < 1e-9,
                            "{var} frame {f}: {shift:?}"
                        );
                    }
                }
            }
        }
        // About the whole range, each variation its own.
        let (lo, hi) = offsets
            .iter()
            .fold((2f64, 0f64), |(lo, hi), &d| (lo.min(d), hi.max(d)));
        assert!(lo < 0.5 && hi > 1.5, "offsets span {lo}..{hi}");
        let mut distinct = offsets.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), offsets.len());
        assert!(!lateral_ok(2.6) && !lateral_ok(-0.1) && !lateral_ok(f64::NAN) && lateral_ok(0.0));
    }
}
