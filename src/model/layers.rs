//! Building blocks shared by the generator and the discriminators, with PyTorch's parameter
//! names, shapes and initialisations.

use tch::nn::{self, Init};
use tch::{Kind, Tensor};

/// Slope of the reference's `F.leaky_relu(x, 0.2)`.
pub const LEAKY_SLOPE: f64 = 0.2;

/// PyTorch's default `nn.Conv2d`/`nn.Linear` initialisation, kaiming_uniform(a = sqrt(5)) for
/// the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the bias: both reduce to that bound.
pub fn torch_default_init(fan_in: i64) -> Init {
    let bound = 1.0 / (fan_in as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// N(0, 0.02): the reference's `weight_init(0, 0.02)` / `init_weights(.., 'normal')`.
pub const DCGAN_INIT: Init = Init::Randn {
    mean: 0.0,
    stdev: 0.02,
};

/// How a layer's weights start: as the reference's training script sets them, or as PyTorch
/// constructs them (what a network holds before a checkpoint is loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightInit {
    /// N(0, 0.02) weights and zero biases where the reference applies it.
    Reference,
    /// PyTorch's constructor defaults everywhere.
    TorchDefault,
}

/// `nn.Conv2d(cin, cout, 4, 2, 1)`: halves H and W.
pub fn conv_down(p: nn::Path, cin: i64, cout: i64, init: WeightInit) -> nn::Conv2D {
    let (ws, bs) = match init {
        WeightInit::Reference => (DCGAN_INIT, Init::Const(0.0)),
        WeightInit::TorchDefault => (torch_default_init(cin * 16), torch_default_init(cin * 16)),
    };
    let cfg = nn::ConvConfig {
        stride: 2,
        padding: 1,
        ws_init: ws,
        bs_init: bs,
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, 4, cfg)
}

/// `nn.ConvTranspose2d(cin, cout, 4, 2, 1)`: doubles H and W. Weight shape [cin, cout, 4, 4].
pub fn deconv_up(p: nn::Path, cin: i64, cout: i64, init: WeightInit) -> nn::ConvTranspose2D {
    // PyTorch computes fan_in of a transposed conv from weight dim 1 (= cout) times the kernel.
    let (ws, bs) = match init {
        WeightInit::Reference => (DCGAN_INIT, Init::Const(0.0)),
        WeightInit::TorchDefault => (torch_default_init(cout * 16), torch_default_init(cout * 16)),
    };
    let cfg = nn::ConvTransposeConfig {
        stride: 2,
        padding: 1,
        ws_init: ws,
        bs_init: bs,
        ..Default::default()
    };
    nn::conv_transpose2d(p, cin, cout, 4, cfg)
}

/// A plain stride-1 convolution with "same" padding `pad` and PyTorch default init, or the
/// given init.
pub fn conv_same(
    p: nn::Path,
    cin: i64,
    cout: i64,
    k: i64,
    pad: i64,
    bias: bool,
    ws: Option<Init>,
) -> nn::Conv2D {
    let fan_in = cin * k * k;
    let cfg = nn::ConvConfig {
        padding: pad,
        bias,
        ws_init: ws.unwrap_or_else(|| torch_default_init(fan_in)),
        bs_init: if ws.is_some() {
            Init::Const(0.0)
        } else {
            torch_default_init(fan_in)
        },
        ..Default::default()
    };
    nn::conv2d(p, cin, cout, k, cfg)
}

/// `nn.BatchNorm2d` / `nn.BatchNorm1d` with PyTorch's state: weight (ones), bias, running_mean,
/// running_var and the int64 `num_batches_tracked` counter, so state_dicts round-trip.
#[derive(Debug)]
pub struct BatchNorm {
    pub bn: nn::BatchNorm,
    pub num_batches_tracked: Tensor,
}

impl BatchNorm {
    pub fn new_2d(p: nn::Path, channels: i64, weight_init: Init) -> Self {
        let cfg = nn::BatchNormConfig {
            ws_init: weight_init,
            ..Default::default()
        };
        let num_batches_tracked = p.add(
            "num_batches_tracked",
            Tensor::zeros([], (Kind::Int64, p.device())),
            false,
        );
        Self {
            bn: nn::batch_norm2d(&p, channels, cfg),
            num_batches_tracked,
        }
    }

    pub fn new_1d(p: nn::Path, features: i64, weight_init: Init) -> Self {
        let cfg = nn::BatchNormConfig {
            ws_init: weight_init,
            ..Default::default()
        };
        let num_batches_tracked = p.add(
            "num_batches_tracked",
            Tensor::zeros([], (Kind::Int64, p.device())),
            false,
        );
        Self {
            bn: nn::batch_norm1d(&p, features, cfg),
            num_batches_tracked,
        }
    }

    /// Batch statistics (and a running-stat update) in training, running statistics otherwise.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        if train {
            tch::no_grad(|| {
                let mut counter = self.num_batches_tracked.shallow_clone();
                let _ = counter.g_add_scalar_(1);
            });
        }
        nn::ModuleT::forward_t(&self.bn, xs, train)
    }

    /// Per-channel (scale, shift) such that eval-mode BN(x) = scale * x + shift.
    pub fn eval_affine(&self) -> (Tensor, Tensor) {
        tch::no_grad(|| {
            let inv_std = (&self.bn.running_var + 1e-5).rsqrt();
            let scale = match &self.bn.ws {
                Some(w) => w * &inv_std,
                None => inv_std,
            };
            let shift = match &self.bn.bs {
                Some(b) => b - &self.bn.running_mean * &scale,
                None => -(&self.bn.running_mean * &scale),
            };
            (scale, shift)
        })
    }
}

/// Reference `Conv3x3`: ReflectionPad2d(1), 3x3 conv (`.conv`), leaky_relu(0.2).
#[derive(Debug)]
pub struct Conv3x3 {
    conv: nn::Conv2D,
}

impl Conv3x3 {
    pub fn new(p: nn::Path, cin: i64, cout: i64) -> Self {
        Self {
            conv: conv_same(&p / "conv", cin, cout, 3, 0, true, None),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let padded = xs.reflection_pad2d([1, 1, 1, 1]);
        leaky_relu(&nn::Module::forward(&self.conv, &padded))
    }
}

/// Reference `Score`: ReflectionPad2d(1), 3x3 conv (`.conv`), ReLU, 1x1 conv to the classes
/// (`.conv_final`). Output: per-class logits.
#[derive(Debug)]
pub struct Score {
    conv: nn::Conv2D,
    conv_final: nn::Conv2D,
}

impl Score {
    pub fn new(p: nn::Path, cin: i64, num_classes: i64) -> Self {
        Self {
            conv: conv_same(&p / "conv", cin, cin, 3, 0, true, None),
            conv_final: conv_same(&p / "conv_final", cin, num_classes, 1, 0, true, None),
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let padded = xs.reflection_pad2d([1, 1, 1, 1]);
        let hidden = nn::Module::forward(&self.conv, &padded).relu();
        nn::Module::forward(&self.conv_final, &hidden)
    }
}

/// `F.leaky_relu(xs, 0.2)`. tch's `leaky_relu` fixes the slope at 0.01, so this uses `prelu`
/// with a constant weight: the same formula (x if x > 0 else 0.2 x) in one kernel.
pub fn leaky_relu(xs: &Tensor) -> Tensor {
    xs.prelu(&Tensor::full([1], LEAKY_SLOPE, (xs.kind(), xs.device())))
}
