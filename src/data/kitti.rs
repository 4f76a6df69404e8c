//! KITTI, the unlabelled real domain.
//!
//! - Image folder (what DASGIL reads): every image below a root, recursively, sorted.
//! - Odometry: `dataset/sequences/NN/image_{0,1,2,3}/%06d.png`, `times.txt` (seconds),
//!   `calib.txt` (`P0:` .. `P3:`, 3x4 rectified projections), `dataset/poses/NN.txt` (12 floats:
//!   3x4 camera-to-world of cam0, world = first cam0 frame). The pose of `image_N` is cam0's moved
//!   by camera N's offset from calib.txt: `P_N = K [I | t_N]`, so `t_N = K^-1 P_N[:, 3]` and
//!   `world_from_camN = world_from_cam0 * translation(-t_N)` (image_2 is about 6 cm to the left
//!   of cam0: in the published calibrations t_2 is about (0.06, 0, 0.003) m).
//! - Raw: `<date>/<date>_drive_<dddd>_sync/image_0X/data/%010d.png`, `image_0X/timestamps.txt`
//!   (`YYYY-MM-DD HH:MM:SS.nnnnnnnnn`), `oxts/data/%010d.txt` (30 values).

use std::path::{Path, PathBuf};

use super::error::DataError;
use super::sequence::PosedImage;
use super::text::{images_in, images_recursive, sorted_entries, TextFile};
use crate::geom::{kitti_world_from_cam, Pinhole};

/// Every image under `root` (recursively, sorted by path), as the reference's real-domain loader.
pub fn image_folder(root: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !root.is_dir() {
        return Err(DataError::missing(root, "a folder of KITTI images"));
    }
    let images = images_recursive(root)?;
    if images.is_empty() {
        return Err(DataError::layout(
            root,
            "no images (.png/.jpg/.jpeg/.ppm/.bmp) below this folder",
        ));
    }
    Ok(images)
}

/// t_N of `P{n}:` in an odometry calib.txt (the offset of camera N from cam0, in metres, in the
/// rectified frame): `t = K^-1 P[:, 3]`.
pub fn camera_offset(calib: &Path, n: &str) -> Result<nalgebra::Vector3<f64>, DataError> {
    camera_projection(calib, n).map(|(t, _)| t)
}

/// `P{n}:` of an odometry calib.txt as camera N's offset from cam0 ([`camera_offset`]) and its
/// rectified intrinsics `[fx, fy, cx, cy]` (pixels; the images are rectified: no distortion).
pub fn camera_projection(
    calib: &Path,
    n: &str,
) -> Result<(nalgebra::Vector3<f64>, [f64; 4]), DataError> {
    let f = TextFile::read(calib)?;
    let key = format!("P{n}:");
    for line in f.lines(None, None) {
        if line.fields.first() != Some(&key.as_str()) {
            continue;
        }
        line.expect_columns(13)?;
        let names = [
            "p00", "p01", "p02", "p03", "p10", "p11", "p12", "p13", "p20", "p21", "p22", "p23",
        ];
        let v: [f64; 12] = line.floats(1, &names)?;
        let (fx, cx, fy, cy) = (v[0], v[2], v[5], v[6]);
        if fx.abs() < 1e-9 || fy.abs() < 1e-9 {
            return Err(line.field_error("p00", "a focal length > 0", line.fields[1]));
        }
        let tz = v[11];
        let ty = (v[7] - cy * tz) / fy;
        let tx = (v[3] - cx * tz) / fx;
        return Ok((nalgebra::Vector3::new(tx, ty, tz), [fx, fy, cx, cy]));
    }
    Err(DataError::layout(
        calib,
        format!("no `{key}` line: expected the projection of camera {n}"),
    ))
}

/// One odometry sequence.
#[derive(Debug, Clone)]
pub struct OdometrySequence {
    pub sequence: String,
    /// `image_2` (left colour) unless chosen otherwise.
    pub camera: String,
    pub images: Vec<PosedImage>,
}

impl OdometrySequence {
    /// `dataset` is the folder holding `sequences/` and (optionally) `poses/`.
    pub fn open(dataset: &Path, sequence: &str, camera: &str) -> Result<Self, DataError> {
        let seq_dir = dataset.join("sequences").join(sequence);
        let img_dir = seq_dir.join(camera);
        if !img_dir.is_dir() {
            // The cameras this sequence was downloaded with (the grey image_0/1 or the colour
            // image_2/3 package).
            let mut have: Vec<String> = std::fs::read_dir(&seq_dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| ["image_0", "image_1", "image_2", "image_3"].contains(&n.as_str()))
                .collect();
            have.sort();
            return Err(DataError::missing(
                &img_dir,
                format!(
                    "the {camera} folder of odometry sequence {sequence}{}",
                    if have.is_empty() {
                        String::new()
                    } else {
                        format!("; it has {}: give --cameras {}", have.join(", "), have[0])
                    }
                ),
            ));
        }
        let files = images_in(&img_dir)?;
        let times_path = seq_dir.join("times.txt");
        let times: Option<Vec<f64>> = if times_path.exists() {
            let f = TextFile::read(&times_path)?;
            Some(
                f.lines(None, None)
                    .map(|l| {
                        l.expect_columns(1)
                            .and_then(|_| l.floats(0, &["time"]).map(|v| v[0]))
                    })
                    .collect::<Result<_, _>>()?,
            )
        } else {
            None
        };
        let poses_path = dataset.join("poses").join(format!("{sequence}.txt"));
        let poses = if poses_path.exists() {
            let f = TextFile::read(&poses_path)?;
            let names = [
                "r11", "r12", "r13", "tx", "r21", "r22", "r23", "ty", "r31", "r32", "r33", "tz",
            ];
            Some(
                f.lines(None, None)
                    .map(|l| {
                        l.expect_columns(12)?;
                        let v = l.floats(0, &names)?;
                        let r = [[v[0], v[1], v[2]], [v[4], v[5], v[6]], [v[8], v[9], v[10]]];
                        l.expect_rotation(r, "r11..r33")?;
                        Ok(v)
                    })
                    .collect::<Result<Vec<_>, DataError>>()?,
            )
        } else {
            None
        };
        for (what, n, path) in [
            ("times.txt", times.as_ref().map(Vec::len), &times_path),
            ("poses", poses.as_ref().map(Vec::len), &poses_path),
        ] {
            if let Some(n) = n {
                if n != files.len() {
                    return Err(DataError::layout(
                        path,
                        format!(
                            "{what} has {n} lines for {} images in {}",
                            files.len(),
                            img_dir.display()
                        ),
                    ));
                }
            }
        }
        let calib = seq_dir.join("calib.txt");
        let projection = match camera.strip_prefix("image_") {
            Some(n) if calib.exists() => match camera_projection(&calib, n) {
                Ok(p) => Some(p),
                // The poses need camera N's offset from cam0: a bad calib.txt is an error then;
                // without poses it only costs the intrinsics.
                Err(e) if poses.is_some() => return Err(e),
                Err(_) => None,
            },
            _ => None,
        };
        let cam0_from_cam = match (&poses, &projection) {
            (Some(_), Some((t, _))) => *t,
            _ => nalgebra::Vector3::zeros(),
        };
        // The rectified intrinsics at the images' size (the first image's, read from its
        // header; a sequence's images share it), when they fit it (a downscaled copy with the
        // original calib.txt does not: its principal point lies outside): else none.
        let intrinsics =
            projection
                .as_ref()
                .zip(files.first())
                .and_then(|((_, [fx, fy, cx, cy]), first)| {
                    let (width, height) = image::ImageReader::open(first)
                        .ok()?
                        .with_guessed_format()
                        .ok()?
                        .into_dimensions()
                        .ok()?;
                    let fits = *cx > 0.0
                        && *cx < width as f64
                        && *cy > 0.0
                        && *cy < height as f64
                        && *fx > 0.0
                        && *fy > 0.0;
                    fits.then_some(Pinhole {
                        width,
                        height,
                        fx: *fx,
                        fy: *fy,
                        cx: *cx,
                        cy: *cy,
                    })
                });
        let images = files
            .into_iter()
            .enumerate()
            .map(|(i, path)| PosedImage {
                path,
                camera: camera.to_string(),
                timestamp_us: times.as_ref().map(|t| (t[i] * 1e6).round() as i64),
                world_from_cam: poses.as_ref().map(|p| {
                    kitti_world_from_cam(&p[i]) * nalgebra::Translation3::from(-cam0_from_cam)
                }),
                intrinsics,
                distortion: None,
            })
            .collect();
        Ok(Self {
            sequence: sequence.to_string(),
            camera: camera.to_string(),
            images,
        })
    }
}

/// One OXTS (GPS/IMU) record of a raw drive: the first six of its 30 values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Oxts {
    pub lat: f64,
    pub lon: f64,
    pub alt: f64,
    pub roll: f64,
    pub pitch: f64,
    pub yaw: f64,
}

/// Field names of an OXTS line, in order (KITTI `dataformat.txt`).
pub const OXTS_FIELDS: [&str; 30] = [
    "lat",
    "lon",
    "alt",
    "roll",
    "pitch",
    "yaw",
    "vn",
    "ve",
    "vf",
    "vl",
    "vu",
    "ax",
    "ay",
    "az",
    "af",
    "al",
    "au",
    "wx",
    "wy",
    "wz",
    "wf",
    "wl",
    "wu",
    "pos_accuracy",
    "vel_accuracy",
    "navstat",
    "numsats",
    "posmode",
    "velmode",
    "orimode",
];

pub fn read_oxts(path: &Path) -> Result<Oxts, DataError> {
    let f = TextFile::read(path)?;
    let line = f
        .lines(None, None)
        .next()
        .ok_or_else(|| DataError::layout(path, "empty OXTS file"))?;
    line.expect_columns(30)?;
    let v = line.floats(0, &OXTS_FIELDS)?;
    Ok(Oxts {
        lat: v[0],
        lon: v[1],
        alt: v[2],
        roll: v[3],
        pitch: v[4],
        yaw: v[5],
    })
}

/// Parses a raw-data timestamp `YYYY-MM-DD HH:MM:SS.nnnnnnnnn` (UTC) to microseconds.
pub fn parse_raw_timestamp(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let t: Vec<i64> = hms
        .split(':')
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    if d.len() != 3 || t.len() != 3 || !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let frac_us: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    Some(
        (days_from_civil(d[0], d[1], d[2]) * 86_400 + t[0] * 3600 + t[1] * 60 + t[2]) * 1_000_000
            + frac_us,
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// One raw drive: images of one camera with timestamps and OXTS records.
#[derive(Debug, Clone)]
pub struct RawDrive {
    pub images: Vec<PosedImage>,
    pub oxts: Vec<Oxts>,
}

impl RawDrive {
    /// `drive_dir` is `<date>/<date>_drive_<dddd>_sync`; `camera` e.g. `image_02`.
    pub fn open(drive_dir: &Path, camera: &str) -> Result<Self, DataError> {
        let data = drive_dir.join(camera).join("data");
        if !data.is_dir() {
            return Err(DataError::missing(
                &data,
                format!("the {camera}/data folder of a raw drive"),
            ));
        }
        let files = images_in(&data)?;
        let ts_path = drive_dir.join(camera).join("timestamps.txt");
        let f = TextFile::read(&ts_path)?;
        let stamps: Vec<i64> = f
            .lines(Some('\n'), None)
            .map(|l| {
                parse_raw_timestamp(l.raw).ok_or_else(|| {
                    l.field_error("timestamp", "YYYY-MM-DD HH:MM:SS.nnnnnnnnn", l.raw)
                })
            })
            .collect::<Result<_, _>>()?;
        if stamps.len() != files.len() {
            return Err(DataError::layout(
                &ts_path,
                format!("{} timestamps for {} images", stamps.len(), files.len()),
            ));
        }
        let oxts_dir = drive_dir.join("oxts/data");
        let oxts = if oxts_dir.is_dir() {
            sorted_entries(&oxts_dir)?
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "txt"))
                .map(|p| read_oxts(p))
                .collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        let images = files
            .into_iter()
            .zip(stamps)
            .map(|(path, ts)| PosedImage {
                path,
                camera: camera.to_string(),
                timestamp_us: Some(ts),
                world_from_cam: None,
                intrinsics: None,
                distortion: None,
            })
            .collect();
        Ok(Self { images, oxts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_timestamps_parse_to_microseconds() {
        // 2011-09-26 13:02:25.964389445 UTC
        assert_eq!(
            parse_raw_timestamp("2011-09-26 13:02:25.964389445"),
            Some(1_317_042_145_964_389)
        );
        assert_eq!(
            parse_raw_timestamp("1970-01-01 00:00:01.5"),
            Some(1_500_000)
        );
        assert_eq!(parse_raw_timestamp("2011-09-26T13:02:25"), None);
    }
}
