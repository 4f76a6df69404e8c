//! build-map: a source's database images -> descriptors (with optional map-time adaptation)
//! -> the map file with poses, names, cameras, times, the encoder's description, the decoding of
//! its images and, optionally, the compressed search mode's codes.

use std::path::Path;

use safetensors::tensor::Dtype;

use super::file::{self, MapMeta, RawTensor, MAP_FORMAT};
use crate::data::sources::SourceImages;
use crate::data::{Decode, PosedImage};
use crate::error::PipelineError;
use crate::extract::MapEncoder;
use crate::retrieval::{compress, Metric};

/// Options of `build-map`.
pub struct BuildOptions {
    pub adapt: bool,
    pub f16: bool,
    pub metric: Metric,
    /// The compressed search mode: projected dimensions and shortlist (`maps::compress`).
    pub compress: Option<(usize, usize)>,
    /// Yaw views per entry, degrees, positive turned left (`views::parse_yaw_views`); empty:
    /// none, the reference's map.
    pub yaw_views: Vec<f64>,
    /// The views are the default (`views::default_yaw_views`), not asked for: a source without
    /// intrinsics for every database image gets a map without views (and [`Built::note`] says
    /// why) instead of the error an asked-for `--yaw-views` gets.
    pub yaw_views_by_default: bool,
}

/// What [`build_map`] wrote: the map's metadata, and why it has no yaw views when the default
/// ones were dropped (for the caller to say: build-map's summary, evaluate's warnings).
pub struct Built {
    pub meta: MapMeta,
    pub note: Option<String>,
}

/// Why a map built with the default yaw views has none: some of the (deduplicated) database
/// images `db` have no intrinsics (None: the views are kept, or were not the default).
fn default_views_dropped(
    src: &SourceImages,
    db: &[PosedImage],
    opts: &BuildOptions,
) -> Option<String> {
    if !opts.yaw_views_by_default || opts.yaw_views.is_empty() {
        return None;
    }
    let without = db.iter().filter(|p| p.intrinsics.is_none()).count();
    match missing_intrinsics(src, db.iter(), "", "", "")? {
        PipelineError::NoIntrinsics { what, hint, .. } => Some(format!(
            "no yaw views: the default views ({}) turn each map image about its camera, which \
             needs the camera's intrinsics, and {without} of the {} map images {} none: {what} \
             ({hint}). The map searches each image as it is, as --yaw-views none does: a robot \
             off the mapping line or turned from it is found less often (the six validation \
             worlds' mean within (5 m, 10 deg): 78.2% without views, 85.2% with them: \
             maps/models/MODEL_CARD.md, \"Yaw views by default\")",
            super::views::describe(&opts.yaw_views),
            db.len(),
            if without == 1 { "has" } else { "have" }
        )),
        _ => None,
    }
}

/// Seed of the compressed mode's projection.
pub const PROJECTION_SEED: u64 = 0xDA5_617;

/// The name a map stores for an image: its file name (CMU names carry camera and time).
pub fn image_name(p: &PosedImage) -> String {
    p.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The decoding a map records: the source's, with colour files told apart from grey ones
/// (a grey data set's map takes mono8 frames; a colour one refuses them).
fn recorded_decoding(src: &SourceImages) -> Result<Decode, PipelineError> {
    if src.decode != Decode::Rgb {
        return Ok(src.decode);
    }
    // Grey only when every file is single-channel (read from the headers); a colour data set
    // with a few grey files stays a colour map.
    for p in &src.database {
        let colour = image::ImageReader::open(&p.path)
            .and_then(|r| r.with_guessed_format())
            .map_err(|e| crate::data::DataError::io(&p.path, e))
            .map(|r| {
                r.into_decoder()
                    .map(|d| image::ImageDecoder::color_type(&d))
            });
        match colour {
            Ok(Ok(c)) if !c.has_color() => continue,
            // Colour, or unreadable here (the encoder reports it with the file).
            _ => return Ok(Decode::Rgb),
        }
    }
    Ok(if src.database.is_empty() {
        Decode::Rgb
    } else {
        Decode::Grey
    })
}

/// The paths of the first three images `lacks` picks ("a, b, c, ..." when there are more), for
/// an error message; None when it picks none.
fn examples(db: &[PosedImage], lacks: impl Fn(&PosedImage) -> bool) -> Option<String> {
    let found: Vec<String> = db
        .iter()
        .filter(|p| lacks(p))
        .take(4)
        .map(|p| p.path.display().to_string())
        .collect();
    if found.is_empty() {
        return None;
    }
    let more = if found.len() > 3 { ", ..." } else { "" };
    Some(format!("{}{more}", found[..found.len().min(3)].join(", ")))
}

/// The error for `option` (which `purpose`, with each image's intrinsics) when some of
/// `images` (of `src`) have none: a recording's notes say per topic why, else example paths,
/// and the way out is `doing` without the option; None when every image has intrinsics.
pub fn missing_intrinsics<'a>(
    src: &SourceImages,
    images: impl Iterator<Item = &'a PosedImage>,
    doing: &'static str,
    option: &'static str,
    purpose: &'static str,
) -> Option<PipelineError> {
    let without: Vec<&PosedImage> = images.filter(|p| p.intrinsics.is_none()).collect();
    let first: Vec<PosedImage> = without.iter().take(4).map(|p| (*p).clone()).collect();
    let examples = examples(&first, |_| true)?;
    // A recording says per topic why it has none: the notes of these images' topics (all such
    // notes when a --camera-id renamed the topics).
    let notes = src
        .notes
        .iter()
        .filter(|n| n.contains(crate::bag::lens::NO_INTRINSICS));
    let of_these = |n: &&String| {
        without
            .iter()
            .any(|p| n.starts_with(&format!("{}{}", p.camera, crate::bag::lens::NO_INTRINSICS)))
    };
    let mut why: Vec<&str> = notes.clone().filter(of_these).map(String::as_str).collect();
    if why.is_empty() {
        why = notes.map(String::as_str).collect();
    }
    Some(if why.is_empty() {
        PipelineError::NoIntrinsics {
            doing,
            option,
            purpose,
            what: format!("the source gives none for {examples}"),
            hint: "the readers that give intrinsics: Extended CMU-Seasons (intrinsics.txt), \
                   Virtual KITTI 2 (intrinsic.txt), KITTI odometry (calib.txt) and rosbag2 \
                   recordings (each image topic's sensor_msgs/CameraInfo); RobotCar traversals \
                   do not yet"
                .into(),
        }
    } else {
        PipelineError::NoIntrinsics {
            doing,
            option,
            purpose,
            what: why.join("; "),
            hint: "a recording gives them in each image topic's camera_info topic, \
                   --camera-info-topic names it when it is not beside the image topic"
                .into(),
        }
    })
}

/// The database with each image once: an image listed again with the same pose (within 1 mm
/// and 0.001 rad) is dropped and counted; listed again with another pose, it is refused (one
/// image cannot be two places). Same path, same image: a timestamp listed twice is one too.
pub fn deduplicated(db: &[PosedImage]) -> Result<(Vec<PosedImage>, usize), PipelineError> {
    let mut first: std::collections::HashMap<&Path, &PosedImage> = Default::default();
    let mut kept = Vec::with_capacity(db.len());
    let mut dropped = 0;
    let describe = |p: &PosedImage| match &p.world_from_cam {
        Some(w) => {
            let t = w.translation.vector;
            format!("camera centre ({:.3}, {:.3}, {:.3}) m", t.x, t.y, t.z)
        }
        None => "no pose".into(),
    };
    for p in db {
        match first.get(p.path.as_path()) {
            None => {
                first.insert(&p.path, p);
                kept.push(p.clone());
            }
            Some(a) => {
                let same = match (&a.world_from_cam, &p.world_from_cam) {
                    (Some(x), Some(y)) => {
                        (x.translation.vector - y.translation.vector).norm() <= 1e-3
                            && x.rotation.angle_to(&y.rotation) <= 1e-3
                    }
                    (None, None) => true,
                    _ => false,
                };
                if !same {
                    return Err(PipelineError::DuplicateEntry {
                        path: p.path.clone(),
                        first: describe(a),
                        second: describe(p),
                    });
                }
                dropped += 1;
            }
        }
    }
    Ok((kept, dropped))
}

/// Encodes `src.database` into a map written to `out`; the default yaw views only where every
/// image has intrinsics (otherwise none, and [`Built::note`] says why).
pub fn build_map(
    encoder: &mut MapEncoder,
    src: &SourceImages,
    out: &Path,
    opts: &BuildOptions,
) -> Result<Built, PipelineError> {
    if let Some((dims, _)) = opts.compress {
        if dims >= encoder.dim() {
            return Err(PipelineError::CompressWide {
                dims,
                dim: encoder.dim(),
            });
        }
    }
    let (db, _) = deduplicated(&src.database)?;
    let db = &db;
    if db.is_empty() {
        return Err(PipelineError::NoDatabase {
            root: src.source.root.clone(),
        });
    }
    if let Some(examples) = examples(db, |p| p.world_from_cam.is_none()) {
        // Where the poses were to come from, where the layout says.
        let hint = match (src.source.format.as_str(), src.source.slice) {
            ("kitti", Some(s)) => format!(
                "; a KITTI odometry sequence's poses are {}: missing (KITTI publishes them for \
                 sequences 00-10 only)",
                Path::new(&src.source.root)
                    .join("poses")
                    .join(format!("{s:02}.txt"))
                    .display()
            ),
            _ => String::new(),
        };
        return Err(PipelineError::Unposed { examples, hint });
    }
    // The default views only where every image has intrinsics (said by the caller).
    let note = default_views_dropped(src, db, opts);
    let yaw_views = match note {
        Some(_) => Vec::new(),
        None => opts.yaw_views.clone(),
    };
    // The options that need each image's intrinsics.
    let needs_intrinsics = match (!yaw_views.is_empty(), encoder.meta.rectified) {
        (true, false) => Some(("--yaw-views", "turns each map image about its camera")),
        (false, true) => Some((
            "--rectify",
            "undistorts each map image with its camera's lens",
        )),
        (true, true) => Some((
            "--yaw-views (and --rectify)",
            "turns each map image about its camera (and undistorts it with its lens)",
        )),
        (false, false) => None,
    };
    if let Some((option, purpose)) = needs_intrinsics {
        if let Some(e) = missing_intrinsics(src, db.iter(), "build the map", option, purpose) {
            return Err(e);
        }
    }
    if opts.adapt && encoder.adaptable() {
        let subset = encoder.prepare_subset(db, src.decode)?;
        encoder.adapt(&subset)?;
    }
    let progress = crate::progress::Progress::new("build-map", "images", db.len() as u64, 0);
    let (desc, view_desc) = if yaw_views.is_empty() {
        (
            encoder.encode_images(db, src.decode, Some(&progress))?,
            Vec::new(),
        )
    } else {
        encoder.encode_images_and_views(db, src.decode, &yaw_views, Some(&progress))?
    };
    progress.finish();
    let n = db.len();
    let dim = encoder.dim();
    let rows = |name: &str, values: &[f32]| {
        let shape = vec![values.len() / dim.max(1), dim];
        if opts.f16 {
            let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
            RawTensor::new(name, Dtype::F16, shape, &h)
        } else {
            RawTensor::new(name, Dtype::F32, shape, values)
        }
    };
    let descriptors = rows("descriptors", &desc);
    let mut poses = Vec::with_capacity(n * 7);
    let mut times = Vec::with_capacity(n);
    for p in db {
        let pose = p.world_from_cam.expect("checked above");
        let t = pose.translation.vector;
        let q = crate::geom::wxyz(&pose.rotation);
        poses.extend([t.x, t.y, t.z, q[0], q[1], q[2], q[3]]);
        times.push(p.timestamp_us.unwrap_or(-1));
    }
    let mut tensors = vec![
        descriptors,
        RawTensor::new("poses", Dtype::F64, vec![n, 7], &poses),
        RawTensor::new("timestamps_us", Dtype::I64, vec![n], &times),
    ];
    if !yaw_views.is_empty() {
        tensors.push(rows("view_descriptors", &view_desc));
    }
    let compression = opts.compress.map(|(dims, shortlist)| {
        let (t, meta) = compress::map_tensors(&desc, n, dim, dims, shortlist);
        tensors.extend(t);
        meta
    });
    for (name, values) in encoder.adapted_tensors() {
        tensors.push(RawTensor::new(
            &name,
            Dtype::F32,
            vec![values.len()],
            &values,
        ));
    }
    let mut meta = MapMeta {
        format: MAP_FORMAT.into(),
        names: db.iter().map(image_name).collect(),
        cameras: db.iter().map(|p| p.camera.clone()).collect(),
        encoder: encoder.meta.clone(),
        metric: opts.metric.name().into(),
        source: src.source.clone(),
        created_unix: file::now_unix(),
        payload_checksum: String::new(),
        compression,
        decoding: recorded_decoding(src)?,
        yaw_views_deg: yaw_views,
        lenses: lenses(db),
    };
    file::write_map(out, &tensors, &mut meta)?;
    Ok(Built { meta, note })
}

/// Each camera's lens (`MapMeta::lenses`): that of its first image with intrinsics (no
/// distortion given: a pinhole).
fn lenses(db: &[PosedImage]) -> std::collections::BTreeMap<String, super::views::Distortion> {
    let mut out = std::collections::BTreeMap::new();
    for p in db.iter().filter(|p| p.intrinsics.is_some()) {
        out.entry(p.camera.clone())
            .or_insert(p.distortion.unwrap_or([0.0; 5]));
    }
    out
}

/// Fails early, naming the path, when `out` is a folder or its folder cannot take a new file
/// (missing, read-only): better than after encoding every image.
pub fn check_writable(out: &Path) -> Result<(), PipelineError> {
    use crate::atomic::PathIoError;
    if out.is_dir() {
        return Err(PathIoError::new(
            "cannot write the map",
            out,
            std::io::Error::other(
                "is a folder; expected a file path such as slice.map.safetensors",
            ),
        )
        .into());
    }
    if out.is_file() && !is_dasgil_map(out) {
        return Err(PathIoError::new(
            "refusing to replace",
            out,
            std::io::Error::other(
                "it exists and is not a dasgil map (an image, a pose file, ...); choose another --out",
            ),
        )
        .into());
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".dasgil-write-check")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            // The probe's own temporary name is no business of the user's: say why, plainly.
            let why = if dir.is_dir() {
                std::io::Error::new(e.kind(), format!("{} (choose another --out)", e.kind()))
            } else if let Some(file) = crate::atomic::blocked_by(out) {
                std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a folder (choose another --out)", file.display()),
                )
            } else {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the folder does not exist (create it, or choose another --out)",
                )
            };
            PathIoError::new("cannot write into", dir, why).into()
        })
}

/// Whether `path` starts like a map file: a safetensors header whose metadata has `dasgil.map`
/// (read from the header only; a rebuilt map may replace an old one, nothing else may be).
fn is_dasgil_map(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut n = [0u8; 8];
    if f.read_exact(&mut n).is_err() {
        return false;
    }
    let n = u64::from_le_bytes(n);
    if n > 100 << 20 {
        return false;
    }
    let mut header = vec![0u8; n as usize];
    if f.read_exact(&mut header).is_err() {
        return false;
    }
    serde_json::from_slice::<serde_json::Value>(&header)
        .ok()
        .and_then(|v| v.get("__metadata__")?.get("dasgil.map").cloned())
        .is_some()
}

/// build-map as the command runs it: refuses to overwrite the checkpoint, builds, and returns
/// a summary line.
pub fn build_map_summary(
    enc: &mut MapEncoder,
    src: &SourceImages,
    out: &Path,
    opts: &BuildOptions,
) -> Result<String, PipelineError> {
    // Before any image is encoded: the output is none of the inputs (the checkpoint, a
    // database image) and can be written where it is to go.
    let mut inputs: Vec<(&str, &Path)> = Vec::with_capacity(src.database.len() + 1);
    if let Some(c) = enc.meta.checkpoint.as_deref() {
        inputs.push(("--checkpoint", Path::new(c)));
    }
    inputs.extend(
        src.database
            .iter()
            .map(|p| ("the database image", p.path.as_path())),
    );
    crate::atomic::refuse_overwriting_inputs(("--out", out), &inputs)?;
    check_writable(out)?;
    let (_, dropped) = deduplicated(&src.database)?;
    let started = std::time::Instant::now();
    let Built { meta, note } = build_map(enc, src, out, opts)?;
    let bytes = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    let mut cameras = meta.cameras.clone();
    cameras.sort();
    cameras.dedup();
    Ok(format!(
"map {}: {} images ({} camera{}: {}), {}-d descriptors ({}) of layers {}, metric {}, encoder {} {} (adaptation: {}, photometric: {}{}{}){}, {} in {}",
        out.display(),
        meta.names.len(),
        cameras.len(),
        if cameras.len() == 1 { "" } else { "s" },
        cameras.join(","),
        enc.dim(),
        if opts.f16 { "f16" } else { "f32" },
        meta.encoder.layers_name(),
        meta.metric,
        meta.encoder.kind,
        meta.encoder.model_fingerprint,
        meta.encoder.adaptation,
        meta.encoder.photometric_name(),
        if meta.encoder.rectified {
            ", rectified"
        } else {
            ""
        },
        if meta.yaw_views_deg.is_empty() {
            String::new()
        } else {
            format!(
                ", yaw views: {}, {} more descriptors per image",
                super::views::describe(&meta.yaw_views_deg),
                meta.yaw_views_deg.len()
            )
        },
        if meta.lenses.is_empty() {
            String::new()
        } else {
            format!(", lenses: {}", super::views::describe_lenses(&meta.lenses))
        },
        crate::resources::human_bytes(bytes),
        crate::progress::format_secs(started.elapsed().as_secs_f64())
    ) + &src.notes.iter().map(|n| format!("\n{n}")).collect::<String>()
        + &note.map(|n| format!("\n{n}")).unwrap_or_default()
        + &if dropped > 0 {
            format!(
                "\ndropped {dropped} duplicate {} (an image listed again with the same pose, \
                 within 1 mm and 0.001 rad)",
                if dropped == 1 { "entry" } else { "entries" }
            )
        } else {
            String::new()
        }
        + &match opts.compress {
            // The projection is stored with the map (K x D floats): it pays off only for maps
            // with many more rows than K.
            Some((dims, shortlist)) => {
                let projection = (dims * enc.dim() * 4) as u64;
                // The images' rows and their yaw views' rows.
                let rows = meta.names.len() * (1 + meta.yaw_views_deg.len());
                let descriptors = (rows * enc.dim() * if opts.f16 { 2 } else { 4 }) as u64;
                format!(
                    "\ncompressed search: {dims} projected values, shortlist {shortlist}; the \
                     projection adds {}{}",
                    crate::resources::human_bytes(projection),
                    if projection > descriptors {
                        format!(
                            ", more than the {} of descriptors: compression pays off for maps \
                             with many more images than {dims}",
                            crate::resources::human_bytes(descriptors)
                        )
                    } else {
                        String::new()
                    }
                )
            }
            None => String::new(),
        })
}
