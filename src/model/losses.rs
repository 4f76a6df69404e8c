//! DASGIL's training losses (paper section III-B, eqs. 1-8), as the reference `model.py`
//! computes them.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use super::config::ENCODER_LAYERS;
use super::ModelError;

/// Multi-scale depth reconstruction loss (eq. 1): the mean over the side outputs of
/// mean |pred_s - resize(gt, s)|. As in the reference's `scale_pyramid`, the ground truth
/// [B, 1, H, W] is resized to each scale with `F.interpolate`'s default (nearest) mode.
pub fn depth_loss(side_outputs: &[Tensor], gt: &Tensor) -> Result<Tensor, ModelError> {
    if side_outputs.is_empty() {
        return Err(ModelError::FeatureCount {
            expected: 4,
            found: 0,
        });
    }
    let mut total: Option<Tensor> = None;
    for pred in side_outputs {
        let size = pred.size();
        let gt_s = gt.f_upsample_nearest2d([size[2], size[3]], None, None)?;
        let l1 = (pred - gt_s).abs().mean(Kind::Float);
        total = Some(match total {
            None => l1,
            Some(t) => t + l1,
        });
    }
    // Non-empty: checked above.
    Ok(total.unwrap_or_else(|| Tensor::from(0.0f32)) / side_outputs.len() as f64)
}

/// Segmentation loss (eq. 2): mean cross-entropy (log_softmax + NLL) of logits [B, C, H, W]
/// against class indices [B, H, W] (int64, 0..C-1).
pub fn segmentation_loss(logits: &Tensor, target: &Tensor) -> Result<Tensor, ModelError> {
    let log_probs = logits.f_log_softmax(1, Kind::Float)?;
    Ok(log_probs.f_nll_loss2d(target, None::<Tensor>, Reduction::Mean, -100)?)
}

/// LSGAN discriminator loss (eq. 7): 0.5 (mean((D(real) - 1)^2) + mean(D(virtual)^2)).
pub fn lsgan_discriminator_loss(d_real: &Tensor, d_virtual: &Tensor) -> Tensor {
    ((d_real - 1.0).square().mean(Kind::Float) + d_virtual.square().mean(Kind::Float)) * 0.5
}

/// LSGAN generator loss (eq. 6): 0.5 mean((D(virtual) - 1)^2).
pub fn lsgan_generator_loss(d_virtual: &Tensor) -> Tensor {
    (d_virtual - 1.0).square().mean(Kind::Float) * 0.5
}

/// How a triplet term measures the distance between two images' features at one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TripletDistance {
    /// The paper's (eq. 4): the mean squared difference over the whole batch's features.
    #[default]
    Mse,
    /// Not in the paper: 1 - cos between each image's flattened features, averaged over the
    /// batch; in [0, 2] whatever the features' scale, the distance a cosine map searches with.
    Cosine,
}

impl TripletDistance {
    /// True for the paper's distance (a config omits the field then).
    pub fn is_paper(&self) -> bool {
        *self == TripletDistance::Mse
    }
}

impl std::str::FromStr for TripletDistance {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mse" => Ok(Self::Mse),
            "cosine" => Ok(Self::Cosine),
            other => Err(format!(
                "unknown triplet distance `{other}`: expected mse or cosine"
            )),
        }
    }
}

/// One layer's term of the multi-scale triplet loss.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TripletLayer {
    /// Encoder layer, 1-based (e1..e8).
    pub layer: usize,
    /// Margin m_l.
    pub margin: f64,
    /// Weight w_l.
    pub weight: f64,
    /// dp and dn's distance: `mse` (the paper's; the default, omitted) or `cosine`.
    #[serde(default, skip_serializing_if = "TripletDistance::is_paper")]
    pub distance: TripletDistance,
}

/// The reference defaults: layers 3..6, margin 1.0, weight 25 (`--trip_layer_index 3 4 5 6`,
/// `--margin_list 1 ...`, `--lambda_triplet_list 0 0 25 25 25 25 0 0`).
pub fn paper_triplet_layers() -> Vec<TripletLayer> {
    (3..=6)
        .map(|layer| TripletLayer {
            layer,
            margin: 1.0,
            weight: 25.0,
            distance: TripletDistance::Mse,
        })
        .collect()
}

/// The terms of one multi-scale triplet evaluation.
#[derive(Debug)]
pub struct TripletTerms {
    /// Sum over layers of w_l max(0, 1 - dn_l / (m_l + dp_l)) (eq. 5).
    pub total: Tensor,
    /// Per layer: (dp, dn, weighted term).
    pub per_layer: Vec<(Tensor, Tensor, Tensor)>,
}

/// Mean over the batch of 1 - cos(x_i, y_i), x_i and y_i image i's features flattened (an
/// all-zero image counts as orthogonal to everything: cos 0, PyTorch's eps 1e-8).
fn cosine_distance(x: &Tensor, y: &Tensor) -> Result<Tensor, ModelError> {
    let b = x.size().first().copied().unwrap_or(1);
    let cos = Tensor::f_cosine_similarity(&x.f_reshape([b, -1])?, &y.f_reshape([b, -1])?, 1, 1e-8)?;
    Ok((-cos + 1.0).mean(Kind::Float))
}

/// Multi-scale triplet loss (eqs. 4-5): for each layer l, dp = MSE(f_l(A), f_l(A+)),
/// dn = MSE(f_l(A), f_l(B)), term = w_l max(0, 1 - dn / (m_l + dp)). With
/// [`TripletDistance::Cosine`] dp and dn are the batch's mean of 1 - cos between an image's
/// flattened features and its partner's (the term unchanged).
pub fn triplet_loss(
    anchor: &[Tensor],
    positive: &[Tensor],
    negative: &[Tensor],
    layers: &[TripletLayer],
) -> Result<TripletTerms, ModelError> {
    let mut total: Option<Tensor> = None;
    let mut per_layer = Vec::with_capacity(layers.len());
    for spec in layers {
        let i = spec.layer.checked_sub(1).filter(|&i| i < ENCODER_LAYERS);
        let i = i.ok_or(ModelError::Layer { layer: spec.layer })?;
        let (a, p, n) = match (anchor.get(i), positive.get(i), negative.get(i)) {
            (Some(a), Some(p), Some(n)) => (a, p, n),
            _ => return Err(ModelError::Layer { layer: spec.layer }),
        };
        let (dp, dn) = match spec.distance {
            TripletDistance::Mse => (
                a.f_mse_loss(p, Reduction::Mean)?,
                a.f_mse_loss(n, Reduction::Mean)?,
            ),
            TripletDistance::Cosine => (cosine_distance(a, p)?, cosine_distance(a, n)?),
        };
        let term = ((-(&dn / (&dp + spec.margin))) + 1.0).clamp_min(0.0) * spec.weight;
        total = Some(match total {
            None => term.shallow_clone(),
            Some(t) => t + &term,
        });
        per_layer.push((dp, dn, term));
    }
    let total = total.unwrap_or_else(|| Tensor::zeros([], (Kind::Float, anchor[0].device())));
    Ok(TripletTerms { total, per_layer })
}
