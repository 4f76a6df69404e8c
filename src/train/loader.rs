//! Training data: the Virtual KITTI 2 frames the sampler draws from, the real-domain images, and
//! a background loader that decodes, resizes, flips and normalises whole batches ahead of the
//! training step (bounded queues, so memory stays flat and the device does not wait on PNGs).
//!
//! Worker k makes the batches of steps s with s % K == k and the consumer reads them in step
//! order, so the batches are the same whatever the number of threads.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use image::imageops;
use image::RgbImage;
use tch::{Device, Kind, Tensor};

use super::sampler::{FrameRef, SamplingSpace, SceneSpace, TripletDraw};
use crate::data::preprocess::Photometric;
use crate::data::vkitti2::{ColorTable, Frame, Vkitti2, Vkitti2Roots};
use crate::data::{kitti, preprocess, DataError};
use crate::geom::Pinhole;

/// One scene's camera-0 frames per variation (same count in each), with colour tables.
#[derive(Debug, Clone)]
pub struct SceneFrames {
    pub name: String,
    /// Which opened data set (root) the scene comes from.
    pub dataset: usize,
    pub variations: Vec<(String, Vec<Frame>, ColorTable)>,
}

/// Where a frame's intrinsics come from, for the messages of `--augment-yaw` without them.
pub const NEEDS_INTRINSICS: &str = ": Virtual KITTI 2's official layout has them in \
    SceneXX/<variation>/intrinsic.txt (the DASGIL repackaged layout, --dasgil-layout, has none); \
    train without --augment-yaw on such data";

/// Everything the loader reads from.
#[derive(Debug)]
pub struct TrainingData {
    /// The opened roots (their scene lists moved into `scenes`).
    datasets: Vec<Vkitti2>,
    pub scenes: Vec<SceneFrames>,
    pub real: Vec<PathBuf>,
    /// The folder `real` was gathered from (`--kitti`).
    pub real_root: PathBuf,
    pub space: SamplingSpace,
    /// Files that could not be read, with why: each is replaced by the next readable frame of
    /// its scene and variation (or the next real image), the same way every time, so a bad file
    /// never stops or loops a run and a resume stays exact.
    skipped: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Sampling(#[from] super::sampler::SamplingError),
    #[error("{0}")]
    Other(String),
}

/// A decoded labelled image at the network size.
pub struct LabelledImage {
    /// The frame decoded (the one asked for, or the readable frame that stood in for it:
    /// [`TrainingData::labelled_or_next`]).
    pub frame: FrameRef,
    /// Normalised CHW RGB.
    pub rgb: Vec<f32>,
    /// Depth in metres, HW.
    pub depth: Vec<f32>,
    /// Class indices, HW.
    pub classes: Vec<i64>,
}

/// Normalised CHW floats of an RGB image at the network size (the shared preprocessing).
fn normalised(img: &RgbImage) -> Vec<f32> {
    let plane = (img.width() * img.height()) as usize;
    let mut out = vec![0f32; 3 * plane];
    preprocess::normalise_into(img, &mut out);
    out
}

/// Nearest-neighbour resize of a row-major plane (PyTorch's `nearest`: source index =
/// floor(dst * in / out)), optionally mirrored left-right. Values are copied, never clamped or
/// blended (depth in metres, class indices).
pub fn resize_nearest<T: Copy>(
    src: &[T],
    w: u32,
    h: u32,
    out_w: u32,
    out_h: u32,
    flip: bool,
) -> Vec<T> {
    let mut out = Vec::with_capacity((out_w * out_h) as usize);
    for y in 0..out_h as u64 {
        let sy = (y * h as u64 / out_h as u64) as usize;
        for x in 0..out_w as u64 {
            let x = if flip { out_w as u64 - 1 - x } else { x };
            let sx = (x * w as u64 / out_w as u64) as usize;
            out.push(src[sy * w as usize + sx]);
        }
    }
    out
}

impl TrainingData {
    /// Opens every Virtual KITTI 2 root (scenes pooled; names suffixed with `#r`, the root's
    /// position, when several roots are given) and lists the real-domain images.
    pub fn open(vkitti: &[Vkitti2Roots], kitti_root: &Path) -> Result<Self, LoadError> {
        let mut scenes = Vec::new();
        let mut datasets = Vec::new();
        for (r, roots) in vkitti.iter().enumerate() {
            let mut ds = Vkitti2::open(roots)?;
            for scene in std::mem::take(&mut ds.scenes) {
                let mut variations = Vec::new();
                for var in scene.variations {
                    let mut frames: Vec<Frame> =
                        var.frames.into_iter().filter(|f| f.camera == 0).collect();
                    frames.sort_by_key(|f| f.index);
                    variations.push((var.name, frames, var.colors));
                }
                let name = if vkitti.len() > 1 {
                    format!("{}#{}", scene.name, r)
                } else {
                    scene.name
                };
                scenes.push(SceneFrames {
                    name,
                    dataset: r,
                    variations,
                });
            }
            datasets.push(ds);
        }
        let real = kitti::image_folder(kitti_root)?;
        let space = SamplingSpace {
            scenes: scenes
                .iter()
                .map(|s| SceneSpace {
                    variations: s.variations.iter().map(|v| v.0.clone()).collect(),
                    frames: s.variations.iter().map(|v| v.1.len()).min().unwrap_or(0),
                })
                .collect(),
            real_images: real.len(),
        };
        let names: Vec<String> = scenes.iter().map(|s| s.name.clone()).collect();
        space.check(&names)?;
        Ok(Self {
            datasets,
            scenes,
            real,
            real_root: kitti_root.to_path_buf(),
            space,
            skipped: Default::default(),
        })
    }

    /// The unreadable files met so far (path, why), in path order.
    pub fn skipped(&self) -> Vec<(String, String)> {
        let s = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        s.iter().map(|(a, b)| (a.clone(), b.clone())).collect()
    }

    fn note_skipped(&self, error: &LoadError) {
        let text = error.to_string();
        let (path, why) = text.split_once(": ").unwrap_or((&text, ""));
        let mut s = self.skipped.lock().unwrap_or_else(|e| e.into_inner());
        if !s.contains_key(path) {
            tracing::warn!(
                "skipping an unreadable training image (replaced by the next frame): {text}"
            );
            s.insert(path.to_string(), why.to_string());
        }
    }

    /// `labelled` of `r`, or, when its files cannot be read, of the nearest readable frame of the
    /// same scene and variation (r+1, r-1, r+2, ...: a positive stays near its anchor; skipped
    /// files are counted, `skipped`).
    pub fn labelled_or_next(
        &self,
        r: FrameRef,
        flip: bool,
        height: u32,
        width: u32,
        augment: Option<super::augment::Draws>,
        photometric: Photometric,
    ) -> Result<LabelledImage, LoadError> {
        let n = self.scenes[r.scene].variations[r.variation].1.len().max(1);
        let mut first_error = None;
        let order = std::iter::once(0).chain((1..n as i64).flat_map(|k| [k, -k]));
        for frame in order.map(|k| r.frame as i64 + k) {
            if frame < 0 || frame >= n as i64 {
                continue;
            }
            let at = FrameRef {
                frame: frame as usize,
                ..r
            };
            match self.labelled(at, flip, height, width, augment, photometric) {
                Ok(img) => return Ok(img),
                Err(e) => {
                    self.note_skipped(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| LoadError::Other("no frames".into())))
    }

    /// `real` of `index`, or of the next readable real image; with the index of the image
    /// decoded.
    pub fn real_or_next(
        &self,
        index: usize,
        flip: bool,
        height: u32,
        width: u32,
        photometric: Photometric,
    ) -> Result<(usize, Vec<f32>), LoadError> {
        let n = self.real.len().max(1);
        let mut first_error = None;
        for k in 0..n {
            let at = (index + k) % n;
            match self.real(at, flip, height, width, photometric) {
                Ok(img) => return Ok((at, img)),
                Err(e) => {
                    self.note_skipped(&e);
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(first_error.unwrap_or_else(|| LoadError::Other("no real images".into())))
    }

    /// The first frame (its RGB file) without intrinsics, if any: the variations of a root
    /// without Virtual KITTI 2's `intrinsic.txt` (and every variation of the DASGIL
    /// repackaged layout, which has no text ground truth).
    pub fn frame_without_intrinsics(&self) -> Option<&Path> {
        self.scenes
            .iter()
            .flat_map(|s| &s.variations)
            .flat_map(|(_, frames, _)| frames)
            .find(|f| f.intrinsics.is_none())
            .map(|f| f.rgb.as_path())
    }

    /// The frame a reference points at.
    pub fn frame(&self, r: FrameRef) -> &Frame {
        &self.scenes[r.scene].variations[r.variation].1[r.frame]
    }

    /// Decodes one labelled frame at the network size: RGB bicubic, depth and classes nearest;
    /// then, with augmentation draws, augmented (`super::augment`; a turn uses the frame's
    /// intrinsics at the network size, mirrored with the image); then normalised per image (`photometric`, as inference does after
    /// the resize: the augmentation stands for what the camera and the world did).
    pub fn labelled(
        &self,
        r: FrameRef,
        flip: bool,
        height: u32,
        width: u32,
        augment: Option<super::augment::Draws>,
        photometric: Photometric,
    ) -> Result<LabelledImage, LoadError> {
        let scene = &self.scenes[r.scene];
        let (_, frames, colors) = &scene.variations[r.variation];
        let sample = self.datasets[scene.dataset].load(&frames[r.frame], colors)?;
        let mut rgb = preprocess::resize_bicubic(&sample.rgb, width, height);
        if flip {
            imageops::flip_horizontal_in_place(&mut rgb);
        }
        let (sw, sh) = sample.depth_m.dimensions();
        let mut depth = resize_nearest(sample.depth_m.as_raw(), sw, sh, width, height, flip);
        let mut classes = resize_nearest(sample.classes.as_raw(), sw, sh, width, height, flip);
        if let Some(draws) = augment {
            // The turn needs the camera, at the network size and mirrored with the image.
            let frame = &frames[r.frame];
            let camera = match (draws.yaw_deg > 0.0, frame.intrinsics) {
                (false, _) => None,
                (true, Some(k)) => Some(network_camera(&k, width, height, flip)),
                // `train` refuses such data before its first step (frame_without_intrinsics).
                (true, None) => {
                    return Err(LoadError::Other(format!(
                        "{}: augment_yaw_deg {} needs the frame's intrinsics{}",
                        frame.rgb.display(),
                        draws.yaw_deg,
                        NEEDS_INTRINSICS
                    )))
                }
            };
            super::augment::augment(&mut rgb, &mut depth, &mut classes, &draws, camera.as_ref());
        }
        photometric.apply(&mut rgb);
        Ok(LabelledImage {
            frame: r,
            rgb: normalised(&rgb),
            depth,
            classes: classes.into_iter().map(i64::from).collect(),
        })
    }

    /// Decodes one real-domain image at the network size, normalised per image
    /// (`photometric`).
    pub fn real(
        &self,
        index: usize,
        flip: bool,
        height: u32,
        width: u32,
        photometric: Photometric,
    ) -> Result<Vec<f32>, LoadError> {
        let img =
            preprocess::load_rgb(&self.real[index]).map_err(|e| LoadError::Other(e.to_string()))?;
        let mut rgb = preprocess::resize_bicubic(&img, width, height);
        if flip {
            imageops::flip_horizontal_in_place(&mut rgb);
        }
        photometric.apply(&mut rgb);
        Ok(normalised(&rgb))
    }
}

/// A frame's intrinsics at the network size, mirrored (about the pixel centres) when the image
/// was flipped.
pub fn network_camera(k: &Pinhole, width: u32, height: u32, flip: bool) -> Pinhole {
    let mut k = k.scaled(width, height);
    if flip {
        k.cx = (width - 1) as f64 - k.cx;
    }
    k
}

/// A batch in host memory, as the workers make it.
pub struct HostBatch {
    pub step: u64,
    pub draws: Vec<TripletDraw>,
    /// Per triplet, the frames decoded for A, A+ and B (a readable frame stands in for an
    /// unreadable one drawn), and the real image's index.
    pub shown: Vec<[FrameRef; 3]>,
    pub real_shown: Vec<usize>,
    /// A, A+, B: each `[B,3,H,W]` RGB, `[B,1,H,W]` depth, `[B,H,W]` classes.
    pub rgb: [Vec<f32>; 3],
    pub depth: [Vec<f32>; 3],
    pub classes: [Vec<i64>; 3],
    pub real: Vec<f32>,
}

/// One labelled triple on the device.
pub struct Labelled {
    pub rgb: Tensor,
    pub depth: Tensor,
    pub classes: Tensor,
}

/// A batch on the device: anchor, positive, negative and real images.
pub struct Batch {
    pub step: u64,
    pub draws: Vec<TripletDraw>,
    pub triplet: [Labelled; 3],
    pub real: Tensor,
}

impl HostBatch {
    pub fn to_device(&self, device: Device, height: i64, width: i64) -> Batch {
        let b = self.draws.len() as i64;
        let t = |i: usize| Labelled {
            rgb: Tensor::from_slice(&self.rgb[i])
                .view([b, 3, height, width])
                .to_device(device),
            depth: Tensor::from_slice(&self.depth[i])
                .view([b, 1, height, width])
                .to_device(device),
            classes: Tensor::from_slice(&self.classes[i])
                .view([b, height, width])
                .to_kind(Kind::Int64)
                .to_device(device),
        };
        Batch {
            step: self.step,
            draws: self.draws.clone(),
            triplet: [t(0), t(1), t(2)],
            real: Tensor::from_slice(&self.real)
                .view([b, 3, height, width])
                .to_device(device),
        }
    }
}

/// What makes the batch of a step.
#[derive(Debug, Clone, Copy)]
pub struct BatchSpec {
    pub seed: u64,
    pub batch: usize,
    pub window: usize,
    /// The share of negatives drawn from the anchor's scene (`sampler`, `hard_negatives`).
    pub hard_negatives: f64,
    pub height: u32,
    pub width: u32,
    /// Augment each labelled image (`super::augment`).
    pub augment: bool,
    /// With `augment`, also remap the palette (`augment_palette`).
    pub augment_palette: bool,
    /// With `augment`, turn the camera by up to this many degrees (`augment_yaw_deg`; 0: never).
    pub augment_yaw_deg: f64,
    /// Per-image normalisation of every image, labelled (after augmentation) and real.
    pub photometric: Photometric,
}

/// Makes the batch of `step` (decoding every image; no tensors).
pub fn make_batch(data: &TrainingData, spec: &BatchSpec, step: u64) -> Result<HostBatch, String> {
    let draws = data.space.draw_step(
        spec.seed,
        step,
        spec.batch,
        spec.window,
        spec.hard_negatives,
    );
    let mut rgb: [Vec<f32>; 3] = Default::default();
    let mut depth: [Vec<f32>; 3] = Default::default();
    let mut classes: [Vec<i64>; 3] = Default::default();
    let mut real = Vec::new();
    let (mut shown, mut real_shown) = (Vec::new(), Vec::new());
    for (t, d) in draws.iter().enumerate() {
        let mut frames = [d.anchor; 3];
        let parts = [
            (d.anchor, d.flip_pair),
            (d.positive, d.flip_pair),
            (d.negative, d.flip_negative),
        ];
        for (i, (r, flip)) in parts.into_iter().enumerate() {
            let aug = spec.augment.then(|| super::augment::Draws {
                key: super::augment::key(spec.seed, step, t, i),
                palette: spec.augment_palette,
                yaw_deg: spec.augment_yaw_deg,
            });
            let img = data
                .labelled_or_next(r, flip, spec.height, spec.width, aug, spec.photometric)
                .map_err(|e| format!("step {step}: {e}"))?;
            frames[i] = img.frame;
            rgb[i].extend_from_slice(&img.rgb);
            depth[i].extend_from_slice(&img.depth);
            classes[i].extend_from_slice(&img.classes);
        }
        let (at, img) = data
            .real_or_next(
                d.real,
                d.flip_real,
                spec.height,
                spec.width,
                spec.photometric,
            )
            .map_err(|e| format!("step {step}: {e}"))?;
        real.extend(img);
        shown.push(frames);
        real_shown.push(at);
    }
    Ok(HostBatch {
        step,
        draws,
        shown,
        real_shown,
        rgb,
        depth,
        classes,
        real,
    })
}

/// Background batch makers for steps `start..end`, read in order with `Loader::next`.
pub struct Loader {
    receivers: Vec<Receiver<Result<HostBatch, String>>>,
    handles: Vec<JoinHandle<()>>,
    next: u64,
    end: u64,
}

impl Loader {
    pub fn start(
        data: Arc<TrainingData>,
        spec: BatchSpec,
        start: u64,
        end: u64,
        threads: usize,
        prefetch: usize,
    ) -> Self {
        let threads = threads.max(1);
        let mut receivers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for k in 0..threads as u64 {
            let (tx, rx) = sync_channel(prefetch.max(1));
            let data = Arc::clone(&data);
            let first = start + (k + threads as u64 - start % threads as u64) % threads as u64;
            handles.push(std::thread::spawn(move || {
                let mut step = first;
                while step < end {
                    let item = make_batch(&data, &spec, step);
                    let failed = item.is_err();
                    if tx.send(item).is_err() || failed {
                        return; // the consumer stopped, or it has the error
                    }
                    step += threads as u64;
                }
            }));
            receivers.push(rx);
        }
        // Receivers are indexed by step % threads.
        Self {
            receivers,
            handles,
            next: start,
            end,
        }
    }

    /// The next step's batch, or None after the last step.
    pub fn next_batch(&mut self) -> Option<Result<HostBatch, String>> {
        if self.next >= self.end {
            return None;
        }
        let k = (self.next % self.receivers.len() as u64) as usize;
        self.next += 1;
        Some(
            self.receivers[k]
                .recv()
                .unwrap_or_else(|_| Err("the data loader thread stopped unexpectedly".into())),
        )
    }
}

impl Drop for Loader {
    fn drop(&mut self) {
        // Dropping the receivers ends the workers at their next send.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{network_camera, resize_nearest};
    use crate::geom::Pinhole;
    use image::{imageops, Rgb, RgbImage};

    #[test]
    fn a_flipped_image_turned_is_the_image_turned_the_other_way_flipped() {
        // The camera of a flipped image must be mirrored, or a turn of it moves the scene
        // about the wrong centre: with an off-centre principal point, turning the flipped
        // image by +a is the flip of the image turned by -a only with the mirrored camera.
        let (w, h) = (64u32, 32u32);
        let k = Pinhole {
            width: 2 * w,
            height: 2 * h,
            fx: 80.0,
            fy: 80.0,
            cx: 40.0,
            cy: 30.0,
        };
        let img = RgbImage::from_fn(w, h, |x, y| {
            Rgb([(x * 4) as u8, (y * 8) as u8, (x ^ y) as u8])
        });
        let depth: Vec<f32> = (0..w * h).map(|i| 5.0 + (i % w) as f32).collect();
        let classes: Vec<u8> = (0..w * h).map(|i| (i % w) as u8).collect();
        let turned = |img: &RgbImage, cam: &Pinhole, yaw: f64| {
            let (mut r, mut d, mut c) = (img.clone(), depth.clone(), classes.clone());
            crate::train::augment::turn(&mut r, &mut d, &mut c, cam, yaw);
            r
        };
        let flipped = imageops::flip_horizontal(&img);
        let mut want = turned(&img, &network_camera(&k, w, h, false), -6.0);
        imageops::flip_horizontal_in_place(&mut want);
        assert_eq!(turned(&flipped, &network_camera(&k, w, h, true), 6.0), want);
        assert_ne!(
            turned(&flipped, &network_camera(&k, w, h, false), 6.0),
            want,
            "the unmirrored camera should not do"
        );
    }

    #[test]
    fn nearest_copies_values_as_pytorch_picks_them_and_mirrors() {
        // 4x1 -> 2x1 picks source 0 and 2; values above 1 are kept (metres).
        assert_eq!(
            resize_nearest(&[700.0f32, 2.0, 3.0, 4.0], 4, 1, 2, 1, false),
            [700.0, 3.0]
        );
        assert_eq!(resize_nearest(&[1u8, 2], 2, 1, 4, 1, false), [1, 1, 2, 2]);
        assert_eq!(resize_nearest(&[1u8, 2], 2, 1, 4, 1, true), [2, 2, 1, 1]);
        assert_eq!(resize_nearest(&[1u8, 2, 3, 4], 1, 4, 1, 2, false), [1, 3]);
    }
}
