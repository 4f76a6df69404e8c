//! A synthetic Extended CMU-Seasons slice: a reference traversal of a stretch of the loop as the
//! database, and traversals of the same stretch under other seasons and conditions (foliage,
//! snow, low sun, overcast, rain) as queries, each seen by two cameras (c0 looking 30 degrees
//! left of the driving direction, c1 30 degrees right: an assumption of this generator), with
//! the real file naming, intrinsics and pose files, and the query ground truth in camera-poses/.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::condition::{Condition, Sensor};
use super::noise::{hash, mix, unit};
use super::render::render_through;
use super::style::{self, Style};
use super::world::{World, WorldParams};
use super::{camera_pose, on_route, run_parallel, save_jpeg, Summary, SynthError};
use crate::atomic::write_atomic;
use crate::data::cmu_seasons::ImageName;
use crate::geom::{CmuPose, Pinhole, Pose};
use crate::map::views::Distortion;

/// The real cameras' pinhole parts (1024x768), scaled to the requested size.
pub fn intrinsics(camera: &str, width: u32, height: u32) -> Pinhole {
    let full = match camera {
        "c0" => Pinhole {
            width: 1024,
            height: 768,
            fx: 868.993378,
            fy: 866.063001,
            cx: 525.942323,
            cy: 420.042529,
        },
        _ => Pinhole {
            width: 1024,
            height: 768,
            fx: 873.382641,
            fy: 876.489513,
            cx: 529.324138,
            cy: 397.272397,
        },
    };
    full.scaled(width, height)
}

/// The lens the slice's images are drawn through (`synth cmu --lens`, a sequences file's
/// `generate: lens:`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lens {
    /// An ideal pinhole: `intrinsics.txt` gives k1 = k2 = p1 = p2 = 0.
    #[default]
    Pinhole,
    /// The real cameras' lenses: each camera's OPENCV distortion from the real `intrinsics.txt`
    /// (barrel, k1 about -0.4: a corner of the image shows what a pinhole would put 25% further
    /// out), written to the slice's `intrinsics.txt` as the real file has it.
    Cmu,
}

impl Lens {
    /// The names `--lens` takes.
    pub const NAMES: [&'static str; 2] = ["pinhole", "cmu"];

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "pinhole" => Some(Self::Pinhole),
            "cmu" => Some(Self::Cmu),
            _ => None,
        }
    }

    pub fn is_pinhole(&self) -> bool {
        *self == Self::Pinhole
    }

    /// `camera`'s distortion `[k1, k2, p1, p2, k3]` (k3 = 0: the real file has none).
    pub fn distortion(&self, camera: &str) -> Distortion {
        match (self, camera) {
            (Self::Pinhole, _) => [0.0; 5],
            (Self::Cmu, "c0") => [-0.399431, 0.188924, 0.000153, 0.000571, 0.0],
            (Self::Cmu, _) => [-0.397066, 0.181925, 0.000176, -0.000579, 0.0],
        }
    }
}

/// File of a synthetic slice naming each query image's condition.
pub const QUERY_CONDITIONS: &str = "query-conditions.txt";

pub const CAMERAS: [(&str, f64); 2] = [("c0", 30.0), ("c1", -30.0)];
pub const CAMERA_HEIGHT: f64 = 2.0;
/// Database reference date 2011-04-21 15:07:55 UTC (timestamps start with 1303, as the
/// reference code checks); query traversals on other days.
const DB_START_US: i64 = 1_303_398_475_046_031;
const QUERY_START_US: [i64; 5] = [
    1_291_724_590_000_000,
    1_311_871_200_000_000,
    1_320_421_500_000_000,
    1_329_900_000_000_000,
    1_284_900_000_000_000,
];

#[derive(Debug, Clone)]
pub struct Options {
    pub out: PathBuf,
    pub seed: u64,
    pub slice: u32,
    /// Database places along the stretch (one image per camera each).
    pub places: usize,
    /// Metres between database places.
    pub spacing: f64,
    /// Query conditions (names of `Condition::season`), default all but `reference`.
    pub conditions: Vec<String>,
    pub width: u32,
    pub height: u32,
    /// A reserved or test style (`style::NAMED`) every image is drawn in, each query
    /// condition graded its own way; None: the world as it is.
    pub style: Option<String>,
    /// Metres every query traversal drives left (+) of the database's line, on top of its own
    /// offset (`synth cmu --query-lateral`).
    pub query_lateral: f64,
    /// Standard deviation (degrees) of the vehicle's heading noise per query frame, clamped
    /// at +-2.5 sigma (`synth cmu --query-yaw-noise`).
    pub query_yaw_noise: f64,
    /// The lens every image is drawn through (`synth cmu --lens`).
    pub lens: Lens,
}

/// What `--query-lateral` (and a sequences file's `query_lateral`) takes.
pub const QUERY_LATERAL: &str = "metres, -5 to 5";
/// What `--query-yaw-noise` (and `query_yaw_noise`) takes.
pub const QUERY_YAW_NOISE: &str = "degrees, 0 to 30";

/// What `--spacing` (and a recipe's `spacing`) takes.
pub const SPACING: &str = "metres, more than 0 and at most 1000";

/// Whether a spacing between places is one [`SPACING`] allows.
pub fn spacing_ok(v: f64) -> bool {
    v.is_finite() && v > 0.0 && v <= 1000.0
}

/// Whether a query lateral offset is one [`QUERY_LATERAL`] allows.
pub fn query_lateral_ok(v: f64) -> bool {
    v.is_finite() && v.abs() <= 5.0
}

/// Whether a query heading noise is one [`QUERY_YAW_NOISE`] allows.
pub fn query_yaw_noise_ok(v: f64) -> bool {
    v.is_finite() && (0.0..=30.0).contains(&v)
}

/// A standard normal draw clamped to +-2.5, from a hash (Box-Muller).
fn normal_cut(h: u64) -> f64 {
    let u1 = 1.0 - unit(mix(h)); // (0, 1]
    let u2 = unit(mix(h ^ 0xA5A5_A5A5));
    ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()).clamp(-2.5, 2.5)
}

pub struct Shot {
    pub name: String,
    pub query: bool,
    pub condition: usize,
    pub cam_from_world: Pose,
    pub camera: &'static str,
    pub time_s: f64,
}

/// Every image of the slice, database first.
pub fn plan(world: &World, opts: &Options) -> Vec<Shot> {
    let start = world.route.length() * ((opts.slice as f64) * 0.137).fract();
    let mut shots = Vec::new();
    let traversals = std::iter::once(None).chain((0..opts.conditions.len()).map(Some));
    for (t, cond) in traversals.enumerate() {
        // Queries drive the stretch again, half a spacing off and a little off the lane centre.
        let (phase, lateral) = match cond {
            None => (0.0, 0.0),
            Some(c) => (
                (0.3 + 0.37 * c as f64).fract() * opts.spacing,
                0.35 * ((c % 3) as f64 - 1.0) + opts.query_lateral,
            ),
        };
        let t0 = match cond {
            None => DB_START_US,
            Some(c) => {
                QUERY_START_US[c % QUERY_START_US.len()]
                    + (c / QUERY_START_US.len()) as i64 * 86_400_000_000
            }
        };
        for i in 0..opts.places {
            let s = start + i as f64 * opts.spacing + phase;
            let (p, h) = on_route(world, s, lateral);
            let h = match cond {
                Some(_) if opts.query_yaw_noise > 0.0 => {
                    let draw = normal_cut(hash(&[opts.seed as i64, t as i64, i as i64, 0x5941]));
                    h + (opts.query_yaw_noise * draw).to_radians()
                }
                _ => h,
            };
            let ts = t0 + (i as i64) * 500_000;
            for (camera, yaw) in CAMERAS {
                let name = ImageName {
                    index: (t * opts.places + i) as u32,
                    camera: camera.to_string(),
                    timestamp_us: ts,
                }
                .format();
                let world_from_cam = camera_pose(p, h, yaw.to_radians(), CAMERA_HEIGHT);
                shots.push(Shot {
                    name,
                    query: cond.is_some(),
                    condition: cond.map_or(0, |c| c + 1),
                    cam_from_world: world_from_cam.inverse(),
                    camera,
                    time_s: i as f64 * 0.5,
                });
            }
        }
    }
    shots
}

fn pose_line(name: &str, p: &Pose) -> String {
    let c = CmuPose::from_cam_from_world(p);
    format!(
        "{name} {} {} {} {} {} {} {}",
        c.q_wxyz[0], c.q_wxyz[1], c.q_wxyz[2], c.q_wxyz[3], c.centre[0], c.centre[1], c.centre[2]
    )
}

/// Checks the options `generate` takes (nothing is written).
pub fn check(opts: &Options) -> Result<(), SynthError> {
    if opts.places == 0 {
        return Err(SynthError::Options(
            "places (--places): expected 1 or more, found 0".into(),
        ));
    }
    if !spacing_ok(opts.spacing) {
        return Err(SynthError::Options(format!(
            "spacing (--spacing): expected {SPACING}, found {}",
            opts.spacing
        )));
    }
    if opts.width < 16 || opts.height < 16 {
        return Err(SynthError::Options(format!(
            "image size (--width, --height): expected 16 pixels or more each, found {}x{}",
            opts.width, opts.height
        )));
    }
    // config/sequences.yaml reaches here without the command line's checks.
    if !query_lateral_ok(opts.query_lateral) {
        return Err(SynthError::Options(format!(
            "query lateral offset (--query-lateral, query_lateral): expected {QUERY_LATERAL}, \
             found {}",
            opts.query_lateral
        )));
    }
    if !query_yaw_noise_ok(opts.query_yaw_noise) {
        return Err(SynthError::Options(format!(
            "query heading noise (--query-yaw-noise, query_yaw_noise): expected \
             {QUERY_YAW_NOISE}, found {}",
            opts.query_yaw_noise
        )));
    }
    for (i, c) in opts.conditions.iter().enumerate() {
        if Condition::season(c).is_none() {
            return Err(SynthError::Options(format!(
                "conditions (--conditions): unknown condition `{c}`; expected one of {}",
                Condition::SEASONS.join(", ")
            )));
        }
        if opts.conditions[..i].contains(c) {
            return Err(SynthError::Options(format!(
                "conditions (--conditions): expected each condition once, found `{c}` twice"
            )));
        }
    }
    if let Some(name) = &opts.style {
        if Style::reserved(name).is_none() {
            return Err(SynthError::Options(format!(
                "style (--style): unknown style `{name}`; expected one of {}",
                style::NAMED.join(", ")
            )));
        }
    }
    Ok(())
}

pub fn generate(opts: &Options) -> Result<Summary, SynthError> {
    check(opts)?;
    let mut conds = vec![Condition::season("reference").expect("reference")];
    for c in &opts.conditions {
        conds.push(Condition::season(c).ok_or_else(|| {
            SynthError::Options(format!(
                "unknown condition `{c}`; expected one of {}",
                Condition::SEASONS.join(", ")
            ))
        })?);
    }
    if let Some(name) = &opts.style {
        let style = Style::reserved(name).ok_or_else(|| {
            SynthError::Options(format!(
                "unknown style `{name}`; expected one of {}",
                style::NAMED.join(", ")
            ))
        })?;
        for c in conds.iter_mut() {
            c.style = style.for_condition(&c.name);
        }
    }
    let world = World::generate(
        opts.seed.wrapping_add(0xC0FFEE + opts.slice as u64),
        WorldParams::default(),
    );
    let shots = plan(&world, opts);
    let slice_dir = opts.out.join(format!("slice{}", opts.slice));
    run_parallel("synth cmu", &shots, |shot| {
        let cam = intrinsics(shot.camera, opts.width, opts.height);
        let frame = render_through(
            &world,
            &cam,
            Some(&opts.lens.distortion(shot.camera)),
            &shot.cam_from_world.inverse(),
            shot.time_s,
            &conds[shot.condition],
            &Sensor {
                noise: 0.01,
                ..Sensor::clean()
            },
        );
        save_jpeg(
            &slice_dir
                .join(if shot.query { "query" } else { "database" })
                .join(&shot.name),
            &frame.rgb,
        )
    })?;
    let mut intr = String::from("# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, fx, fy, cx, cy, k1, k2, p1, p2\n");
    intr.push_str(match opts.lens {
        Lens::Pinhole => "# Synthetic: rendered without lens distortion.\n",
        Lens::Cmu => "# Synthetic: rendered through the real cameras' lens distortion.\n",
    });
    for (camera, _) in CAMERAS {
        let k = intrinsics(camera, opts.width, opts.height);
        let [k1, k2, p1, p2, _] = opts.lens.distortion(camera);
        let _ = writeln!(
            intr,
            "{camera} OPENCV {} {} {} {} {} {} {k1} {k2} {p1} {p2}",
            k.width, k.height, k.fx, k.fy, k.cx, k.cy
        );
    }
    write_atomic(&opts.out.join("intrinsics.txt"), intr.as_bytes())?;
    let (mut db, mut tests, mut truth) = (String::new(), String::new(), String::new());
    // Synthetic extra (the real data set has no such file): the condition of each query image,
    // so `evaluate` can report per condition.
    let mut conditions = String::from("# image condition\n");
    for shot in &shots {
        if shot.query {
            let _ = writeln!(
                conditions,
                "{} {}",
                shot.name,
                opts.conditions[shot.condition - 1]
            );
            let _ = writeln!(tests, "{}", shot.name);
            let _ = writeln!(truth, "{}", pose_line(&shot.name, &shot.cam_from_world));
        } else {
            let _ = writeln!(db, "{}", pose_line(&shot.name, &shot.cam_from_world));
        }
    }
    let n = opts.slice;
    write_atomic(
        &slice_dir.join(format!("ground-truth-database-images-slice{n}.txt")),
        db.as_bytes(),
    )?;
    write_atomic(
        &slice_dir.join(format!("test-images-slice{n}.txt")),
        tests.as_bytes(),
    )?;
    write_atomic(
        &slice_dir.join(format!("camera-poses/slice{n}-queries.txt")),
        truth.as_bytes(),
    )?;
    write_atomic(&slice_dir.join(QUERY_CONDITIONS), conditions.as_bytes())?;
    Ok(Summary {
        images: shots.len(),
        files: shots.len() + 5,
    })
}
