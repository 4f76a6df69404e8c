//! Contact sheets of generated data, read back through the dataset readers, so a person can see
//! what was made: `--preview FILE.png` on every `dasgil-tools synth` command.

use std::path::Path;

use image::imageops::{overlay, resize, FilterType};
use image::{Rgb, RgbImage};

use super::{save_png_rgb, SynthError};
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

fn thumb(img: &RgbImage) -> RgbImage {
    let h = (img.height() as f64 * CELL_W as f64 / img.width() as f64)
        .round()
        .max(1.0) as u32;
    resize(img, CELL_W, h, FilterType::Triangle)
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

/// Lays rows of images out as a grid of thumbnails and writes it.
pub fn contact_sheet(rows: &[Vec<RgbImage>], path: &Path) -> Result<(), SynthError> {
    let thumbs: Vec<Vec<RgbImage>> = rows.iter().map(|r| r.iter().map(thumb).collect()).collect();
    let cols = thumbs.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let row_h: Vec<u32> = thumbs
        .iter()
        .map(|r| r.iter().map(|t| t.height()).max().unwrap_or(0))
        .collect();
    let gap = 4;
    let width = cols * (CELL_W + gap) + gap;
    let height = row_h.iter().map(|h| h + gap).sum::<u32>() + gap;
    let mut sheet = RgbImage::from_pixel(width.max(1), height.max(1), Rgb([32, 32, 32]));
    let mut y = gap;
    for (r, row) in thumbs.iter().enumerate() {
        for (c, t) in row.iter().enumerate() {
            overlay(
                &mut sheet,
                t,
                (gap + c as u32 * (CELL_W + gap)) as i64,
                y as i64,
            );
        }
        y += row_h[r] + gap;
    }
    save_png_rgb(path, &sheet)
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
    let mut rows = Vec::new();
    for var in &ds.scenes[0].variations {
        let frame = &var.frames[0];
        rows.push(vkitti2_row(&ds.load(frame, &var.colors).map_err(read_err)?));
    }
    contact_sheet(&rows, path)
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
        rows.push(evenly(&seq.images, crate::data::Decode::Rgb)?);
    }
    contact_sheet(&rows, path)
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
    let mut rows = Vec::new();
    for i in (0..db.len()).step_by((places / 4).max(1)).take(4) {
        let mut row = vec![db[i].load_rgb(crate::data::Decode::Rgb).map_err(read_err)?];
        for q in queries.iter().skip(i).step_by(places.max(1)) {
            row.push(q.load_rgb(crate::data::Decode::Rgb).map_err(read_err)?);
        }
        rows.push(row);
    }
    contact_sheet(&rows, path)
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
        rows.push(evenly(&tr.images, tr.decode())?);
    }
    contact_sheet(&rows, path)
}

/// Up to 4 images spread evenly over a sequence, decoded.
fn evenly(
    images: &[crate::data::PosedImage],
    decode: crate::data::Decode,
) -> Result<Vec<RgbImage>, SynthError> {
    let k = images.len().min(4);
    (0..k)
        .map(|i| {
            images[i * images.len() / k]
                .load_rgb(decode)
                .map_err(read_err)
        })
        .collect()
}

fn read_err(e: crate::data::DataError) -> SynthError {
    SynthError::Options(format!("reading back for the preview: {e}"))
}
