//! Multi-scale feature discriminators (paper section III-A, "Multi-Scale Discriminator", Fig. 3):
//! the Flatten Discriminator (FD) and the Cascade Discriminator (CD). Both read the encoder
//! features e1..e8 and say whether they come from a real (1) or a virtual (0) image.
//!
//! Parameter names equal the reference `networks.FlattenDiscriminator` /
//! `networks.CascadeDiscriminator` state_dict keys
//! (../shared/reference/discriminator-state-dict-keys.txt).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init, Module};
use tch::Tensor;

use super::config::{ModelConfig, ENCODER_LAYERS};
use super::layers::{conv_same, BatchNorm, DCGAN_INIT};
use super::ModelError;

/// Which discriminator a model is trained with (reference `--dis_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DiscriminatorKind {
    /// Flatten Discriminator: all features flattened, BatchNorm1d, three Linear layers.
    #[serde(rename = "FD")]
    Flatten,
    /// Cascade Discriminator: residual down-blocks that take one deeper feature per scale.
    #[serde(rename = "CD")]
    Cascade,
}

impl DiscriminatorKind {
    pub fn short_name(self) -> &'static str {
        match self {
            Self::Flatten => "FD",
            Self::Cascade => "CD",
        }
    }
}

impl std::str::FromStr for DiscriminatorKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "FD" | "fd" | "flatten" => Ok(Self::Flatten),
            "CD" | "cd" | "cascade" => Ok(Self::Cascade),
            other => Err(format!(
                "unknown discriminator `{other}`: expected FD or CD"
            )),
        }
    }
}

/// Reference defaults `--dis_nc 64`, `--dis_nlayers 2`.
const FD_HIDDEN: i64 = 64;
const FD_HIDDEN_LAYERS: usize = 2;

/// Flatten Discriminator: cat(flatten(e1..e8)) -> BatchNorm1d -> Linear(N, 64) -> PReLU ->
/// Linear(64, 64) -> PReLU -> Linear(64, 1). The one PReLU module is shared by both places, as
/// in the reference; its parameter appears under `model.1.weight` and `model.3.weight`.
#[derive(Debug)]
pub struct FlattenDiscriminator {
    bn: BatchNorm,
    linears: Vec<nn::Linear>,
    prelu_weight: Tensor,
}

impl FlattenDiscriminator {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let total = cfg.total_feature_len();
        let bn = BatchNorm::new_1d(p / "bn", total, DCGAN_INIT);
        let model = p / "model";
        let lin_cfg = nn::LinearConfig {
            ws_init: DCGAN_INIT,
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        };
        let mut linears = Vec::new();
        let mut prelu_weight = None;
        let mut idx = 0;
        let mut cin = total;
        for _ in 0..FD_HIDDEN_LAYERS {
            linears.push(nn::linear(&model / idx, cin, FD_HIDDEN, lin_cfg));
            let act = &model / (idx + 1);
            let w = match &prelu_weight {
                None => act.var("weight", &[1], DCGAN_INIT),
                // Same tensor, registered again (not trainable twice) under the second index.
                Some(shared) => act.add("weight", Tensor::shallow_clone(shared), false),
            };
            prelu_weight.get_or_insert(w);
            idx += 2;
            cin = FD_HIDDEN;
        }
        linears.push(nn::linear(&model / idx, cin, 1, lin_cfg));
        let prelu_weight =
            prelu_weight.unwrap_or_else(|| Tensor::zeros([1], (tch::Kind::Float, p.device())));
        Self {
            bn,
            linears,
            prelu_weight,
        }
    }

    /// Features e1..e8 -> scores [B, 1].
    pub fn forward_t(&self, features: &[Tensor], train: bool) -> Tensor {
        let flat: Vec<Tensor> = features.iter().map(|f| f.flatten(1, -1)).collect();
        let mut x = self.bn.forward_t(&Tensor::cat(&flat, 1), train); // [B, 1004800]
        let last = self.linears.len() - 1;
        for (i, lin) in self.linears.iter().enumerate() {
            x = lin.forward(&x);
            if i < last {
                x = x.prelu(&self.prelu_weight);
            }
        }
        x
    }
}

/// Mean of each 2x2 block (the reference's four strided slices / 4).
fn mean_pool2(xs: &Tensor) -> Tensor {
    xs.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>)
}

/// Reference `ResidualBlock(cin, cout, 3, resample='down')` with GroupNorm(4).
#[derive(Debug)]
struct ResidualBlock {
    bn1: nn::GroupNorm,
    bn2: nn::GroupNorm,
    conv_shortcut: nn::Conv2D,
    conv_1: nn::Conv2D,
    conv_2: nn::Conv2D,
}

impl ResidualBlock {
    fn new(p: nn::Path, cin: i64, cout: i64) -> Self {
        let gn = nn::GroupNormConfig {
            ws_init: DCGAN_INIT,
            bs_init: Init::Const(0.0),
            ..Default::default()
        };
        Self {
            bn1: nn::group_norm(&p / "bn1", 4, cin, gn),
            bn2: nn::group_norm(&p / "bn2", 4, cin, gn),
            // MeanPoolConv -> MyConvo2d -> Conv2d: hence `.conv.conv`.
            conv_shortcut: conv_same(
                &p / "conv_shortcut" / "conv" / "conv",
                cin,
                cout,
                1,
                0,
                true,
                Some(DCGAN_INIT),
            ),
            conv_1: conv_same(
                &p / "conv_1" / "conv",
                cin,
                cin,
                3,
                1,
                false,
                Some(DCGAN_INIT),
            ),
            conv_2: conv_same(
                &p / "conv_2" / "conv" / "conv",
                cin,
                cout,
                3,
                1,
                true,
                Some(DCGAN_INIT),
            ),
        }
    }

    /// [B, cin, h, w] -> [B, cout, h/2, w/2]
    fn forward(&self, xs: &Tensor) -> Tensor {
        let shortcut = self.conv_shortcut.forward(&mean_pool2(xs));
        let main = self.conv_1.forward(&self.bn1.forward(xs).relu());
        let main = mean_pool2(&self.conv_2.forward(&self.bn2.forward(&main).relu()));
        shortcut + main
    }
}

/// Cascade Discriminator: e1 -> rb1, cat e2 -> rb2, cat e3 -> ... -> rb7, cat e8 -> ReLU ->
/// 3x3 conv (`rb8.1`) -> flatten -> Linear(48 d x h8 x w8, 1).
#[derive(Debug)]
pub struct CascadeDiscriminator {
    blocks: Vec<ResidualBlock>,
    conv8: nn::Conv2D,
    ln1: nn::Linear,
}

impl CascadeDiscriminator {
    pub fn new(p: &nn::Path, cfg: &ModelConfig) -> Self {
        let dim = cfg.base_width;
        // Block widths in units of dim: (in, out) = (1,2), (4,4), (8,8), (16,16), (24,24), (32,32), (40,40).
        let widths = [
            (1, 2),
            (4, 4),
            (8, 8),
            (16, 16),
            (24, 24),
            (32, 32),
            (40, 40),
        ];
        let blocks = widths
            .iter()
            .enumerate()
            .map(|(i, &(cin, cout))| {
                ResidualBlock::new(p / format!("rb{}", i + 1), cin * dim, cout * dim)
            })
            .collect();
        let [_, h8, w8] = cfg.feature_shape(ENCODER_LAYERS);
        let lin_cfg = nn::LinearConfig {
            ws_init: DCGAN_INIT,
            bs_init: Some(Init::Const(0.0)),
            bias: true,
        };
        Self {
            blocks,
            conv8: conv_same(
                p / "rb8" / "1" / "conv",
                48 * dim,
                48 * dim,
                3,
                1,
                true,
                Some(DCGAN_INIT),
            ),
            ln1: nn::linear(p / "ln1", 48 * dim * h8 * w8, 1, lin_cfg),
        }
    }

    /// Features e1..e8 -> scores `[B]`.
    pub fn forward(&self, features: &[Tensor]) -> Tensor {
        let mut x = features[0].shallow_clone(); // [B, d, H/2, W/2]
        for (i, block) in self.blocks.iter().enumerate() {
            x = Tensor::cat(&[&block.forward(&x), &features[i + 1]], 1);
        }
        let x = self.conv8.forward(&x.relu()); // [B, 48d, H/256, W/256]
        self.ln1.forward(&x.flatten(1, -1)).view([-1])
    }
}

/// Either discriminator.
#[derive(Debug)]
pub enum Discriminator {
    Flatten(FlattenDiscriminator),
    Cascade(CascadeDiscriminator),
}

impl Discriminator {
    pub fn new(
        p: &nn::Path,
        cfg: &ModelConfig,
        kind: DiscriminatorKind,
    ) -> Result<Self, ModelError> {
        cfg.validate()?;
        Ok(match kind {
            DiscriminatorKind::Flatten => Self::Flatten(FlattenDiscriminator::new(p, cfg)),
            DiscriminatorKind::Cascade => Self::Cascade(CascadeDiscriminator::new(p, cfg)),
        })
    }

    pub fn kind(&self) -> DiscriminatorKind {
        match self {
            Self::Flatten(_) => DiscriminatorKind::Flatten,
            Self::Cascade(_) => DiscriminatorKind::Cascade,
        }
    }

    /// Real/virtual scores for features e1..e8 (FD: `[B, 1]`, CD: `[B]`).
    pub fn forward_t(&self, features: &[Tensor], train: bool) -> Result<Tensor, ModelError> {
        if features.len() != ENCODER_LAYERS {
            return Err(ModelError::FeatureCount {
                expected: ENCODER_LAYERS,
                found: features.len(),
            });
        }
        Ok(match self {
            Self::Flatten(d) => d.forward_t(features, train),
            Self::Cascade(d) => d.forward(features),
        })
    }
}
