//! Which encoder a command uses: the shipped model, a checkpoint, or a baseline (raw pixels, the
//! untrained network), and the descriptor layers.

use std::path::{Path, PathBuf};

use super::MapEncoder;
use crate::error::PipelineError;
use crate::model::DescriptorSpec;

/// File name of the shipped model (in maps/models/).
pub const SHIPPED_MODEL: &str = "dasgil-synth-cd-256x512.safetensors";

/// The shipped model: $DASGIL_MODEL, else maps/models/ beside the executable's tree (source
/// checkout `target/release/..`, or a colcon install's `share/dasgil/maps/models`), else the
/// source tree this binary was built from.
pub fn default_checkpoint() -> Result<PathBuf, PipelineError> {
    if let Some(p) = std::env::var_os("DASGIL_MODEL") {
        return Ok(p.into());
    }
    let mut tried = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            for rel in ["../../maps/models", "../../share/dasgil/maps/models"] {
                tried.push(dir.join(rel).join(SHIPPED_MODEL));
            }
        }
    }
    tried.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("maps/models")
            .join(SHIPPED_MODEL),
    );
    for p in &tried {
        if p.is_file() {
            return Ok(p.clone());
        }
    }
    Err(PipelineError::NoShippedModel {
        tried: tried
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// `--layers 5,6` (or `5*0.5,6`) -> a descriptor spec: `DescriptorSpec`'s `FromStr`.
pub fn parse_layers(s: &str) -> Result<DescriptorSpec, String> {
    s.parse()
}

/// Which encoder a command uses.
pub enum ModelChoice {
    Checkpoint(Option<PathBuf>),
    RawPixels,
    /// The paper's initialisation at the shape of the given (or shipped) checkpoint.
    Untrained(Option<PathBuf>),
}

pub fn make_encoder(
    choice: &ModelChoice,
    layers: Option<DescriptorSpec>,
    device: tch::Device,
) -> Result<(MapEncoder, String), PipelineError> {
    match choice {
        ModelChoice::RawPixels => Ok((MapEncoder::raw_pixels(), "raw-pixels".into())),
        ModelChoice::Checkpoint(c) => {
            let path = match c {
                Some(p) => p.clone(),
                None => default_checkpoint()?,
            };
            let enc = MapEncoder::from_checkpoint(&path, device, layers)?;
            let name = path
                .file_stem()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((enc, name))
        }
        ModelChoice::Untrained(c) => {
            let path = match c {
                Some(p) => p.clone(),
                None => default_checkpoint()?,
            };
            let loaded = crate::model::checkpoint::load_generator(&path, tch::Device::Cpu, None)
                .map_err(super::EncodeError::from)?;
            let spec = layers.unwrap_or_else(|| super::default_spec(&loaded.meta));
            Ok((
                MapEncoder::untrained(loaded.meta.config, device, spec)?,
                "untrained".into(),
            ))
        }
    }
}
