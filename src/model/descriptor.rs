//! Retrieval descriptors (paper section III-C, "Image Retrieval for Localization"): selected
//! encoder feature maps, each multiplied by a per-layer weight, flattened and concatenated.
//! Only the encoder layers up to the deepest selected one are run; no decoders, no autograd.
//! In eval mode BatchNorm is an affine map, so it is folded into the preceding convolution
//! (W' = s W, b' = s b + t with s = gamma / sqrt(var + eps), t = beta - s mean), and weights
//! and activations are kept channels-last (NHWC strides), for which oneDNN's CPU convolutions
//! are faster (see benches/descriptor.rs). Values are unchanged: flattening restores C, H, W order.

use serde::{Deserialize, Serialize};
use tch::Tensor;

use super::config::ENCODER_LAYERS;
use super::discriminator::DiscriminatorKind;
use super::generator::Generator;
use super::layers::leaky_relu;
use super::ModelError;

/// One layer of a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorLayer {
    /// Encoder layer, 1-based.
    pub layer: usize,
    /// Multiplier applied to the layer's features (reference `--testlayers_w`).
    pub weight: f64,
}

/// Which features make a descriptor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DescriptorSpec {
    pub layers: Vec<DescriptorLayer>,
}

impl DescriptorSpec {
    /// The paper's choice for a model trained with the given discriminator: layers 5 and 6 for
    /// FD (20,480 values at 256x1024), layer 5 for CD (16,384).
    pub fn paper(kind: DiscriminatorKind) -> Self {
        let layers = match kind {
            DiscriminatorKind::Flatten => vec![5, 6],
            DiscriminatorKind::Cascade => vec![5],
        };
        Self {
            layers: layers
                .into_iter()
                .map(|layer| DescriptorLayer { layer, weight: 1.0 })
                .collect(),
        }
    }

    pub fn validate(&self) -> Result<(), ModelError> {
        if self.layers.is_empty() {
            return Err(ModelError::Layer { layer: 0 });
        }
        for l in &self.layers {
            if !(1..=ENCODER_LAYERS).contains(&l.layer) {
                return Err(ModelError::Layer { layer: l.layer });
            }
        }
        Ok(())
    }

    /// The deepest layer needed.
    pub fn deepest(&self) -> usize {
        self.layers.iter().map(|l| l.layer).max().unwrap_or(1)
    }

    /// Descriptor length for one image of the given generator config.
    pub fn len(&self, cfg: &super::ModelConfig) -> i64 {
        self.layers
            .iter()
            .map(|l| cfg.feature_shape(l.layer).iter().product::<i64>())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    /// The selected features e_l ([B, C, h, w], any memory layout), flattened in C, H, W order,
    /// multiplied by their weights and concatenated: [B, D].
    fn concat(&self, features: &[Tensor]) -> Tensor {
        let parts: Vec<Tensor> = self
            .layers
            .iter()
            .map(|l| {
                let f = features[l.layer - 1].flatten(1, -1);
                if l.weight == 1.0 {
                    f
                } else {
                    f * l.weight
                }
            })
            .collect();
        Tensor::cat(&parts, 1)
    }
}

/// `5,6` -> layers 5 and 6, weights 1; `5*0.5,6` gives layer 5 the weight 0.5 (reference
/// `--testlayers_w`): the form of `--layers` and of a checkpoint's `dasgil.descriptor_layers`.
impl std::str::FromStr for DescriptorSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "expected encoder layers 1 to {ENCODER_LAYERS} such as 5,6 (a weight above 0: \
                 5*0.5), found `{s}`"
            )
        };
        let mut layers: Vec<DescriptorLayer> = Vec::new();
        for v in s.split(',') {
            let (layer, weight) = match v.trim().split_once('*') {
                Some((l, w)) => (l, w.trim().parse::<f64>().map_err(|_| bad())?),
                None => (v.trim(), 1.0),
            };
            if !(weight.is_finite() && weight > 0.0) {
                return Err(bad());
            }
            let layer = layer
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|l| (1..=ENCODER_LAYERS).contains(l))
                .ok_or_else(bad)?;
            if layers.iter().any(|l| l.layer == layer) {
                return Err(format!(
                    "expected each encoder layer once, found `{s}` (layer {layer} twice)"
                ));
            }
            layers.push(DescriptorLayer { layer, weight });
        }
        Ok(Self { layers })
    }
}

/// `5,6`; a layer whose weight is not 1 is written `5*0.5` (read back by `FromStr`).
impl std::fmt::Display for DescriptorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .layers
            .iter()
            .map(|l| {
                if l.weight == 1.0 {
                    l.layer.to_string()
                } else {
                    format!("{}*{}", l.layer, l.weight)
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// The same NCHW tensor laid out channels-last (strides of NHWC); libtorch picks its
/// channels-last convolution kernels from these strides.
fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A convolution with BN folded in (eval mode).
#[derive(Debug)]
struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
}

/// The encoder layers a descriptor needs, with BN folded; inference only.
#[derive(Debug)]
pub struct DescriptorEncoder {
    convs: Vec<FoldedConv>,
    spec: DescriptorSpec,
    input_size: (i64, i64),
}

impl DescriptorEncoder {
    /// Folds the generator's current (eval-mode) encoder weights. Later changes to the
    /// generator are not seen: build a new one after loading or training.
    pub fn new(gen: &Generator, spec: DescriptorSpec) -> Result<Self, ModelError> {
        spec.validate()?;
        let enc = gen.encoder();
        let convs = tch::no_grad(|| {
            (1..=spec.deepest())
                .map(|layer| {
                    let conv = enc.conv(layer);
                    let w = conv.ws.detach();
                    let b = match &conv.bs {
                        Some(b) => b.detach(),
                        None => Tensor::zeros([w.size()[0]], (w.kind(), w.device())),
                    };
                    match enc.bn(layer) {
                        None => FoldedConv {
                            weight: w.copy(),
                            bias: b.copy(),
                        },
                        Some(bn) => {
                            let (scale, shift) = bn.eval_affine();
                            FoldedConv {
                                weight: &w * scale.view([-1, 1, 1, 1]),
                                bias: &b * &scale + &shift,
                            }
                        }
                    }
                })
                .collect()
        });
        let cfg = gen.config();
        Ok(Self {
            convs,
            spec,
            input_size: (cfg.input_height, cfg.input_width),
        })
    }

    pub fn spec(&self) -> &DescriptorSpec {
        &self.spec
    }

    /// Descriptors [B, D] of a normalised image batch [B, 3, H, W].
    pub fn describe(&self, xs: &Tensor) -> Result<Tensor, ModelError> {
        let size = xs.size();
        if size.len() != 4 || size[1] != 3 || (size[2], size[3]) != self.input_size {
            return Err(ModelError::InputShape {
                expected: format!("[B, 3, {}, {}]", self.input_size.0, self.input_size.1),
                found: format!("{size:?}"),
            });
        }
        let _guard = tch::no_grad_guard();
        let mut features = Vec::with_capacity(self.convs.len());
        let mut x = channels_last(xs);
        for (i, conv) in self.convs.iter().enumerate() {
            if i > 0 {
                x = leaky_relu(&x);
            }
            x = x.conv2d(&conv.weight, Some(&conv.bias), [2, 2], [1, 1], [1, 1], 1);
            features.push(x.shallow_clone());
        }
        Ok(self.spec.concat(&features))
    }
}

/// The same descriptor computed through the generator's unfolded encoder (eval mode), for
/// checking the folded path and for benchmarks.
pub fn describe_unfolded(
    gen: &Generator,
    spec: &DescriptorSpec,
    xs: &Tensor,
) -> Result<Tensor, ModelError> {
    spec.validate()?;
    let _guard = tch::no_grad_guard();
    let features = gen.encode_t(xs, spec.deepest(), false)?;
    Ok(spec.concat(&features))
}
