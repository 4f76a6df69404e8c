//! What a person looks at during and after training: the loss curves (from losses.csv), the
//! predictions of the current generator on one fixed sample, next to its ground truth, and the
//! first batch of the latest start as the network receives it (batch.png: what augmentation
//! does).

use std::path::Path;

use image::{Rgb, RgbImage};
use tch::{Kind, Tensor};

use super::loader::{BatchSpec, HostBatch, LabelledImage, TrainingData};
use super::sampler::FrameRef;
use super::{TrainConfig, TrainError, Trainer};
use crate::data::preprocess::Photometric;
use crate::data::vkitti2::CLASSES;
use crate::plot::{self, Panel, Series};
use crate::synth::preview::colour_depth;

/// The fixed sample shown in predictions.png: the middle frame of the last scene's `clone`
/// variation (or its first variation), unflipped.
pub struct ValidationSample {
    pub name: String,
    pub image: LabelledImage,
    pub height: u32,
    pub width: u32,
}

impl ValidationSample {
    pub fn pick(data: &TrainingData, spec: &BatchSpec) -> Result<Self, TrainError> {
        let scene = data.scenes.len() - 1;
        let s = &data.scenes[scene];
        let variation = s
            .variations
            .iter()
            .position(|v| v.0 == "clone")
            .unwrap_or(0);
        let frame = data.space.scenes[scene].frames / 2;
        let r = FrameRef {
            scene,
            variation,
            frame,
        };
        let image =
            data.labelled_or_next(r, false, spec.height, spec.width, None, spec.photometric)?;
        Ok(Self {
            name: frame_name(data, image.frame, false),
            image,
            height: spec.height,
            width: spec.width,
        })
    }
}

fn denormalise(chw: &[f32], w: u32, h: u32) -> RgbImage {
    let plane = (w * h) as usize;
    RgbImage::from_fn(w, h, |x, y| {
        let i = (y * w + x) as usize;
        // Rounded: (v / 255 - 0.5) / 0.5 comes back a hair under v for some v.
        let c = |k: usize| {
            ((chw[k * plane + i] * 0.5 + 0.5) * 255.0)
                .round()
                .clamp(0.0, 255.0) as u8
        };
        Rgb([c(0), c(1), c(2)])
    })
}

fn depth_image(d: &[f32], w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| colour_depth(d[(y * w + x) as usize]))
}

fn class_image(c: &[i64], w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let k = c[(y * w + x) as usize].clamp(0, CLASSES.len() as i64 - 1) as usize;
        Rgb(CLASSES[k].1)
    })
}

/// loss_curves.png and predictions.png in `out`.
pub fn write_pictures(
    out: &Path,
    cfg: &TrainConfig,
    trainer: &Trainer,
    val: &ValidationSample,
) -> Result<(), TrainError> {
    loss_curves(&out.join("losses.csv"), &out.join("loss_curves.png"), cfg)?;
    predictions(&out.join("predictions.png"), trainer, val)
}

/// Up to this many triplets of a batch are drawn in batch.png.
const BATCH_ROWS: usize = 4;

/// How a frame is named in batch.png and predictions.png: scene, variation, frame, flip.
fn frame_name(data: &TrainingData, r: FrameRef, flip: bool) -> String {
    let s = &data.scenes[r.scene];
    format!(
        "{} {} frame {}{}",
        s.name,
        s.variations[r.variation].0,
        data.frame(r).index,
        if flip { " flipped" } else { "" }
    )
}

/// A batch.png caption: the frame shown, and the frame drawn when an unreadable one was
/// replaced by it.
fn shown_name(data: &TrainingData, drawn: FrameRef, shown: FrameRef, flip: bool) -> String {
    let name = frame_name(data, shown, flip);
    if drawn == shown {
        name
    } else {
        format!("{name} (for unreadable frame {})", data.frame(drawn).index)
    }
}

/// The rows of batch.png: per triplet (at most [`BATCH_ROWS`]), the anchor with its depth and
/// classes, the positive, the negative (labelled images: augmented when the run augments) and
/// the real-domain image (never augmented), each as the network receives it (normalised per
/// image, shown back in 8 bits).
pub fn batch_rows(
    data: &TrainingData,
    spec: &BatchSpec,
    host: &HostBatch,
) -> Vec<Vec<(String, RgbImage)>> {
    let (w, h) = (spec.width, spec.height);
    let plane = (w * h) as usize;
    let rgb = |chw: &[f32], t: usize| denormalise(&chw[t * 3 * plane..(t + 1) * 3 * plane], w, h);
    host.draws
        .iter()
        .take(BATCH_ROWS)
        .enumerate()
        .map(|(t, d)| {
            let labels = t * plane..(t + 1) * plane;
            let [a, p, n] = host.shown[t];
            let at = host.real_shown[t];
            let path = &data.real[at];
            let real = tail(path.strip_prefix(&data.real_root).unwrap_or(path));
            let mut real = format!("real: {real}{}", if d.flip_real { " flipped" } else { "" });
            if at != d.real {
                real.push_str(" (for an unreadable one)");
            }
            vec![
                (
                    format!("anchor: {}", shown_name(data, d.anchor, a, d.flip_pair)),
                    rgb(&host.rgb[0], t),
                ),
                (
                    "its depth".to_string(),
                    depth_image(&host.depth[0][labels.clone()], w, h),
                ),
                (
                    "its classes".to_string(),
                    class_image(&host.classes[0][labels], w, h),
                ),
                (
                    format!("positive: {}", shown_name(data, d.positive, p, d.flip_pair)),
                    rgb(&host.rgb[1], t),
                ),
                (
                    format!(
                        "negative: {}",
                        shown_name(data, d.negative, n, d.flip_negative)
                    ),
                    rgb(&host.rgb[2], t),
                ),
                (real, rgb(&host.real, t)),
            ]
        })
        .collect()
}

/// A path's last components, as many as fit in about 28 characters (at least the file name),
/// after `.../` when any were left out: the end (sequence, camera, file) is what tells images
/// apart, so a caption cut for width loses the start.
fn tail(path: &Path) -> String {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let mut kept = 0;
    let mut len = 0;
    for p in parts.iter().rev() {
        if kept > 0 && len + 1 + p.chars().count() > 28 {
            break;
        }
        len += p.chars().count() + usize::from(kept > 0);
        kept += 1;
    }
    let shown = parts[parts.len() - kept..].join("/");
    if kept < parts.len() {
        format!(".../{shown}")
    } else {
        shown
    }
}

/// What batch.png's title says of the batch's making. Every augmentation is drawn per image,
/// so an image may show none of them.
pub fn batch_title(spec: &BatchSpec, step: u64) -> String {
    let mut made = if spec.augment {
        let mut s = "labelled images augmented at random, each image on its own".to_string();
        if spec.augment_palette {
            s.push_str(", palette remapped with p 0.5");
        }
        if spec.augment_yaw_deg > 0.0 {
            s.push_str(&format!(
                ", camera turned with p 0.5 within +-{} deg",
                spec.augment_yaw_deg
            ));
        }
        s.push_str("; real-domain images not augmented");
        s
    } else {
        "not augmented".to_string()
    };
    if spec.photometric != Photometric::None {
        made.push_str(&format!("; every image normalised: {}", spec.photometric));
    }
    format!("step {step}: the batch as the network receives it ({made})")
}

/// batch.png: [`batch_rows`] under [`batch_title`].
pub fn write_batch(
    png: &Path,
    data: &TrainingData,
    spec: &BatchSpec,
    host: &HostBatch,
) -> Result<(), TrainError> {
    plot::image_sheet(
        png,
        &batch_title(spec, host.step),
        &batch_rows(data, spec, host),
        320,
    )?;
    Ok(())
}

/// Reads losses.csv; returns the header and rows.
pub fn read_losses(path: &Path) -> Result<(Vec<String>, Vec<Vec<f64>>), TrainError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| crate::atomic::PathIoError::new("cannot read", path, e))?;
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|v| v.parse().unwrap_or(f64::NAN))
                .collect()
        })
        .collect();
    Ok((header, rows))
}

/// Running mean over a window so noisy per-step losses read as trends.
fn smooth(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let w = (points.len() / 40).max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= w {
            sum -= points[i - w].1;
        }
        out.push((x, sum / (i + 1).min(w) as f64));
    }
    out
}

fn loss_curves(csv: &Path, png: &Path, cfg: &TrainConfig) -> Result<(), TrainError> {
    let (header, rows) = read_losses(csv)?;
    let col = |name: &str| header.iter().position(|h| h == name);
    let series = |names: &[&str]| -> Vec<Series> {
        names
            .iter()
            .filter_map(|&n| {
                let i = col(n)?;
                let pts: Vec<(f64, f64)> = rows
                    .iter()
                    .filter_map(|r| Some((*r.first()?, *r.get(i)?)))
                    .collect();
                Some(Series {
                    name: n.to_string(),
                    points: smooth(&pts),
                })
            })
            .collect()
    };
    let trip_names: Vec<String> = std::iter::once("triplet_total".to_string())
        .chain(cfg.triplet.iter().map(|t| format!("triplet_e{}", t.layer)))
        .collect();
    let trip_refs: Vec<&str> = trip_names.iter().map(String::as_str).collect();
    let s_total = series(&["generator_total"]);
    let s_depth = series(&["depth_anchor", "depth_positive", "depth_negative"]);
    let s_seg = series(&["seg_anchor", "seg_positive", "seg_negative"]);
    let s_trip = series(&trip_refs);
    let s_adv = series(&["adversarial_generator", "discriminator"]);
    let panels = [
        Panel {
            title: "generator total",
            x_label: "step",
            y_label: "loss",
            series: &s_total,
            log_y: true,
            y_range: None,
        },
        Panel {
            title: "depth L1 (m, mean of 4 scales)",
            x_label: "step",
            y_label: "loss",
            series: &s_depth,
            log_y: true,
            y_range: None,
        },
        Panel {
            title: "segmentation cross-entropy",
            x_label: "step",
            y_label: "loss",
            series: &s_seg,
            log_y: true,
            y_range: None,
        },
        Panel {
            title: "multi-scale triplet (weighted)",
            x_label: "step",
            y_label: "loss",
            series: &s_trip,
            log_y: false,
            y_range: None,
        },
        Panel {
            title: "LSGAN (x lambda_adversarial)",
            x_label: "step",
            y_label: "loss",
            series: &s_adv,
            // From thousands in the first steps to below 1: a linear axis flattens the rest.
            log_y: true,
            y_range: None,
        },
    ];
    plot::charts(png, &panels, 2, 1200, 1000)?;
    Ok(())
}

fn predictions(png: &Path, trainer: &Trainer, val: &ValidationSample) -> Result<(), TrainError> {
    let (w, h) = (val.width, val.height);
    let xs = Tensor::from_slice(&val.image.rgb)
        .view([1, 3, h as i64, w as i64])
        .to_device(trainer.device);
    let out = tch::no_grad(|| trainer.gen.forward_t(&xs, false))?;
    let depth: Vec<f32> = Vec::try_from(
        out.depth[out.depth.len() - 1]
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .flatten(0, -1),
    )?;
    let classes: Vec<i64> = Vec::try_from(
        out.seg
            .argmax(1, false)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?;
    let input = denormalise(&val.image.rgb, w, h);
    let rows = vec![
        vec![
            ("input".to_string(), input.clone()),
            (
                "depth, ground truth".to_string(),
                depth_image(&val.image.depth, w, h),
            ),
            ("depth, predicted".to_string(), depth_image(&depth, w, h)),
        ],
        vec![
            ("input".to_string(), input),
            (
                "classes, ground truth".to_string(),
                class_image(&val.image.classes, w, h),
            ),
            (
                "classes, predicted".to_string(),
                class_image(&classes, w, h),
            ),
        ],
    ];
    plot::image_sheet(
        png,
        &format!(
            "after {} steps: {} (depth near yellow, far blue, 1-200 m log, sky black)",
            trainer.step, val.name
        ),
        &rows,
        400,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{kitti, vkitti2};
    use crate::train::loader::make_batch;

    #[test]
    fn batch_png_shows_each_triplet_as_the_loader_makes_it() {
        let dir = tempfile::tempdir().unwrap();
        vkitti2::generate(&vkitti2::Options {
            out: dir.path().join("vk"),
            seed: 3,
            scenes: 1,
            frames: 6,
            width: 160,
            height: 64,
            cameras: 1,
            layout: crate::data::vkitti2::Layout::Official,
            appearance: Default::default(),
            lateral: 0.0,
        })
        .unwrap();
        kitti::generate(&kitti::Options {
            out: dir.path().join("ki"),
            seed: 4,
            sequences: 1,
            frames: 3,
            width: 160,
            height: 64,
            styled: false,
        })
        .unwrap();
        let data = TrainingData::open(
            &[crate::data::vkitti2::Vkitti2Roots::official(
                &dir.path().join("vk"),
            )],
            &dir.path().join("ki"),
        )
        .unwrap();
        let spec = BatchSpec {
            seed: 7,
            batch: 5,
            window: 3,
            hard_negatives: 0.0,
            height: 32,
            width: 80,
            augment: true,
            augment_palette: false,
            augment_yaw_deg: 8.0,
            photometric: Photometric::None,
        };
        let host = make_batch(&data, &spec, 11).unwrap();
        let rows = batch_rows(&data, &spec, &host);
        // At most four triplets, six pictures each; these draws show flipped and unflipped
        // pairs both.
        assert_eq!(rows.len(), BATCH_ROWS);
        assert!(rows.iter().all(|r| r.len() == 6));
        let flips: Vec<bool> = host.draws[..BATCH_ROWS]
            .iter()
            .map(|d| d.flip_pair)
            .collect();
        assert!(flips.contains(&true) && flips.contains(&false), "{flips:?}");
        // A caption written out here, not by the code under test.
        let caption = |role: &str, r: FrameRef, flip: bool| {
            let s = &data.scenes[r.scene];
            let (name, frames, _) = &s.variations[r.variation];
            let flipped = if flip { " flipped" } else { "" };
            format!(
                "{role}: {} {name} frame {}{flipped}",
                s.name, frames[r.frame].index
            )
        };
        // Each cell is its own triplet's image, made again here frame by frame (a slip of one
        // triplet's offset in the batch shows another triplet's image).
        for (t, (row, d)) in rows.iter().zip(&host.draws).enumerate() {
            let parts = [
                ("anchor", d.anchor, d.flip_pair, 0usize),
                ("positive", d.positive, d.flip_pair, 3),
                ("negative", d.negative, d.flip_negative, 4),
            ];
            for (i, (role, r, flip, col)) in parts.into_iter().enumerate() {
                let aug = super::super::augment::Draws {
                    key: super::super::augment::key(spec.seed, host.step, t, i),
                    palette: false,
                    yaw_deg: 8.0,
                };
                let img = data
                    .labelled_or_next(r, flip, 32, 80, Some(aug), spec.photometric)
                    .unwrap();
                assert_eq!(
                    row[col].1,
                    denormalise(&img.rgb, 80, 32),
                    "triplet {t} {role}"
                );
                assert_eq!(row[col].0, caption(role, r, flip));
                if i == 0 {
                    assert_eq!(
                        row[1].1,
                        depth_image(&img.depth, 80, 32),
                        "triplet {t} depth"
                    );
                    assert_eq!(row[2].1, class_image(&img.classes, 80, 32), "triplet {t}");
                }
            }
            let (_, real) = data
                .real_or_next(d.real, d.flip_real, 32, 80, spec.photometric)
                .unwrap();
            assert_eq!(row[5].1, denormalise(&real, 80, 32), "triplet {t} real");
            // Named below the --kitti folder (sequence and file: file names repeat).
            let rel = data.real[d.real]
                .strip_prefix(dir.path().join("ki"))
                .unwrap();
            assert!(rel.components().count() > 1, "{}", rel.display());
            let flipped = if d.flip_real { " flipped" } else { "" };
            assert_eq!(row[5].0, format!("real: {}{flipped}", tail(rel)));
        }
        // An unreadable frame drawn: the picture shows the frame that stood in for it, and says
        // so.
        let a = host.draws[0].anchor;
        std::fs::write(&data.frame(a).rgb, b"not an image").unwrap();
        let again = make_batch(&data, &spec, 11).unwrap();
        let shown = again.shown[0][0];
        assert_ne!(shown, a);
        let rows = batch_rows(&data, &spec, &again);
        assert_eq!(
            rows[0][0].0,
            format!(
                "{} (for unreadable frame {})",
                caption("anchor", shown, host.draws[0].flip_pair),
                data.frame(a).index
            )
        );
        // The end of a long path is kept: sequence, camera, file.
        assert_eq!(
            tail(Path::new("dataset/sequences/00/image_2/000000.png")),
            ".../00/image_2/000000.png"
        );
        assert_eq!(tail(Path::new("a/b.png")), "a/b.png");
        let long = "x".repeat(40) + ".png";
        assert_eq!(tail(Path::new(&format!("d/{long}"))), format!(".../{long}"));
        assert_eq!(
            batch_title(&spec, 11),
            "step 11: the batch as the network receives it (labelled images augmented at \
             random, each image on its own, camera turned with p 0.5 within +-8 deg; \
             real-domain images not augmented)"
        );
        let plain = BatchSpec {
            augment: false,
            augment_yaw_deg: 0.0,
            photometric: Photometric::Autocontrast,
            ..spec
        };
        assert_eq!(
            batch_title(&plain, 0),
            "step 0: the batch as the network receives it (not augmented; every image \
             normalised: autocontrast)"
        );
        let png = dir.path().join("batch.png");
        write_batch(&png, &data, &spec, &host).unwrap();
        let (w, h) = image::image_dimensions(&png).unwrap();
        assert!(w > 6 * 320 && h > 4 * 128, "{w}x{h}");
    }
}
