//! Extended CMU-Seasons (test data, map building, benchmark submission).
//!
//! `<root>/intrinsics.txt` (`# comments`; `camera_id OPENCV width height fx fy cx cy k1 k2 p1 p2`)
//! and per slice: `slice<N>/database/`, `slice<N>/query/`,
//! `ground-truth-database-images-slice<N>.txt` (`name qw qx qy qz cx cy cz`: world->camera
//! quaternion, camera centre), `test-images-slice<N>.txt` (query names), `camera-poses/*.txt`
//! (query ground truth, same format, only some slices). Names: `img_%05d_c{0,1}_<16 digits>us.jpg`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::DataError;
use super::sequence::PosedImage;
use super::text::{sorted_entries, TextFile};
use crate::geom::{cmu_submission_line, CmuPose, Pinhole, Pose};

/// Urban / suburban / park, by slice number (ECMU README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum SliceGroup {
    Urban,
    Suburban,
    Park,
}

pub fn slice_group(slice: u32) -> Option<SliceGroup> {
    match slice {
        2..=8 => Some(SliceGroup::Urban),
        9..=17 => Some(SliceGroup::Suburban),
        18..=25 => Some(SliceGroup::Park),
        _ => None,
    }
}

/// OPENCV camera of `intrinsics.txt` (radial k1, k2; tangential p1, p2).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenCvCamera {
    pub pinhole: Pinhole,
    pub k1: f64,
    pub k2: f64,
    pub p1: f64,
    pub p2: f64,
}

pub fn read_intrinsics(path: &Path) -> Result<BTreeMap<String, OpenCvCamera>, DataError> {
    let f = TextFile::read(path)?;
    let mut cams = BTreeMap::new();
    for line in f.lines(None, Some('#')) {
        line.expect_columns(12)?;
        if line.fields[1] != "OPENCV" {
            return Err(line.field_error("model", "OPENCV", line.fields[1]));
        }
        let width: u32 = line.parse(2, "width", "pixels")?;
        let height: u32 = line.parse(3, "height", "pixels")?;
        let v = line.floats(4, &["fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2"])?;
        cams.insert(
            line.fields[0].to_string(),
            OpenCvCamera {
                pinhole: Pinhole {
                    width,
                    height,
                    fx: v[0],
                    fy: v[1],
                    cx: v[2],
                    cy: v[3],
                },
                k1: v[4],
                k2: v[5],
                p1: v[6],
                p2: v[7],
            },
        );
    }
    if cams.is_empty() {
        return Err(DataError::layout(path, "no camera lines"));
    }
    Ok(cams)
}

/// The parts of an image name `img_<index>_<camera>_<timestamp>us.jpg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub index: u32,
    pub camera: String,
    pub timestamp_us: i64,
}

impl ImageName {
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix("img_")?.strip_suffix("us.jpg")?;
        let mut parts = rest.splitn(3, '_');
        let digits =
            |s: &str, min_len: usize| s.len() >= min_len && s.chars().all(|c| c.is_ascii_digit());
        // Zero-padded index (%05d), camera c<k>, 16-digit microsecond timestamp.
        let index = parts.next().filter(|s| digits(s, 5))?.parse().ok()?;
        let camera = parts
            .next()
            .filter(|s| s.strip_prefix('c').is_some_and(|k| digits(k, 1)))?
            .to_string();
        let ts = parts.next().filter(|s| s.len() == 16 && digits(s, 16))?;
        Some(Self {
            index,
            camera,
            timestamp_us: ts.parse().ok()?,
        })
    }

    pub fn format(&self) -> String {
        format!(
            "img_{:05}_{}_{:016}us.jpg",
            self.index, self.camera, self.timestamp_us
        )
    }
}

/// How far from 1 a pose file's quaternion norm may be before the line is refused (it is
/// normalised either way). The data set README's own example line has norm 1.0013 (6 digits
/// per component); a zero, NaN or clearly unnormalised quaternion is a broken file, not a
/// rotation.
pub const QUATERNION_TOLERANCE: f64 = 0.01;

/// `name qw qx qy qz cx cy cz` lines.
pub fn read_pose_list(path: &Path) -> Result<Vec<(String, CmuPose)>, DataError> {
    let f = TextFile::read(path)?;
    let mut out = Vec::new();
    // Fields are separated by whitespace, however much of it (spaces or tabs).
    for line in f.lines(None, None) {
        line.expect_columns(8)?;
        let v = line.floats(1, &["qw", "qx", "qy", "qz", "cx", "cy", "cz"])?;
        let name = line.fields[0];
        if ImageName::parse(name).is_none() {
            return Err(line.field_error("name", "img_%05d_c<k>_<16-digit timestamp>us.jpg", name));
        }
        let norm = v[..4].iter().map(|x| x * x).sum::<f64>().sqrt();
        if !((1.0 - QUATERNION_TOLERANCE)..=(1.0 + QUATERNION_TOLERANCE)).contains(&norm) {
            return Err(line.field_error(
                "qw qx qy qz",
                &format!("a unit quaternion (norm 1 +- {QUATERNION_TOLERANCE})"),
                &format!("{} {} {} {} (norm {norm})", v[0], v[1], v[2], v[3]),
            ));
        }
        out.push((
            name.to_string(),
            CmuPose {
                q_wxyz: [v[0], v[1], v[2], v[3]],
                centre: [v[4], v[5], v[6]],
            },
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct CmuSlice {
    pub slice: u32,
    pub dir: PathBuf,
    pub cameras: BTreeMap<String, OpenCvCamera>,
    /// Database images with their ground-truth pose.
    pub database: Vec<(String, CmuPose)>,
    /// Query names (test-images list), in file order.
    pub queries: Vec<String>,
    /// Query ground truth from camera-poses/*.txt, where published.
    pub query_truth: BTreeMap<String, CmuPose>,
}

impl CmuSlice {
    pub fn open(root: &Path, slice: u32) -> Result<Self, DataError> {
        let cameras = read_intrinsics(&root.join("intrinsics.txt"))?;
        let dir = root.join(format!("slice{slice}"));
        for sub in ["database", "query"] {
            if !dir.join(sub).is_dir() {
                return Err(DataError::missing(
                    &dir.join(sub),
                    format!("the {sub} image folder of slice {slice}"),
                ));
            }
        }
        let database =
            read_pose_list(&dir.join(format!("ground-truth-database-images-slice{slice}.txt")))?;
        let test_list = dir.join(format!("test-images-slice{slice}.txt"));
        let queries: Vec<String> = TextFile::read(&test_list)?
            .lines(None, None)
            .map(|l| l.fields[0].to_string())
            .collect();
        let mut query_truth = BTreeMap::new();
        let cp = dir.join("camera-poses");
        if cp.is_dir() {
            for f in sorted_entries(&cp)? {
                if f.extension().is_some_and(|e| e == "txt") {
                    query_truth.extend(read_pose_list(&f)?);
                }
            }
        }
        for (name, _) in &database {
            let cam = ImageName::parse(name).map(|n| n.camera).unwrap_or_default();
            if !cameras.contains_key(&cam) {
                return Err(DataError::layout(&dir, format!("database image {name} uses camera `{cam}`, which intrinsics.txt does not define")));
            }
        }
        Ok(Self {
            slice,
            dir,
            cameras,
            database,
            queries,
            query_truth,
        })
    }

    fn posed(&self, sub: &str, name: &str, pose: Option<&CmuPose>) -> PosedImage {
        let parsed = ImageName::parse(name);
        let camera = parsed
            .as_ref()
            .map(|n| n.camera.clone())
            .unwrap_or_default();
        PosedImage {
            path: self.dir.join(sub).join(name),
            intrinsics: self.cameras.get(&camera).map(|c| c.pinhole),
            distortion: self
                .cameras
                .get(&camera)
                .map(|c| [c.k1, c.k2, c.p1, c.p2, 0.0]),
            camera,
            timestamp_us: parsed.map(|n| n.timestamp_us),
            world_from_cam: pose.map(|p| p.cam_from_world().inverse()),
        }
    }

    pub fn database_images(&self) -> Vec<PosedImage> {
        self.database
            .iter()
            .map(|(n, p)| self.posed("database", n, Some(p)))
            .collect()
    }

    /// Queries, with ground truth where camera-poses gives it.
    pub fn query_images(&self) -> Vec<PosedImage> {
        self.queries
            .iter()
            .map(|n| self.posed("query", n, self.query_truth.get(n)))
            .collect()
    }
}

/// Writes a benchmark submission (`name qw qx qy qz tx ty tz` per line) atomically.
pub fn write_submission(
    path: &Path,
    entries: &[(String, Pose)],
) -> Result<(), crate::atomic::PathIoError> {
    let mut text = String::new();
    for (name, cam_from_world) in entries {
        text.push_str(&cmu_submission_line(name, cam_from_world));
        text.push('\n');
    }
    crate::atomic::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_parse_and_format() {
        let n = ImageName::parse("img_00122_c0_1303398475046031us.jpg").unwrap();
        assert_eq!(
            n,
            ImageName {
                index: 122,
                camera: "c0".into(),
                timestamp_us: 1303398475046031
            }
        );
        assert_eq!(n.format(), "img_00122_c0_1303398475046031us.jpg");
        assert!(ImageName::parse("img_00122_c0_130339847504603us.jpg").is_none());
        assert!(ImageName::parse("img_122_c0_1303398475046031us.jpg").is_none());
        assert!(ImageName::parse("img_00122_x0_1303398475046031us.jpg").is_none());
        assert_eq!(slice_group(7), Some(SliceGroup::Urban));
        assert_eq!(slice_group(17), Some(SliceGroup::Suburban));
        assert_eq!(slice_group(18), Some(SliceGroup::Park));
        assert_eq!(slice_group(1), None);
    }
}
