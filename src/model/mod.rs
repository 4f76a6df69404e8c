//! The DASGIL networks (paper section III-A), their losses (III-B), retrieval descriptors
//! (III-C) and checkpoints, matching the authors' PyTorch code parameter for parameter.

pub mod checkpoint;
pub mod config;
pub mod descriptor;
pub mod discriminator;
pub mod generator;
pub mod import;
pub mod layers;
pub mod losses;

pub use checkpoint::{CheckpointError, CheckpointMeta, NetworkRole};

/// libtorch's random generator is one per process: whoever seeds it and then draws weights from
/// it (the untrained baseline, a new training run) holds this lock meanwhile, so another thread
/// of the same process (a test beside it, a second encoder) cannot draw in between and change
/// the weights "seed N" promises.
pub static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
pub use config::ModelConfig;
pub use descriptor::{DescriptorEncoder, DescriptorLayer, DescriptorSpec};
pub use discriminator::{Discriminator, DiscriminatorKind};
pub use generator::{Generator, GeneratorOutput};
pub use layers::WeightInit;

/// Misuse of a network: wrong input shape, layer index or config.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("network input has shape {found}, expected {expected}")]
    InputShape { expected: String, found: String },
    #[error("encoder layer {layer} does not exist: layers are numbered 1 to 8")]
    Layer { layer: usize },
    #[error("expected {expected} feature maps, found {found}")]
    FeatureCount { expected: usize, found: usize },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
