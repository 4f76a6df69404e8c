//! Oxford RobotCar traversals (place-recognition evaluation).
//!
//! `<traversal>/<camera>/<timestamp>.png` raw Bayer images (`stereo/centre`, `stereo/left`,
//! `stereo/right`: GBRG; `mono_left`, `mono_right`, `mono_rear`: RGGB), `<traversal>/stereo.timestamps`
//! or `<traversal>/<mono>.timestamps` (`<µs> <chunk>` per line), and `gps/ins.csv` (header below),
//! whose poses are interpolated at image timestamps (linear position, slerp rotation).

use std::path::{Path, PathBuf};

use image::{GrayImage, RgbImage};

use super::error::DataError;
use super::sequence::{Decode, PosedImage};
use super::text::TextFile;
use crate::geom::{interpolate, robotcar_world_from_vehicle, Pose};

/// `gps/ins.csv` header, verbatim.
pub const INS_HEADER: &str = "timestamp,ins_status,latitude,longitude,altitude,northing,easting,down,utm_zone,velocity_north,velocity_east,velocity_down,roll,pitch,yaw";

/// Colour filter layouts, named by the top-left 2x2 block read row by row (the names of
/// sensor_msgs/image_encodings: `bayer_rggb8`, `bayer_bggr8`, `bayer_gbrg8`, `bayer_grbg8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BayerPattern {
    Gbrg,
    Rggb,
    Bggr,
    Grbg,
}

impl BayerPattern {
    pub const ALL: [BayerPattern; 4] = [Self::Rggb, Self::Bggr, Self::Gbrg, Self::Grbg];

    /// Which channel (0 R, 1 G, 2 B) pixel (x, y) samples.
    pub fn channel(self, x: u32, y: u32) -> usize {
        let (ox, oy) = ((x & 1) as usize, (y & 1) as usize);
        let block = match self {
            Self::Gbrg => [[1, 2], [0, 1]],
            Self::Rggb => [[0, 1], [1, 2]],
            Self::Bggr => [[2, 1], [1, 0]],
            Self::Grbg => [[1, 0], [2, 1]],
        };
        block[oy][ox]
    }

    /// `rggb`, `bggr`, `gbrg` or `grbg`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gbrg => "gbrg",
            Self::Rggb => "rggb",
            Self::Bggr => "bggr",
            Self::Grbg => "grbg",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The pattern the RobotCar SDK uses for a camera folder.
    pub fn for_camera(camera: &str) -> Self {
        if camera.starts_with("stereo") {
            Self::Gbrg
        } else {
            Self::Rggb
        }
    }
}

/// Bilinear demosaicing: each missing channel is the mean of that channel's samples in the
/// 3x3 neighbourhood (edges clamped).
pub fn demosaic(raw: &GrayImage, pattern: BayerPattern) -> RgbImage {
    let (w, h) = raw.dimensions();
    RgbImage::from_fn(w, h, |x, y| {
        let mut sum = [0u32; 3];
        let mut n = [0u32; 3];
        let own = pattern.channel(x, y);
        for dy in -1i64..=1 {
            for dx in -1i64..=1 {
                let (sx, sy) = (x as i64 + dx, y as i64 + dy);
                if sx < 0 || sy < 0 || sx >= w as i64 || sy >= h as i64 {
                    continue;
                }
                let c = pattern.channel(sx as u32, sy as u32);
                sum[c] += raw.get_pixel(sx as u32, sy as u32).0[0] as u32;
                n[c] += 1;
            }
        }
        let mut px = [0u8; 3];
        for c in 0..3 {
            px[c] = if c == own {
                raw.get_pixel(x, y).0[0]
            } else {
                // Rounded mean; every 3x3 window holds each channel at least once.
                (sum[c] + n[c] / 2).checked_div(n[c]).unwrap_or(0) as u8
            };
        }
        image::Rgb(px)
    })
}

/// One INS sample: the pose of the INS unit in the local NED world.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InsSample {
    pub timestamp_us: i64,
    pub world_from_ins: Pose,
}

/// The RobotCar SDK's `extrinsics/<sensor>.txt` values (`x y z roll pitch yaw`, metres and
/// radians; ori-mrg/robotcar-dataset-sdk), see ../shared/reference/dataset-formats.md 4.x.
pub const INS_EXTRINSICS: [f64; 6] = [-1.7132, 0.1181, 1.1948, -0.0125, 0.0400, 0.0050];

/// The camera folders with published extrinsics (the ones a traversal is read from).
pub const CAMERAS: [&str; 6] = [
    "stereo/centre",
    "stereo/left",
    "stereo/right",
    "mono_left",
    "mono_right",
    "mono_rear",
];

/// The extrinsics of a camera folder (`stereo/centre`, `mono_left`, ...); None if unknown.
pub fn camera_extrinsics(camera: &str) -> Option<[f64; 6]> {
    match camera.split('/').next().unwrap_or(camera) {
        "stereo" => Some([0.0; 6]),
        "mono_left" => Some([-0.0905, 1.6375, 0.2803, 0.2079, -0.2339, 1.2321]),
        "mono_right" => Some([-0.2587, -1.6810, 0.3226, -0.1961, -0.2469, -1.2675]),
        "mono_rear" => Some([-2.0582, 0.0894, 0.3675, -0.0119, -0.2498, 3.1283]),
        _ => None,
    }
}

/// The SDK's `build_se3_transform`: translation (x, y, z), rotation Rz(yaw) Ry(pitch) Rx(roll).
fn se3(x: &[f64; 6]) -> Pose {
    robotcar_world_from_vehicle(x[0], x[1], x[2], x[3], x[4], x[5])
}

/// ins_from_image: from the optical (image) frame of `camera` (x right, y down, z forward) to
/// the INS frame. The SDK composes `G_camera_posesource = se3(<camera>.txt) * se3(ins.txt)`
/// (INS to camera, the camera frame x forward, y right, z down); the image frame maps to the
/// camera frame by the axis permutation x_cam = z_img, y_cam = x_img, z_cam = y_img.
pub fn ins_from_image(camera: &str) -> Option<Pose> {
    let camera_from_ins = se3(&camera_extrinsics(camera)?) * se3(&INS_EXTRINSICS);
    let camera_from_image = Pose::from_parts(
        nalgebra::Translation3::identity(),
        nalgebra::UnitQuaternion::from_matrix(&nalgebra::Matrix3::new(
            0.0, 0.0, 1.0, //
            1.0, 0.0, 0.0, //
            0.0, 1.0, 0.0,
        )),
    );
    Some(camera_from_ins.inverse() * camera_from_image)
}

pub fn read_ins(path: &Path) -> Result<Vec<InsSample>, DataError> {
    let f = TextFile::read(path)?;
    f.expect_header(INS_HEADER)?;
    let mut out: Vec<InsSample> = Vec::new();
    for line in f.lines(Some(','), None).skip(1) {
        line.expect_columns(15)?;
        let ts: i64 = line.parse(0, "timestamp", "microseconds")?;
        let [n, e, d] = line.floats(5, &["northing", "easting", "down"])?;
        let [r, p, y] = line.floats(12, &["roll", "pitch", "yaw"])?;
        if let Some(prev) = out.last() {
            if ts <= prev.timestamp_us {
                return Err(line.field_error(
                    "timestamp",
                    &format!("increasing (> {})", prev.timestamp_us),
                    line.fields[0],
                ));
            }
        }
        out.push(InsSample {
            timestamp_us: ts,
            world_from_ins: robotcar_world_from_vehicle(n, e, d, r, p, y),
        });
    }
    if out.len() < 2 {
        return Err(DataError::layout(
            path,
            "fewer than 2 INS samples: nothing to interpolate",
        ));
    }
    Ok(out)
}

/// Where a traversal keeps its visual odometry.
pub const VO_FILE: &str = "vo/vo.csv";

/// `vo/vo.csv` header as the RobotCar SDK's files carry it. The SDK skips this line unread
/// (`interpolate_poses.py`), and so does [`read_vo`]: only its place and width are checked.
pub const VO_HEADER: &str = "source_timestamp,destination_timestamp,x,y,z,roll,pitch,yaw";

/// A traversal's visual odometry (`vo/vo.csv`), chained into positions: each row is the pose
/// of the frame at `source_timestamp` relative to the one at `destination_timestamp` (the
/// previous frame), `x y z` metres and `roll pitch yaw` radians in the stereo camera's frame (x
/// forward, y right, z down), composed as the SDK's `build_se3_transform` (Rz Ry Rx). Chained
/// in row order from the identity at the first row's destination time, as the SDK's
/// `interpolate_vo_poses` does. Returns (µs, position in metres in the first frame's frame).
/// Errors name the file, line and field: a row that is not 8 numbers, a destination timestamp
/// not before its source, a source timestamp not after the previous row's, or a file with no
/// row. A row whose destination is not the previous row's source (a dropped frame) is chained
/// as the SDK chains it.
pub fn read_vo(path: &Path) -> Result<Vec<(i64, [f64; 3])>, DataError> {
    let f = TextFile::read(path)?;
    let mut lines = f.lines(Some(','), None);
    let header = lines.next().ok_or_else(|| {
        DataError::layout(
            path,
            format!("empty: expected the header `{VO_HEADER}` and one row per pair of frames"),
        )
    })?;
    header.expect_columns(8)?;
    if header.fields[0].parse::<f64>().is_ok() {
        return Err(header.field_error(
            "header",
            &format!("the header line `{VO_HEADER}` (the SDK skips the first line)"),
            header.raw,
        ));
    }
    let mut world_from_frame = Pose::identity();
    let mut out: Vec<(i64, [f64; 3])> = Vec::new();
    for line in lines {
        line.expect_columns(8)?;
        let source: i64 = line.parse(0, "source_timestamp", "microseconds")?;
        let destination: i64 = line.parse(1, "destination_timestamp", "microseconds")?;
        let rel = line.floats(2, &["x", "y", "z", "roll", "pitch", "yaw"])?;
        if destination >= source {
            return Err(line.field_error(
                "destination_timestamp",
                &format!("the previous frame's time, before this row's source_timestamp {source}"),
                line.fields[1],
            ));
        }
        if out.is_empty() {
            out.push((destination, [0.0; 3]));
        }
        if let Some(&(prev, _)) = out.last() {
            if source <= prev {
                return Err(line.field_error(
                    "source_timestamp",
                    &format!("increasing (> {prev})"),
                    line.fields[0],
                ));
            }
        }
        world_from_frame *= se3(&rel);
        let t = world_from_frame.translation.vector;
        out.push((source, [t.x, t.y, t.z]));
    }
    if out.len() < 2 {
        return Err(DataError::layout(
            path,
            "no relative pose below the header: nothing to chain",
        ));
    }
    Ok(out)
}

/// The visual odometry of the traversal in `dir` ([`VO_FILE`], [`read_vo`]) as the sequence
/// filter takes a recording's odometry (stamps in seconds); None when the traversal has none.
pub fn traversal_odometry(
    dir: &Path,
) -> Result<Option<crate::localize::odometry::RecordedOdometry>, DataError> {
    let path = dir.join(VO_FILE);
    if !path.is_file() {
        return Ok(None);
    }
    let samples = read_vo(&path)?
        .into_iter()
        .map(|(us, p)| (us as f64 * 1e-6, p))
        .collect();
    Ok(Some(crate::localize::odometry::RecordedOdometry {
        topic: path.display().to_string(),
        samples,
        left_out: 0,
        out_of_order: 0,
    }))
}

/// The INS pose at `ts`, interpolated between the bracketing samples; None outside the INS time span.
pub fn pose_at(ins: &[InsSample], ts: i64) -> Option<Pose> {
    let i = ins.partition_point(|s| s.timestamp_us <= ts);
    if i == 0 || (i == ins.len() && ins[i - 1].timestamp_us != ts) {
        return None;
    }
    if i == ins.len() {
        return Some(ins[i - 1].world_from_ins);
    }
    let (a, b) = (&ins[i - 1], &ins[i]);
    let s = (ts - a.timestamp_us) as f64 / (b.timestamp_us - a.timestamp_us) as f64;
    Some(interpolate(&a.world_from_ins, &b.world_from_ins, s))
}

#[derive(Debug, Clone)]
pub struct Traversal {
    pub dir: PathBuf,
    pub camera: String,
    /// Images with the camera's pose (`world_from_cam`: the optical frame, x right, y down,
    /// z forward, in the local NED world of the INS): the INS pose interpolated at the image
    /// time, composed with the SDK's camera and INS extrinsics. Images outside the INS span have
    /// no pose.
    pub images: Vec<PosedImage>,
    /// The first and last INS timestamps (µs).
    pub ins_span: (i64, i64),
    /// PNG files in the camera's folder that `<camera>.timestamps` does not list (not read).
    pub unlisted: usize,
}

impl Traversal {
    /// `camera` is a folder such as `stereo/centre` or `mono_left`.
    pub fn open(dir: &Path, camera: &str) -> Result<Self, DataError> {
        let base = camera.split('/').next().unwrap_or(camera);
        let ts_path = dir.join(format!("{base}.timestamps"));
        if !ts_path.exists() {
            // A common slip: the folder above the traversals. Name the traversals in it.
            let mut below: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join(format!("{base}.timestamps")).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            below.sort();
            // Another slip: a folder inside the traversal (its stereo/centre, its gps/).
            let above = dir.canonicalize().ok().and_then(|d| {
                d.ancestors()
                    .skip(1)
                    .find(|a| a.join(format!("{base}.timestamps")).is_file())
                    .map(Path::to_path_buf)
            });
            // Or a camera this traversal was not downloaded with: the ones it has (a camera's
            // folder with its <base>.timestamps).
            let mut here: Vec<String> = CAMERAS
                .iter()
                .filter(|c| {
                    let b = c.split('/').next().unwrap_or(c);
                    dir.join(format!("{b}.timestamps")).is_file() && dir.join(c).is_dir()
                })
                .map(|c| c.to_string())
                .collect();
            here.sort();
            let hint = if let Some(a) = above.filter(|_| !dir.join(camera).is_dir()) {
                format!(
                    "; {} is inside the traversal {}: give --root {}",
                    dir.display(),
                    a.display(),
                    a.display()
                )
            } else if dir.join(camera).is_dir() {
                format!(
                    "; the {camera}/ images are here, but {base}.timestamps, which lists them \
                     with their chunks, is not (it comes with the traversal's download)"
                )
            } else if !here.is_empty() {
                format!(
                    "; this traversal has no {camera} images, but has {} (--cameras)",
                    here.join(", ")
                )
            } else if !below.is_empty() {
                format!("; traversals in this folder: {}", below.join(", "))
            } else {
                String::new()
            };
            return Err(DataError::missing(
                &ts_path,
                format!(
                    "the {base}.timestamps of a RobotCar traversal: --root is one traversal's \
                     folder (with {base}.timestamps, gps/ins.csv and {camera}/){hint}"
                ),
            ));
        }
        let f = TextFile::read(&ts_path)?;
        let mut stamps = Vec::new();
        let mut chunks = Vec::new();
        for line in f.lines(None, None) {
            line.expect_columns(2)?;
            stamps.push(line.parse::<i64>(0, "timestamp", "microseconds")?);
            chunks.push(line.parse::<u32>(1, "chunk", "a chunk number")?);
        }
        let ins = read_ins(&dir.join("gps/ins.csv"))?;
        let Some(ins_from_image) = ins_from_image(camera) else {
            return Err(DataError::layout(
                dir,
                format!(
                    "camera `{camera}`: expected {} or {} (the cameras with published extrinsics)",
                    CAMERAS[..CAMERAS.len() - 1].join(", "),
                    CAMERAS[CAMERAS.len() - 1]
                ),
            ));
        };
        let img_dir = dir.join(camera);
        if !img_dir.is_dir() {
            return Err(DataError::missing(
                &img_dir,
                format!("the {camera} image folder"),
            ));
        }
        // Every listed image must be there before anything is encoded: a chunk never downloaded
        // is named with its count, not found one file at a time after hours of work.
        let mut missing: std::collections::BTreeMap<u32, (usize, usize)> = Default::default();
        let mut example = None;
        for (ts, chunk) in stamps.iter().zip(&chunks) {
            let entry = missing.entry(*chunk).or_default();
            entry.1 += 1;
            let path = img_dir.join(format!("{ts}.png"));
            if !path.is_file() {
                entry.0 += 1;
                example.get_or_insert(path);
            }
        }
        if let Some(example) = example {
            let total: usize = missing.values().map(|m| m.0).sum();
            let per_chunk: Vec<String> = missing
                .iter()
                .filter(|(_, m)| m.0 > 0)
                .map(|(c, m)| format!("chunk {c}: {} of {}", m.0, m.1))
                .collect();
            return Err(DataError::layout(
                &ts_path,
                format!(
                    "{total} of {} images listed here are missing from {} ({}; e.g. {}): \
                     download the missing chunks, or remove their lines from this file",
                    stamps.len(),
                    img_dir.display(),
                    per_chunk.join(", "),
                    example.display()
                ),
            ));
        }
        // Images on disk that the list leaves out are not read: counted, for a note.
        let listed: std::collections::HashSet<String> =
            stamps.iter().map(|ts| format!("{ts}.png")).collect();
        let unlisted = std::fs::read_dir(&img_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.ends_with(".png") && !listed.contains(&n)
            })
            .count();
        let ins_span = (ins[0].timestamp_us, ins[ins.len() - 1].timestamp_us);
        let images = stamps
            .into_iter()
            .map(|ts| PosedImage {
                path: img_dir.join(format!("{ts}.png")),
                camera: camera.to_string(),
                timestamp_us: Some(ts),
                world_from_cam: pose_at(&ins, ts).map(|p| p * ins_from_image),
                intrinsics: None,
                distortion: None,
            })
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            camera: camera.to_string(),
            images,
            ins_span,
            unlisted,
        })
    }

    pub fn decode(&self) -> Decode {
        Decode::Bayer(BayerPattern::for_camera(&self.camera))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vo_file(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vo.csv");
        std::fs::write(&path, format!("{VO_HEADER}\n{body}")).unwrap();
        (dir, path)
    }

    /// A square driven with 10 m forward then a quarter turn right (yaw +90 degrees: z down),
    /// four times: the chain comes back to its start, each side 10 m long, the second corner at
    /// (10, 10) (x forward, y right of the first frame).
    #[test]
    fn visual_odometry_chains_relative_poses_into_positions() {
        let q = std::f64::consts::FRAC_PI_2;
        let body: String = (1..=4)
            .map(|k| format!("{},{},10,0,0,0,0,{q}\n", 1000 * k, 1000 * (k - 1)))
            .collect();
        let (_d, path) = vo_file(&body);
        let track = read_vo(&path).unwrap();
        let stamps: Vec<i64> = track.iter().map(|s| s.0).collect();
        assert_eq!(
            stamps,
            [0, 1000, 2000, 3000, 4000],
            "origin at the first destination"
        );
        let want = [
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [0.0, 0.0],
        ];
        for ((_, p), w) in track.iter().zip(want) {
            assert!(
                (p[0] - w[0]).abs() < 1e-9 && (p[1] - w[1]).abs() < 1e-9 && p[2].abs() < 1e-9,
                "{p:?}, expected {w:?}"
            );
        }
    }

    #[test]
    fn visual_odometry_errors_name_the_line_and_field() {
        let e = |body: &str| read_vo(&vo_file(body).1).unwrap_err().to_string();
        let msg = e("1000,0,1,0,0,0,0,0\n2000,1000,1,0,0,zero,0,0\n");
        assert!(msg.contains(":3") && msg.contains("roll"), "{msg}");
        let msg = e("1000,0,1,0,0,0,0,0\n1000,500,1,0,0,0,0,0\n");
        assert!(
            msg.contains("source_timestamp") && msg.contains("> 1000"),
            "{msg}"
        );
        let msg = e("1000,0,1,0,0,0,0\n");
        assert!(msg.contains(":2") && msg.contains('8'), "{msg}");
        let msg = e("");
        assert!(msg.contains("no relative pose"), "{msg}");
        let msg = e("1000,2000,1,0,0,0,0,0\n");
        assert!(
            msg.contains(":2") && msg.contains("destination_timestamp") && msg.contains("2000"),
            "{msg}"
        );
        let dir = tempfile::tempdir().unwrap();
        let headless = dir.path().join("vo.csv");
        std::fs::write(&headless, "1000,0,1,0,0,0,0,0\n").unwrap();
        let msg = read_vo(&headless).unwrap_err().to_string();
        assert!(msg.contains("header"), "{msg}");
    }

    #[test]
    fn demosaic_recovers_a_flat_colour() {
        let colour = [200u8, 120, 40];
        for pattern in [BayerPattern::Gbrg, BayerPattern::Rggb] {
            let raw = GrayImage::from_fn(6, 4, |x, y| image::Luma([colour[pattern.channel(x, y)]]));
            let rgb = demosaic(&raw, pattern);
            assert!(rgb.pixels().all(|p| p.0 == colour), "{pattern:?}");
        }
        // Each pattern's top-left 2x2 block, read row by row (0 R, 1 G, 2 B), is its name.
        for (p, block) in [
            (BayerPattern::Rggb, [0, 1, 1, 2]),
            (BayerPattern::Bggr, [2, 1, 1, 0]),
            (BayerPattern::Gbrg, [1, 2, 0, 1]),
            (BayerPattern::Grbg, [1, 0, 2, 1]),
        ] {
            let got = [
                p.channel(0, 0),
                p.channel(1, 0),
                p.channel(0, 1),
                p.channel(1, 1),
            ];
            assert_eq!(got, block, "{p:?}");
            // The block repeats.
            assert_eq!(p.channel(2, 2), block[0]);
            assert_eq!(p.channel(3, 4), block[1]);
            let name: String = got.iter().map(|c| ['r', 'g', 'b'][*c]).collect();
            assert_eq!(name, p.name());
            assert_eq!(BayerPattern::parse(p.name()), Some(p));
        }
    }
}
