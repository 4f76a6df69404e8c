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
}

/// The reference defaults: layers 3..6, margin 1.0, weight 25 (`--trip_layer_index 3 4 5 6`,
/// `--margin_list 1 ...`, `--lambda_triplet_list 0 0 25 25 25 25 0 0`).
pub fn paper_triplet_layers() -> Vec<TripletLayer> {
    (3..=6)
        .map(|layer| TripletLayer {
            layer,
            margin: 1.0,
            weight: 25.0,
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

/// Multi-scale triplet loss (eqs. 4-5): for each layer l, dp = MSE(f_l(A), f_l(A+)),
/// dn = MSE(f_l(A), f_l(B)), term = w_l max(0, 1 - dn / (m_l + dp)).
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
        let dp = a.f_mse_loss(p, Reduction::Mean)?;
        let dn = a.f_mse_loss(n, Reduction::Mean)?;
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
