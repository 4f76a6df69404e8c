//! Frame -> pose prior, with the code `dasgil-tools localize` uses: the map's encoder (with the
//! map's adapted statistics), exact top-K retrieval, `maps::prior` for the covariance.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use nalgebra::{Matrix3, Vector3};

use crate::data::raw_image;
use crate::geom::Pose;
use crate::maps::encode::MapEncoder;
use crate::maps::file::MapFile;
use crate::maps::prior::{pose_prior, PosePrior};
use crate::maps::search::{search, MapIndex, Metric};

pub type ImageMsg = r2r::sensor_msgs::msg::Image;
pub type CompressedMsg = r2r::sensor_msgs::msg::CompressedImage;

/// A frame as it came off the wire.
pub enum Incoming {
    Raw(ImageMsg),
    Compressed(CompressedMsg),
}

impl Incoming {
    pub fn header(&self) -> &r2r::std_msgs::msg::Header {
        match self {
            Incoming::Raw(m) => &m.header,
            Incoming::Compressed(m) => &m.header,
        }
    }

    /// The frame as RGB; any problem is a message naming the topic.
    pub fn decode(&self, topic: &str) -> Result<image::RgbImage, String> {
        match self {
            Incoming::Raw(m) => raw_image::decode(
                m.width,
                m.height,
                &m.encoding,
                m.is_bigendian != 0,
                m.step,
                &m.data,
            )
            .map_err(|e| format!("{topic}: frame `{}`: {e}", m.header.frame_id)),
            Incoming::Compressed(m) => {
                if m.data.is_empty() {
                    return Err(format!(
                        "{topic}: compressed frame `{}` (format `{}`) has no data",
                        m.header.frame_id, m.format
                    ));
                }
                crate::data::error::decode_image_bytes(&m.data)
                    .map(|i| i.to_rgb8())
                    .map_err(|e| {
                        format!(
                            "{topic}: compressed frame `{}` (format `{}`, {} bytes): {e}",
                            m.header.frame_id,
                            m.format,
                            m.data.len()
                        )
                    })
            }
        }
    }
}

/// What one frame gave.
pub struct Answer {
    pub prior: PosePrior,
    pub candidates: Vec<Pose>,
}

/// Why a frame gave no prior.
pub enum NoPrior {
    /// The frame cannot be used (decoding, size, ...): counted as rejected.
    Bad(String),
    /// No map image to match (geo-gating left none).
    NoCandidates(String),
    /// The best match is below `min_confidence`.
    Ambiguous(f64),
}

pub struct Localizer {
    pub encoder: MapEncoder,
    pub map: Arc<MapFile>,
    pub index: MapIndex,
    pub metric: Metric,
    pub top_k: usize,
    pub min_confidence: f64,
}

/// The checkpoint to encode with: the given one, else the map's own when it exists, else the
/// shipped model.
pub fn checkpoint_for(map: &MapFile, given: &str) -> Result<PathBuf> {
    if !given.is_empty() {
        return Ok(given.into());
    }
    match map.meta.encoder.checkpoint.as_deref().map(PathBuf::from) {
        Some(p) if p.is_file() => Ok(p),
        _ => Ok(crate::maps::commands::default_checkpoint()?),
    }
}

impl Localizer {
    /// Opens `map_path` and an encoder that encodes exactly as the map was built.
    pub fn load(
        map_path: &Path,
        checkpoint: &str,
        device: tch::Device,
        metric: &str,
        top_k: usize,
        min_confidence: f64,
    ) -> Result<(Self, PathBuf)> {
        let map = Arc::new(
            MapFile::open(map_path).with_context(|| format!("map {}", map_path.display()))?,
        );
        let checkpoint = checkpoint_for(&map, checkpoint)?;
        let layers = map.meta.encoder.descriptor_spec();
        let mut encoder = if map.meta.encoder.kind == "raw-pixels" {
            MapEncoder::raw_pixels()
        } else {
            MapEncoder::from_checkpoint(&checkpoint, device, Some(layers))
                .with_context(|| format!("checkpoint {}", checkpoint.display()))?
        };
        encoder.use_map(&map)?;
        let metric: Metric = if metric.is_empty() {
            map.meta.metric.parse().map_err(anyhow::Error::msg)?
        } else {
            metric
                .parse()
                .map_err(|e| anyhow::anyhow!("parameter `metric`: {e}"))?
        };
        let index = MapIndex::new(&map);
        Ok((
            Self {
                encoder,
                map,
                index,
                metric,
                top_k,
                min_confidence,
            },
            checkpoint,
        ))
    }

    /// Refuses camera ids the map does not have.
    pub fn check_cameras(&self, ids: &[String]) -> Result<()> {
        for cam in ids {
            if !self.map.meta.cameras.contains(cam) {
                let mut c = self.map.meta.cameras.clone();
                c.sort();
                c.dedup();
                bail!(
                    "parameter `camera_ids`: `{cam}` is not a camera of the map {} (it has: {})",
                    self.map.path.display(),
                    c.join(", ")
                );
            }
        }
        Ok(())
    }

    /// Image -> prior (of the camera, or of base_link when `base_from_cam` is given).
    pub fn localize(
        &self,
        img: &image::RgbImage,
        camera: Option<&str>,
        near: Option<([f64; 3], f64)>,
        base_from_cam: Option<&Pose>,
    ) -> Result<Answer, NoPrior> {
        let prepared = self
            .encoder
            .prepare(img)
            .map_err(|e| NoPrior::Bad(e.to_string()))?;
        let desc = self
            .encoder
            .encode(&[prepared])
            .map_err(|e| NoPrior::Bad(e.to_string()))?;
        let cands = self.index.candidates(camera, near);
        if cands.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(NoPrior::NoCandidates(match near {
                Some((p, r)) => format!(
                    "no map image{} within {r} m of the prior ({:.1}, {:.1}, {:.1})",
                    camera
                        .map(|c| format!(" of camera {c}"))
                        .unwrap_or_default(),
                    p[0],
                    p[1],
                    p[2]
                ),
                None => "the map has no image of this camera".into(),
            }));
        }
        let hits = search(&self.map, &desc, self.top_k, self.metric, cands.as_deref());
        let Some(mut prior) = pose_prior(&self.map, &hits) else {
            return Err(NoPrior::NoCandidates("the map has no entries".into()));
        };
        if prior.confidence < self.min_confidence {
            return Err(NoPrior::Ambiguous(prior.confidence));
        }
        let mut candidates: Vec<Pose> = hits.iter().map(|h| self.map.pose(h.index)).collect();
        if let Some(bc) = base_from_cam {
            prior = to_base(&prior, bc);
            for c in &mut candidates {
                *c *= bc.inverse();
            }
        }
        Ok(Answer { prior, candidates })
    }
}

fn skew(v: &Vector3<f64>) -> Matrix3<f64> {
    Matrix3::new(0.0, -v.z, v.y, v.z, 0.0, -v.x, -v.y, v.x, 0.0)
}

/// The prior of base_link from the camera's: world_from_base = world_from_cam * cam_from_base.
/// The rotation block is unchanged (one rigid body); the position block gains the lever arm's
/// share of the rotation uncertainty: S Sigma_r S^T with S = [v]x, v = the world-frame offset
/// from the camera to base_link.
pub fn to_base(prior: &PosePrior, base_from_cam: &Pose) -> PosePrior {
    let world_from_base = prior.pose * base_from_cam.inverse();
    let v = world_from_base.translation.vector - prior.pose.translation.vector;
    let s = skew(&v);
    let mut sr = Matrix3::zeros();
    for r in 0..3 {
        for c in 0..3 {
            sr[(r, c)] = prior.covariance[(r + 3) * 6 + c + 3];
        }
    }
    let extra = s * sr * s.transpose();
    let mut cov = prior.covariance;
    for r in 0..3 {
        for c in 0..3 {
            cov[r * 6 + c] += extra[(r, c)];
        }
    }
    PosePrior {
        pose: world_from_base,
        covariance: cov,
        confidence: prior.confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Translation3, UnitQuaternion};

    #[test]
    fn base_prior_moves_by_the_extrinsic_and_widens_with_the_lever_arm() {
        let mut cov = [0.0; 36];
        for i in 0..3 {
            cov[i * 6 + i] = 1.0;
            cov[(i + 3) * 6 + i + 3] = 0.01;
        }
        let prior = PosePrior {
            pose: Pose::from_parts(
                Translation3::new(10.0, 0.0, 0.0),
                UnitQuaternion::from_euler_angles(0.0, 0.0, 0.5),
            ),
            covariance: cov,
            confidence: 0.3,
        };
        // The camera sits 2 m ahead of base_link.
        let bc = Pose::from_parts(Translation3::new(2.0, 0.0, 0.0), UnitQuaternion::identity());
        let b = to_base(&prior, &bc);
        let back = b.pose * bc;
        assert!((back.translation.vector - prior.pose.translation.vector).norm() < 1e-12);
        assert!((b.pose.translation.vector - prior.pose.translation.vector).norm() - 2.0 < 1e-12);
        // 0.01 rad^2 of rotation variance about each axis over a 2 m lever arm in the ground
        // plane: 0.01 (|v|^2 I - v v^T) adds 0.04 m^2 to z and 0.04 m^2 to x + y.
        assert!((b.covariance[0] + b.covariance[7] - 2.04).abs() < 1e-9);
        assert!((b.covariance[14] - 1.04).abs() < 1e-9);
        assert_eq!(b.covariance[35], 0.01);
    }
}
