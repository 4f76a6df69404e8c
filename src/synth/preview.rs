//! Contact sheets of generated data, read back through the dataset readers, so a person can see
//! what was made: `--preview FILE.png` on every `dasgil-tools synth` command.

use std::path::Path;

use image::{Rgb, RgbImage};

use super::SynthError;
use crate::data::vkitti2::{Sample, CLASSES};

/// Thumbnail width of each cell.
pub const CELL_W: u32 = 320;

/// Depth in metres -> colour (near warm, far cool, sky black), log scale over 1..200 m.
pub fn colour_depth(z: f32) -> Rgb<u8> {
    if !z.is_finite() || z >= 655.0 {
        return Rgb([0, 0, 0]);
    }
    let t = ((z.max(1.0).ln() / 200f32.ln()).clamp(0.0, 1.0) * 4.0) as f64;
    let stops = [
        [255.0, 255.0, 180.0],
        [255.0, 170.0, 40.0],
        [210.0, 60.0, 70.0],
        [110.0, 30.0, 140.0],
        [20.0, 20.0, 90.0],
    ];
    let i = (t.floor() as usize).min(3);
    let f = t - i as f64;
    let c: Vec<u8> = (0..3)
        .map(|k| (stops[i][k] + (stops[i + 1][k] - stops[i][k]) * f) as u8)
        .collect();
    Rgb([c[0], c[1], c[2]])
}

/// One row per sample: RGB, depth, segmentation.
pub fn vkitti2_row(s: &Sample) -> Vec<RgbImage> {
    let (w, h) = s.rgb.dimensions();
    let depth = RgbImage::from_fn(w, h, |x, y| colour_depth(s.depth_m.get_pixel(x, y).0[0]));
    let seg = RgbImage::from_fn(w, h, |x, y| {
        Rgb(CLASSES[(s.classes.get_pixel(x, y).0[0] as usize).min(14)].1)
    });
    vec![s.rgb.clone(), depth, seg]
}

/// Lays rows of captioned images out as a grid of thumbnails (CELL_W wide) under a title and
/// writes it.
pub fn contact_sheet(
    title: &str,
    rows: &[Vec<(String, RgbImage)>],
    path: &Path,
) -> Result<(), SynthError> {
    crate::plot::image_sheet(path, title, rows, CELL_W).map_err(|e| match e {
        crate::plot::PlotError::Io(e) => SynthError::Io(e),
        crate::plot::PlotError::Draw { path, message } => SynthError::Encode { path, message },
    })
}

/// The file name of an image, for a caption.
fn file_name(p: &crate::data::PosedImage) -> String {
    p.path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Virtual KITTI 2: for the first scene, one row per variation (frame 0, Camera_0).
pub fn vkitti2(
    out: &Path,
    layout: crate::data::vkitti2::Layout,
    path: &Path,
) -> Result<(), SynthError> {
    use crate::data::vkitti2::{Layout, Vkitti2, Vkitti2Roots};
    let roots = match layout {
        Layout::Official => Vkitti2Roots::official(out),
        Layout::Dasgil => Vkitti2Roots::dasgil(out),
    };
    let ds = Vkitti2::open(&roots).map_err(read_err)?;
    let scene = &ds.scenes[0];
    let mut rows = Vec::new();
    for var in &scene.variations {
        let frame = &var.frames[0];
        let row = vkitti2_row(&ds.load(frame, &var.colors).map_err(read_err)?);
        let what = ["rgb", "depth", "classes"];
        rows.push(
            row.into_iter()
                .zip(what)
                .map(|(im, w)| (format!("{}: {w}", var.name), im))
                .collect(),
        );
    }
    contact_sheet(
        &format!(
            "Virtual KITTI 2 (synthetic), {} frame 0, Camera_0: each variation's image, depth \
             (near yellow, far blue, 1-200 m log) and classes",
            scene.name
        ),
        &rows,
        path,
    )
}

/// KITTI odometry: up to 4 frames of each sequence per row.
pub fn kitti(out: &Path, sequences: usize, path: &Path) -> Result<(), SynthError> {
    let mut rows = Vec::new();
    for s in 0..sequences {
        let seq = crate::data::kitti::OdometrySequence::open(
            &out.join("dataset"),
            &format!("{s:02}"),
            "image_2",
        )
        .map_err(read_err)?;
        rows.push(
            evenly(&seq.images, crate::data::Decode::Rgb)?
                .into_iter()
                .map(|(p, im)| (format!("{s:02}/image_2/{}", file_name(p)), im))
                .collect(),
        );
    }
    contact_sheet(
        "KITTI odometry (synthetic, the unlabelled real domain): frames spread over each sequence",
        &rows,
        path,
    )
}

/// CMU slice: per place (up to 4), the database image of c0 then the same place in each query
/// condition.
pub fn cmu(out: &Path, slice: u32, places: usize, path: &Path) -> Result<(), SynthError> {
    let sl = crate::data::cmu_seasons::CmuSlice::open(out, slice).map_err(read_err)?;
    let db: Vec<_> = sl
        .database_images()
        .into_iter()
        .filter(|p| p.camera == "c0")
        .collect();
    let queries: Vec<_> = sl
        .query_images()
        .into_iter()
        .filter(|p| p.camera == "c0")
        .collect();
    let slice_dir = out.join(format!("slice{slice}"));
    let conditions = crate::eval::offline::synthetic_conditions(&slice_dir);
    let mut rows = Vec::new();
    for i in (0..db.len()).step_by((places / 4).max(1)).take(4) {
        let load =
            |p: &crate::data::PosedImage| p.load_rgb(crate::data::Decode::Rgb).map_err(read_err);
        let mut row = vec![(format!("place {i}: database"), load(&db[i])?)];
        for q in queries.iter().skip(i).step_by(places.max(1)) {
            let name = file_name(q);
            let condition = conditions.get(&name).cloned().unwrap_or(name);
            row.push((format!("place {i}: query, {condition}"), load(q)?));
        }
        rows.push(row);
    }
    contact_sheet(
        &format!(
            "Extended CMU-Seasons slice {slice} (synthetic), camera c0: per place, the database \
             image and the same place in each query condition"
        ),
        &rows,
        path,
    )
}

/// RobotCar: 4 frames of each traversal (demosaiced), one row per traversal.
pub fn robotcar(out: &Path, traversals: usize, path: &Path) -> Result<(), SynthError> {
    let mut rows = Vec::new();
    for t in 0..traversals {
        let tr = crate::data::robotcar::Traversal::open(
            &out.join(super::robotcar::traversal_name(t)),
            "stereo/centre",
        )
        .map_err(read_err)?;
        let name = super::robotcar::traversal_name(t);
        rows.push(
            evenly(&tr.images, tr.decode())?
                .into_iter()
                .map(|(p, im)| (format!("{name}: {}", file_name(p)), im))
                .collect(),
        );
    }
    contact_sheet(
        "Oxford RobotCar (synthetic), stereo/centre demosaiced: frames spread over each traversal",
        &rows,
        path,
    )
}

/// Up to 4 images spread evenly over a sequence, decoded.
fn evenly(
    images: &[crate::data::PosedImage],
    decode: crate::data::Decode,
) -> Result<Vec<(&crate::data::PosedImage, RgbImage)>, SynthError> {
    let k = images.len().min(4);
    (0..k)
        .map(|i| {
            let p = &images[i * images.len() / k];
            Ok((p, p.load_rgb(decode).map_err(read_err)?))
        })
        .collect()
}

fn read_err(e: crate::data::DataError) -> SynthError {
    SynthError::Options(format!("reading back for the preview: {e}"))
}
