//! The DASGIL generator (paper section III-A, Fig. 2): the fusion feature extractor E (eight
//! stride-2 convolutions, features e1..e8), the depth decoder Gd (four side outputs) and the
//! segmentation decoder Gs (per-class logits), joined U-Net style.
//!
//! Module and parameter names equal the reference `networks.Generator` state_dict keys
//! (`conv1.weight`, `conv2_bn.running_mean`, `deconv5_seg.bias`, `conv_score.conv_final.weight`,
//! ...; see ../shared/reference/generator-state-dict-keys.txt), so its checkpoints load with no
//! renames.

use tch::nn::{self, Init, Module};
use tch::Tensor;

use super::config::{ModelConfig, ENCODER_LAYERS};
use super::layers::{conv_down, deconv_up, leaky_relu, BatchNorm, Conv3x3, Score, WeightInit};
use super::ModelError;

/// Everything one generator pass produces.
#[derive(Debug)]
pub struct GeneratorOutput {
    /// Encoder features e1..e8 ("multi-scale features"), each [B, C_l, H/2^l, W/2^l].
    pub features: Vec<Tensor>,
    /// Depth side outputs, coarse to fine: `[B,1,H/8,W/8]`, `[B,1,H/4,W/4]`, `[B,1,H/2,W/2]`, `[B,1,H,W]`.
    pub depth: Vec<Tensor>,
    /// Segmentation logits [B, num_classes, H, W] (before softmax).
    pub seg: Tensor,
}

impl GeneratorOutput {
    /// The tensors under the names `dasgil-tools embed` writes: e1..e8, depth_0..depth_3
    /// (coarse to fine) and seg.
    pub fn into_named(self) -> Vec<(String, Tensor)> {
        let mut named = Vec::with_capacity(13);
        for (i, t) in self.features.into_iter().enumerate() {
            named.push((format!("e{}", i + 1), t));
        }
        for (i, t) in self.depth.into_iter().enumerate() {
            named.push((format!("depth_{i}"), t));
        }
        named.push(("seg".to_string(), self.seg));
        named
    }
}

/// The fusion feature extractor E: `conv1..conv8` with `conv2_bn..conv7_bn`.
#[derive(Debug)]
pub struct Encoder {
    convs: Vec<nn::Conv2D>,
    /// `bns[l]` normalises layer l+1's output; None for e1 and e8, which the reference leaves raw.
    bns: Vec<Option<BatchNorm>>,
}

impl Encoder {
    fn new(p: &nn::Path, cfg: &ModelConfig, init: WeightInit) -> Self {
        let mut convs = Vec::with_capacity(ENCODER_LAYERS);
        let mut bns = Vec::with_capacity(ENCODER_LAYERS);
        let mut cin = 3;
        for layer in 1..=ENCODER_LAYERS {
            let cout = cfg.feature_channels(layer);
            convs.push(conv_down(p / format!("conv{layer}"), cin, cout, init));
            let has_bn = layer != 1 && layer != ENCODER_LAYERS;
            bns.push(
                has_bn.then(|| {
                    BatchNorm::new_2d(p / format!("conv{layer}_bn"), cout, Init::Const(1.0))
                }),
            );
            cin = cout;
        }
        Self { convs, bns }
    }

    /// e1..e_`upto` of a normalised image batch [B, 3, H, W]:
    /// e1 = conv1(x); e_l = bn_l(conv_l(leaky_relu(e_{l-1}, 0.2))); e8 has no BN.
    pub fn forward_t(&self, xs: &Tensor, upto: usize, train: bool) -> Vec<Tensor> {
        let mut features: Vec<Tensor> = Vec::with_capacity(upto);
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).take(upto).enumerate() {
            let input = match features.last() {
                None => xs.shallow_clone(),
                Some(prev) => leaky_relu(prev),
            };
            let out = conv.forward(&input); // [B, C_l, H/2^l, W/2^l]
            let out = match bn {
                Some(bn) => bn.forward_t(&out, train),
                None => out,
            };
            debug_assert_eq!(i + 1, features.len() + 1);
            features.push(out);
        }
        features
    }

    pub(crate) fn conv(&self, layer: usize) -> &nn::Conv2D {
        &self.convs[layer - 1]
    }

    pub(crate) fn bn(&self, layer: usize) -> Option<&BatchNorm> {
        self.bns[layer - 1].as_ref()
    }
}

/// One U-Net decoder: `deconv1..deconv8` (+ suffix) with BN after the first seven. The output
/// of deconv i (i = 1..7) is concatenated with e_(8-i) before the next layer.
#[derive(Debug)]
struct Decoder {
    deconvs: Vec<nn::ConvTranspose2D>,
    bns: Vec<BatchNorm>,
}

/// Output channels of the eight deconvolutions of each decoder (d = base width).
fn decoder_channels(d: i64, seg: bool) -> [i64; 8] {
    if seg {
        [8 * d, 8 * d, 8 * d, 8 * d, 4 * d, 4 * d, 4 * d, 4 * d]
    } else {
        [8 * d, 8 * d, 8 * d, 8 * d, 4 * d, 2 * d, d, 1]
    }
}

impl Decoder {
    fn new(p: &nn::Path, cfg: &ModelConfig, seg: bool, init: WeightInit) -> Self {
        let outs = decoder_channels(cfg.base_width, seg);
        let mut deconvs = Vec::with_capacity(8);
        let mut bns = Vec::with_capacity(7);
        let mut cin = cfg.feature_channels(8);
        for (i, &cout) in outs.iter().enumerate() {
            let layer = i + 1;
            let name = match (layer, seg) {
                (8, false) => "deconv8_dep".to_string(),
                (_, true) => format!("deconv{layer}_seg"),
                (_, false) => format!("deconv{layer}"),
            };
            deconvs.push(deconv_up(p / name, cin, cout, init));
            if layer < 8 {
                let bn_name = if seg {
                    format!("deconv{layer}_bn_seg")
                } else {
                    format!("deconv{layer}_bn")
                };
                bns.push(BatchNorm::new_2d(p / bn_name, cout, Init::Const(1.0)));
                // The skip from e_(8 - layer) is concatenated after this layer.
                cin = cout + cfg.feature_channels(8 - layer);
            }
        }
        Self { deconvs, bns }
    }

    /// Runs the decoder on e1..e8; returns the outputs of deconv5..deconv8 (after BN, before
    /// the skip concatenation), which the side heads read.
    fn forward_t(&self, features: &[Tensor], train: bool) -> Vec<Tensor> {
        let mut taps = Vec::with_capacity(4);
        let mut x = features[ENCODER_LAYERS - 1].shallow_clone(); // e8: [B, 8d, H/256, W/256]
        for (i, deconv) in self.deconvs.iter().enumerate() {
            let layer = i + 1;
            let up = deconv.forward(&x.relu()); // [B, C, H/2^(8-layer), W/2^(8-layer)]
            let up = match self.bns.get(i) {
                Some(bn) => bn.forward_t(&up, train),
                None => up,
            };
            if layer >= 5 {
                taps.push(up.shallow_clone());
            }
            if layer < 8 {
                x = Tensor::cat(&[&up, &features[ENCODER_LAYERS - 1 - layer]], 1);
            }
        }
        taps
    }
}

/// The whole generator: E + Gd + Gs.
#[derive(Debug)]
pub struct Generator {
    cfg: ModelConfig,
    encoder: Encoder,
    depth: Decoder,
    seg: Decoder,
    /// `conv3x3_5_dep` .. `conv3x3_8_dep`: one depth map per decoder scale.
    depth_heads: Vec<Conv3x3>,
    /// `conv_score`: segmentation logits from deconv8_seg's output.
    score: Score,
}

impl Generator {
    /// Builds the generator's variables under `p` (use the VarStore root for reference names).
    pub fn new(p: &nn::Path, cfg: ModelConfig, init: WeightInit) -> Result<Self, ModelError> {
        cfg.validate()?;
        let d = cfg.base_width;
        let depth_head_inputs = [4 * d, 2 * d, d, 1];
        let depth_heads = depth_head_inputs
            .iter()
            .zip(5..=8)
            .map(|(&cin, layer)| Conv3x3::new(p / format!("conv3x3_{layer}_dep"), cin, 1))
            .collect();
        Ok(Self {
            cfg,
            encoder: Encoder::new(p, &cfg, init),
            depth: Decoder::new(p, &cfg, false, init),
            seg: Decoder::new(p, &cfg, true, init),
            depth_heads,
            score: Score::new(p / "conv_score", 4 * d, cfg.num_classes),
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// Checks that `xs` is a [B, 3, H, W] float batch at this model's input size.
    pub fn check_input(&self, xs: &Tensor) -> Result<(), ModelError> {
        let size = xs.size();
        let expected = [3, self.cfg.input_height, self.cfg.input_width];
        if size.len() != 4 || size[1..] != expected || size[0] < 1 {
            return Err(ModelError::InputShape {
                expected: format!("[B, 3, {}, {}]", expected[1], expected[2]),
                found: format!("{size:?}"),
            });
        }
        Ok(())
    }

    /// Full pass: features, depth side outputs and segmentation logits.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<GeneratorOutput, ModelError> {
        self.check_input(xs)?;
        let features = self.encoder.forward_t(xs, ENCODER_LAYERS, train);
        let depth_taps = self.depth.forward_t(&features, train);
        let depth = depth_taps
            .iter()
            .zip(&self.depth_heads)
            .map(|(t, head)| head.forward(t))
            .collect();
        let seg_taps = self.seg.forward_t(&features, train);
        let seg = self.score.forward(&seg_taps[3]); // [B, num_classes, H, W]
        Ok(GeneratorOutput {
            features,
            depth,
            seg,
        })
    }

    /// Encoder features e1..e_`upto` only (no decoders), for descriptors and the discriminator.
    pub fn encode_t(
        &self,
        xs: &Tensor,
        upto: usize,
        train: bool,
    ) -> Result<Vec<Tensor>, ModelError> {
        self.check_input(xs)?;
        if !(1..=ENCODER_LAYERS).contains(&upto) {
            return Err(ModelError::Layer { layer: upto });
        }
        Ok(self.encoder.forward_t(xs, upto, train))
    }
}
