//! Importing the authors' checkpoints (`N_net_gen.pth`, `N_net_dis.pth`): the venv's PyTorch
//! reads the pickle with `weights_only=True` (no code from the file runs) into a plain
//! safetensors file; this side recognises the network, loads it strictly and writes a dasgil
//! checkpoint with metadata.

use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Device;

use super::checkpoint::{self, CheckpointError, CheckpointMeta, NetworkRole};
use super::discriminator::DiscriminatorKind;
use crate::tensor_io;

const CONVERTER: &str = include_str!("../../tools/python/pth_to_safetensors.py");

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}: no such file")]
    Missing(PathBuf),
    #[error("cannot run the Python interpreter `{python}` ({source}); run tools/setup.sh and source tools/env.sh, or set DASGIL_PYTHON to a Python with torch and safetensors")]
    Python {
        python: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Convert { path: PathBuf, message: String },
    #[error("cannot create a temporary folder: {0}")]
    Temp(std::io::Error),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    File(#[from] tensor_io::TensorFileError),
}

/// Choices the .pth file itself cannot tell.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    pub python: Option<PathBuf>,
    /// Network input size (H, W); default the paper's 256x1024.
    pub input_size: Option<(i64, i64)>,
    /// Epoch; default: N from an `N_net_gen.pth` / `N_net_dis.pth` file name.
    pub epoch: Option<u64>,
    /// The discriminator the generator was trained with (recorded in its metadata).
    pub trained_with: Option<DiscriminatorKind>,
}

/// What was converted.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub meta: CheckpointMeta,
    pub tensors: usize,
    /// Float values (parameters and BN statistics), as in the reference key lists.
    pub float_values: i64,
    pub network_name: String,
}

/// N from `N_net_gen.pth` / `N_net_dis.pth`.
pub fn epoch_from_file_name(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let (n, rest) = name.split_once("_net_")?;
    matches!(rest, "gen.pth" | "dis.pth").then_some(())?;
    n.parse().ok()
}

/// Converts `input` (.pth) into the dasgil checkpoint `output` (.safetensors).
pub fn import_pth(
    input: &Path,
    output: &Path,
    opts: &ImportOptions,
) -> Result<ImportReport, ImportError> {
    if !input.is_file() {
        return Err(ImportError::Missing(input.to_path_buf()));
    }
    let tmp = tempfile::tempdir().map_err(ImportError::Temp)?;
    let plain = tmp.path().join("plain.safetensors");
    let python = opts
        .python
        .clone()
        .unwrap_or_else(crate::python::interpreter);
    let out = Command::new(&python)
        .arg("-c")
        .arg(CONVERTER)
        .arg(input)
        .arg(&plain)
        .output()
        .map_err(|source| ImportError::Python {
            python: python.clone(),
            source,
        })?;
    if !out.status.success() {
        return Err(ImportError::Convert {
            path: input.to_path_buf(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let file = tensor_io::read(&plain)?;
    let mut meta = checkpoint::read_meta(&file, input, opts.input_size)?;
    meta.epoch = opts.epoch.or_else(|| epoch_from_file_name(input));
    meta.source = input
        .file_name()
        .map(|n| format!("imported from {}", n.to_string_lossy()));
    let (vs, network_name) = match meta.network {
        NetworkRole::Generator => {
            meta.discriminator = opts.trained_with;
            let (vs, _) = checkpoint::generator_from(&file, &meta, input, Device::Cpu)?;
            (vs, "generator".to_string())
        }
        NetworkRole::Discriminator => {
            let (vs, net) = checkpoint::discriminator_from(&file, &meta, input, Device::Cpu)?;
            (vs, format!("{} discriminator", net.kind().short_name()))
        }
    };
    checkpoint::save(&vs, &meta, output)?;
    let float_values = file
        .tensors
        .values()
        .filter(|t| {
            matches!(
                t.kind,
                tch::Kind::Float | tch::Kind::Double | tch::Kind::Half | tch::Kind::BFloat16
            )
        })
        .map(|t| t.shape.iter().product::<i64>())
        .sum();
    Ok(ImportReport {
        meta,
        tensors: file.tensors.len(),
        float_values,
        network_name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_comes_from_reference_file_names() {
        assert_eq!(
            epoch_from_file_name(Path::new("ckpt/5_net_gen.pth")),
            Some(5)
        );
        assert_eq!(epoch_from_file_name(Path::new("40_net_dis.pth")), Some(40));
        assert_eq!(epoch_from_file_name(Path::new("model.pth")), None);
        assert_eq!(epoch_from_file_name(Path::new("x_net_gen.pth")), None);
    }
}
