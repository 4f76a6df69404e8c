//! Virtual KITTI 2 (vkitti 2.0.3), the synthetic training domain.
//!
//! Official layout, relative to each modality's root (one root may hold them all):
//! `SceneXX/<variation>/frames/{rgb,depth,classSegmentation}/Camera_<c>/{rgb,depth,classgt}_%05d.{jpg,png,png}`
//! and, in the text ground truth, `SceneXX/<variation>/{intrinsic,extrinsic,colors}.txt`.
//! Depth: 16-bit PNG, value / 100 = z-depth in metres, 65535 = at or beyond the far plane.
//! Segmentation: RGB colours from `colors.txt` -> the 15 class indices of [`CLASSES`].
//! `extrinsic.txt` rows are world->camera; rows interleave cameras (frame 0 cam 0, frame 0 cam 1, ...).
//!
//! The authors' repackaged layout (`vkitti_2.0.3_{rgb,depth,classSegmentation}` roots): scenes
//! and variations are the sorted sub-folders, every image below a variation is listed
//! recursively in sorted order, the three lists pair by position, and segmentation PNGs hold
//! class indices (channel 0).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::{GrayImage, ImageBuffer, Luma, RgbImage};

use super::error::DataError;
use super::sequence::PosedImage;
use super::text::{images_recursive, sorted_dirs, Line, TextFile};
use crate::geom::{vkitti2_cam_from_world, Pinhole, Pose};

/// The ten variations, in byte order (the reference's variation indices 0..9).
pub const VARIATIONS: [&str; 10] = [
    "15-deg-left",
    "15-deg-right",
    "30-deg-left",
    "30-deg-right",
    "clone",
    "fog",
    "morning",
    "overcast",
    "rain",
    "sunset",
];

/// The 15 classes in the conventional index order, with their VKITTI2 colours.
pub const CLASSES: [(&str, [u8; 3]); 15] = [
    ("Undefined", [0, 0, 0]),
    ("Terrain", [210, 0, 200]),
    ("Sky", [90, 200, 255]),
    ("Tree", [0, 199, 0]),
    ("Vegetation", [90, 240, 0]),
    ("Building", [140, 140, 140]),
    ("Road", [100, 60, 100]),
    ("GuardRail", [250, 100, 255]),
    ("TrafficSign", [255, 255, 0]),
    ("TrafficLight", [200, 200, 0]),
    ("Pole", [255, 130, 0]),
    ("Misc", [80, 80, 80]),
    ("Truck", [160, 60, 60]),
    ("Car", [255, 127, 80]),
    ("Van", [0, 139, 139]),
];

/// Depth PNG value meaning "at or beyond the far plane" (655.35 m).
pub const FAR_VALUE: u16 = 65535;
/// Headers of the text ground truth files, verbatim.
pub const INTRINSIC_HEADER: &str = "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]";
pub const EXTRINSIC_HEADER: &str =
    "frame cameraID r1,1 r1,2 r1,3 t1 r2,1 r2,2 r2,3 t2 r3,1 r3,2 r3,3 t3 0 0 0 1";
pub const COLORS_HEADER: &str = "Category r g b";

/// Depth in metres (value / 100; DASGIL keeps 65535 as 655.35 m).
pub type DepthMap = ImageBuffer<Luma<f32>, Vec<f32>>;

/// Colour -> class index, from `colors.txt` (unknown colours map to 0, Undefined).
#[derive(Debug, Clone, PartialEq)]
pub struct ColorTable {
    map: HashMap<[u8; 3], u8>,
}

impl Default for ColorTable {
    fn default() -> Self {
        Self {
            map: CLASSES
                .iter()
                .enumerate()
                .map(|(i, (_, c))| (*c, i as u8))
                .collect(),
        }
    }
}

impl ColorTable {
    /// Parses `colors.txt` (`Category r g b` header, then `Name R G B`); with or without the
    /// `Undefined 0 0 0` line.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let file = TextFile::read(path)?;
        file.expect_header(COLORS_HEADER)?;
        let mut map = HashMap::new();
        map.insert([0, 0, 0], 0);
        for line in file.lines(None, None).skip(1) {
            line.expect_columns(4)?;
            let name = line.fields[0];
            let index = CLASSES
                .iter()
                .position(|(n, _)| *n == name)
                .ok_or_else(|| {
                    let names: Vec<&str> = CLASSES.iter().map(|(n, _)| *n).collect();
                    line.field_error("Category", &format!("one of {}", names.join(", ")), name)
                })?;
            let rgb = [
                line.parse(1, "r", "0..255")?,
                line.parse(2, "g", "0..255")?,
                line.parse(3, "b", "0..255")?,
            ];
            map.insert(rgb, index as u8);
        }
        Ok(Self { map })
    }

    pub fn class_of(&self, rgb: [u8; 3]) -> u8 {
        self.map.get(&rgb).copied().unwrap_or(0)
    }
}

/// How segmentation PNGs encode classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegEncoding {
    /// RGB class colours (official `classgt_*.png`).
    Colour,
    /// Class index in channel 0 (the authors' repackaged data).
    IndexMap,
}

/// The folders a Virtual KITTI 2 copy lives in.
#[derive(Debug, Clone, PartialEq)]
pub struct Vkitti2Roots {
    pub rgb: PathBuf,
    pub depth: PathBuf,
    pub seg: PathBuf,
    /// intrinsic/extrinsic/colors.txt (official layout only).
    pub textgt: PathBuf,
    pub layout: Layout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Official,
    /// The authors' repackaged bundle.
    Dasgil,
}

impl Vkitti2Roots {
    /// All archives extracted into one folder.
    pub fn official(root: &Path) -> Self {
        Self {
            rgb: root.into(),
            depth: root.into(),
            seg: root.into(),
            textgt: root.into(),
            layout: Layout::Official,
        }
    }

    /// The reference's defaults under `base` (`vkitti_2.0.3_rgb`, `_depth`, `_classSegmentation`).
    pub fn dasgil(base: &Path) -> Self {
        Self {
            rgb: base.join("vkitti_2.0.3_rgb"),
            depth: base.join("vkitti_2.0.3_depth"),
            seg: base.join("vkitti_2.0.3_classSegmentation"),
            textgt: base.join("vkitti_2.0.3_textgt"),
            layout: Layout::Dasgil,
        }
    }
}

/// One frame of one camera.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub index: u32,
    pub camera: u8,
    pub rgb: PathBuf,
    pub depth: PathBuf,
    pub seg: PathBuf,
    pub intrinsics: Option<Pinhole>,
    pub cam_from_world: Option<Pose>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Variation {
    pub name: String,
    /// Frames in reading order (official: camera 0 frames, then camera 1).
    pub frames: Vec<Frame>,
    pub colors: ColorTable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Scene {
    pub name: String,
    pub variations: Vec<Variation>,
}

/// A decoded training sample.
pub struct Sample {
    pub rgb: RgbImage,
    pub depth_m: DepthMap,
    pub classes: GrayImage,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Vkitti2 {
    pub roots: Vkitti2Roots,
    pub scenes: Vec<Scene>,
    pub seg_encoding: SegEncoding,
}

fn check_variation_name(path: &Path, name: &str) -> Result<(), DataError> {
    if VARIATIONS.contains(&name) {
        Ok(())
    } else {
        Err(DataError::layout(
            path,
            format!(
                "unknown variation `{name}`; expected one of {}",
                VARIATIONS.join(", ")
            ),
        ))
    }
}

/// A root in the other layout, or a KITTI odometry set, said as such (not as an unknown
/// variation or a missing folder several levels down).
fn sniff_layout(roots: &Vkitti2Roots) -> Result<(), DataError> {
    match roots.layout {
        Layout::Official => {
            let root = &roots.rgb;
            let scene_dirs = std::fs::read_dir(root)
                .map(|d| {
                    d.flatten().any(|e| {
                        e.file_name().to_string_lossy().starts_with("Scene") && e.path().is_dir()
                    })
                })
                .unwrap_or(false);
            if scene_dirs {
                return Ok(());
            }
            if root.join("vkitti_2.0.3_rgb").is_dir() {
                return Err(DataError::layout(
                    root,
                    "holds vkitti_2.0.3_rgb/: the authors' repackaged layout, not the official \
                     one; read it as such (train --dasgil-layout, or vkitti_layout: dasgil in a \
                     training config)",
                ));
            }
            if root.join("dataset/sequences").is_dir() || root.join("sequences").is_dir() {
                return Err(DataError::layout(
                    root,
                    "holds the sequences/ of a KITTI odometry set, not Virtual KITTI 2 (as \
                     training's real domain it goes to --kitti)",
                ));
            }
        }
        Layout::Dasgil => {
            let base = roots.rgb.parent().unwrap_or(Path::new("."));
            if base
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vkitti_2.0.3_"))
            {
                return Err(DataError::layout(
                    base,
                    "is one of the repackaged layout's folders: give the folder that holds \
                     vkitti_2.0.3_rgb/, _depth/ and _classSegmentation/",
                ));
            }
            let scenes = std::fs::read_dir(base)
                .map(|d| {
                    d.flatten().any(|e| {
                        e.file_name().to_string_lossy().starts_with("Scene") && e.path().is_dir()
                    })
                })
                .unwrap_or(false);
            if !roots.rgb.is_dir() && scenes {
                return Err(DataError::layout(
                    base,
                    "holds SceneXX/ folders but no vkitti_2.0.3_rgb/: the official layout, not \
                     the authors' repackaged one; read it as such (train without \
                     --dasgil-layout, or vkitti_layout: official in a training config)",
                ));
            }
        }
    }
    Ok(())
}

fn require_dir(path: &Path, what: &str) -> Result<(), DataError> {
    if path.is_dir() {
        Ok(())
    } else {
        Err(DataError::missing(path, what))
    }
}

impl Vkitti2 {
    pub fn open(roots: &Vkitti2Roots) -> Result<Self, DataError> {
        sniff_layout(roots)?;
        require_dir(&roots.rgb, "the Virtual KITTI 2 RGB root (SceneXX folders)")?;
        require_dir(&roots.depth, "the Virtual KITTI 2 depth root")?;
        require_dir(&roots.seg, "the Virtual KITTI 2 classSegmentation root")?;
        let mut scenes = Vec::new();
        for scene_dir in sorted_dirs(&roots.rgb)? {
            let name = file_name(&scene_dir);
            let mut variations = Vec::new();
            for var_dir in sorted_dirs(&scene_dir)? {
                let var = file_name(&var_dir);
                check_variation_name(&var_dir, &var)?;
                let rel = Path::new(&name).join(&var);
                variations.push(match roots.layout {
                    Layout::Official => open_official_variation(roots, &rel)?,
                    Layout::Dasgil => open_dasgil_variation(roots, &rel)?,
                });
            }
            if variations.is_empty() {
                return Err(DataError::layout(
                    &scene_dir,
                    "scene has no variation folders",
                ));
            }
            scenes.push(Scene { name, variations });
        }
        if scenes.is_empty() {
            return Err(DataError::layout(&roots.rgb, "no scene folders (SceneXX)"));
        }
        let seg_encoding = match roots.layout {
            Layout::Official => SegEncoding::Colour,
            Layout::Dasgil => SegEncoding::IndexMap,
        };
        Ok(Self {
            roots: roots.clone(),
            scenes,
            seg_encoding,
        })
    }

    /// Reads and checks one frame: RGB, depth in metres and class indices, all the same size.
    pub fn load(&self, frame: &Frame, colors: &ColorTable) -> Result<Sample, DataError> {
        let open = |p: &Path| super::error::open_image(p, "an image file of this frame");
        let rgb = open(&frame.rgb)?.to_rgb8();
        let (w, h) = rgb.dimensions();
        let check = |p: &Path, fw: u32, fh: u32| {
            if (fw, fh) != (w, h) {
                return Err(DataError::Size {
                    path: p.into(),
                    expected_w: w,
                    expected_h: h,
                    found_w: fw,
                    found_h: fh,
                });
            }
            Ok(())
        };
        // Depth is a 16-bit single-channel PNG in centimetres: an 8-bit or colour re-save would
        // train on depths ~8x wrong without a word.
        let depth_raw = match open(&frame.depth)? {
            image::DynamicImage::ImageLuma16(d) => d,
            other => {
                return Err(DataError::Image {
                    path: frame.depth.clone(),
                    message: format!(
                        "depth: expected a 16-bit single-channel PNG (centimetres, 65535 = far), \
                         found {:?}; was it re-saved by an image editor?",
                        other.color()
                    ),
                })
            }
        };
        check(&frame.depth, depth_raw.width(), depth_raw.height())?;
        let depth_m = DepthMap::from_fn(w, h, |x, y| {
            Luma([depth_raw.get_pixel(x, y).0[0] as f32 / 100.0])
        });
        let seg_img = open(&frame.seg)?;
        if self.seg_encoding == SegEncoding::IndexMap && seg_img.color().bytes_per_pixel() != 1 {
            return Err(DataError::Image {
                path: frame.seg.clone(),
                message: format!(
                    "segmentation: expected an 8-bit single-channel class-index PNG (the \
                     repackaged layout), found {:?}",
                    seg_img.color()
                ),
            });
        }
        let seg = seg_img.to_rgb8();
        check(&frame.seg, seg.width(), seg.height())?;
        if self.seg_encoding == SegEncoding::IndexMap {
            // A class index the network has no output for (255 is often "void"): named here, not
            // left to fail inside libtorch's cross-entropy without a file or a step.
            if let Some((i, p)) = seg
                .pixels()
                .enumerate()
                .find(|(_, p)| p.0[0] as usize >= CLASSES.len())
            {
                return Err(DataError::Image {
                    path: frame.seg.clone(),
                    message: format!(
                        "segmentation: class index {} at pixel ({}, {}); expected 0 to {} (the {} \
                         Virtual KITTI 2 classes)",
                        p.0[0],
                        i as u32 % w,
                        i as u32 / w,
                        CLASSES.len() - 1,
                        CLASSES.len()
                    ),
                });
            }
        }
        let classes = GrayImage::from_fn(w, h, |x, y| {
            let p = seg.get_pixel(x, y).0;
            Luma([match self.seg_encoding {
                SegEncoding::Colour => colors.class_of(p),
                SegEncoding::IndexMap => p[0],
            }])
        });
        Ok(Sample {
            rgb,
            depth_m,
            classes,
        })
    }

    /// Every frame as a posed image (camera-to-world from the extrinsics, when present).
    pub fn posed_images(&self) -> Vec<PosedImage> {
        let mut out = Vec::new();
        for scene in &self.scenes {
            for var in &scene.variations {
                for f in &var.frames {
                    out.push(PosedImage {
                        path: f.rgb.clone(),
                        camera: format!("Camera_{}", f.camera),
                        timestamp_us: None,
                        world_from_cam: f.cam_from_world.map(|p| p.inverse()),
                        intrinsics: f.intrinsics,
                        distortion: None,
                    });
                }
            }
        }
        out
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// (frame, camera) -> value rows of intrinsic.txt / extrinsic.txt.
fn read_camera_rows<const N: usize>(
    path: &Path,
    header: &str,
    names: &[&str; N],
    check: impl Fn(&Line, &[f64; N]) -> Result<(), DataError>,
) -> Result<HashMap<(u32, u8), [f64; N]>, DataError> {
    let file = TextFile::read(path)?;
    file.expect_header(header)?;
    let mut rows = HashMap::new();
    for line in file.lines(None, None).skip(1) {
        line.expect_columns(2 + N)?;
        let frame: u32 = line.parse(0, "frame", "a frame number")?;
        let camera: u8 = line.parse(1, "cameraID", "0 or 1")?;
        if camera > 1 {
            return Err(line.field_error("cameraID", "0 or 1", line.fields[1]));
        }
        let v = line.floats(2, names)?;
        check(&line, &v)?;
        rows.insert((frame, camera), v);
    }
    Ok(rows)
}

/// The row of (frame, camera) when the file exists; an error naming the file when it lacks one.
fn row_for<'a, const N: usize>(
    rows: &'a Option<HashMap<(u32, u8), [f64; N]>>,
    path: &Path,
    index: u32,
    camera: u8,
) -> Result<Option<&'a [f64; N]>, DataError> {
    match rows {
        None => Ok(None),
        Some(rows) => rows.get(&(index, camera)).map(Some).ok_or_else(|| {
            DataError::layout(path, format!("no row for frame {index} camera {camera}"))
        }),
    }
}

const EXTRINSIC_NAMES: [&str; 16] = [
    "r1,1", "r1,2", "r1,3", "t1", "r2,1", "r2,2", "r2,3", "t2", "r3,1", "r3,2", "r3,3", "t3", "0",
    "0", "0", "1",
];

/// An intrinsic.txt row is a camera: focal lengths in pixels above 0 (every value is already a
/// finite number: `Line::floats`).
fn check_intrinsic(line: &Line, v: &[f64; 4]) -> Result<(), DataError> {
    for (i, name) in ["K[0,0]", "K[1,1]"].into_iter().enumerate() {
        if v[i] <= 0.0 {
            let found = line.fields.get(2 + i).copied().unwrap_or_default();
            return Err(line.field_error(name, "a focal length in pixels, more than 0", found));
        }
    }
    Ok(())
}

/// An extrinsic.txt row is a rigid transform: a rotation block and a last row of 0 0 0 1.
fn check_extrinsic(line: &Line, v: &[f64; 16]) -> Result<(), DataError> {
    line.expect_rotation(
        [[v[0], v[1], v[2]], [v[4], v[5], v[6]], [v[8], v[9], v[10]]],
        "r1,1..r3,3",
    )?;
    if v[12..]
        .iter()
        .zip([0.0, 0.0, 0.0, 1.0])
        .any(|(a, b)| (a - b).abs() > 1e-6)
    {
        return Err(line.field_error(
            "last row",
            "0 0 0 1",
            &format!("{} {} {} {}", v[12], v[13], v[14], v[15]),
        ));
    }
    Ok(())
}

fn open_official_variation(roots: &Vkitti2Roots, rel: &Path) -> Result<Variation, DataError> {
    let name = file_name(rel);
    let text_dir = roots.textgt.join(rel);
    let intr_path = text_dir.join("intrinsic.txt");
    let extr_path = text_dir.join("extrinsic.txt");
    let intrinsics = if intr_path.exists() {
        Some(read_camera_rows(
            &intr_path,
            INTRINSIC_HEADER,
            &["K[0,0]", "K[1,1]", "K[0,2]", "K[1,2]"],
            check_intrinsic,
        )?)
    } else {
        None
    };
    let extrinsics = if extr_path.exists() {
        Some(read_camera_rows(
            &extr_path,
            EXTRINSIC_HEADER,
            &EXTRINSIC_NAMES,
            check_extrinsic,
        )?)
    } else {
        None
    };
    let colors_path = text_dir.join("colors.txt");
    let colors = if colors_path.exists() {
        ColorTable::read(&colors_path)?
    } else {
        ColorTable::default()
    };

    let mut frames = Vec::new();
    for camera in 0..2u8 {
        let cam = format!("Camera_{camera}");
        let rgb_dir = roots.rgb.join(rel).join("frames/rgb").join(&cam);
        if !rgb_dir.is_dir() {
            continue;
        }
        let depth_dir = roots.depth.join(rel).join("frames/depth").join(&cam);
        let seg_dir = roots
            .seg
            .join(rel)
            .join("frames/classSegmentation")
            .join(&cam);
        require_dir(&depth_dir, "the depth folder of this camera")?;
        require_dir(&seg_dir, "the classSegmentation folder of this camera")?;
        for rgb in super::text::sorted_entries(&rgb_dir)? {
            let stem = file_name(&rgb);
            let Some(num) = stem
                .strip_prefix("rgb_")
                .and_then(|s| s.strip_suffix(".jpg"))
            else {
                continue;
            };
            let index: u32 = num
                .parse()
                .map_err(|_| DataError::layout(&rgb, "expected a file name rgb_%05d.jpg"))?;
            let (w, h) =
                super::error::image_dimensions(&rgb).map_err(|message| DataError::Image {
                    path: rgb.clone(),
                    message,
                })?;
            let frame_intr = row_for(&intrinsics, &intr_path, index, camera)?.map(|k| Pinhole {
                width: w,
                height: h,
                fx: k[0],
                fy: k[1],
                cx: k[2],
                cy: k[3],
            });
            let pose = row_for(&extrinsics, &extr_path, index, camera)?.map(vkitti2_cam_from_world);
            frames.push(Frame {
                index,
                camera,
                depth: depth_dir.join(format!("depth_{num}.png")),
                seg: seg_dir.join(format!("classgt_{num}.png")),
                rgb,
                intrinsics: frame_intr,
                cam_from_world: pose,
            });
        }
    }
    if frames.is_empty() {
        return Err(DataError::layout(
            &roots.rgb.join(rel),
            "no frames/rgb/Camera_<c>/rgb_%05d.jpg images",
        ));
    }
    Ok(Variation {
        name,
        frames,
        colors,
    })
}

fn open_dasgil_variation(roots: &Vkitti2Roots, rel: &Path) -> Result<Variation, DataError> {
    let list = |root: &Path| -> Result<Vec<PathBuf>, DataError> {
        let dir = root.join(rel);
        require_dir(&dir, "this scene/variation folder in every modality root")?;
        images_recursive(&dir)
    };
    let (rgb, depth, seg) = (list(&roots.rgb)?, list(&roots.depth)?, list(&roots.seg)?);
    if rgb.len() != depth.len() || rgb.len() != seg.len() {
        return Err(DataError::layout(
            &roots.rgb.join(rel),
            format!("{} RGB, {} depth and {} segmentation images: the lists pair by position and must be equally long", rgb.len(), depth.len(), seg.len()),
        ));
    }
    if rgb.is_empty() {
        return Err(DataError::layout(&roots.rgb.join(rel), "no images"));
    }
    let frames = rgb
        .into_iter()
        .zip(depth)
        .zip(seg)
        .enumerate()
        .map(|(i, ((rgb, depth), seg))| {
            // From the folders below the root only (a `Camera_10` or `Camera_1_old` above
            // the data is no camera).
            let below = rgb.strip_prefix(&roots.rgb).unwrap_or(&rgb);
            let camera = if below.components().any(|c| c.as_os_str() == "Camera_1") {
                1
            } else {
                0
            };
            Frame {
                index: i as u32,
                camera,
                rgb,
                depth,
                seg,
                intrinsics: None,
                cam_from_world: None,
            }
        })
        .collect();
    Ok(Variation {
        name: file_name(rel),
        frames,
        colors: ColorTable::default(),
    })
}
