//! What a person looks at during and after training: the loss curves (from losses.csv) and the
//! predictions of the current generator on one fixed sample, next to its ground truth.

use std::path::Path;

use image::{Rgb, RgbImage};
use tch::{Kind, Tensor};

use super::loader::{BatchSpec, LabelledImage, TrainingData};
use super::sampler::FrameRef;
use super::{TrainConfig, TrainError, Trainer};
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
            name: format!(
                "{} {} frame {}",
                s.name,
                s.variations[variation].0,
                data.frame(r).index
            ),
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
        let c = |k: usize| ((chw[k * plane + i] * 0.5 + 0.5) * 255.0).clamp(0.0, 255.0) as u8;
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
        &format!("step {}: {}", trainer.step, val.name),
        &rows,
        400,
    )?;
    Ok(())
}
