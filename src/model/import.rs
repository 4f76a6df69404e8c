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
    #[error("cannot run the Python interpreter `{python}` ({}); run tools/setup.sh and source tools/env.sh, or set DASGIL_PYTHON to a Python with torch and safetensors", crate::error::io_words(source))]
    Python {
        python: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Convert { path: PathBuf, message: String },
    #[error("cannot create a temporary folder: {0}")]
    Temp(std::io::Error),
    #[error(transparent)]
    SameFile(#[from] crate::atomic::SameFileError),
    #[error("{path}: every tensor name starts with `{prefix}` (a state_dict saved from nn.DataParallel or DistributedDataParallel); import it with --strip-prefix {prefix}")]
    Prefix { path: PathBuf, prefix: String },
    #[error(
        "{path}: --strip-prefix {prefix}: no tensor name starts with it (first name: `{first}`)"
    )]
    PrefixAbsent {
        path: PathBuf,
        prefix: String,
        first: String,
    },
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
    /// A prefix to remove from every tensor name (`module.` for DataParallel state_dicts).
    pub strip_prefix: Option<String>,
}

/// What was converted.
#[derive(Debug, Clone)]
pub struct ImportReport {
    pub meta: CheckpointMeta,
    pub tensors: usize,
    /// Float values (parameters and BN statistics), as in the reference key lists.
    pub float_values: i64,
    pub network_name: String,
    /// Half-precision tensors converted to float32 (lossless).
    pub upcast: usize,
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
    if input.is_dir() {
        return Err(ImportError::Convert {
            path: input.to_path_buf(),
            message: "is a folder; expected a PyTorch state_dict file (N_net_gen.pth)".into(),
        });
    }
    if !input.is_file() {
        return Err(ImportError::Missing(input.to_path_buf()));
    }
    crate::atomic::refuse_overwriting_inputs(("output", output), &[("input", input)])?;
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
            message: converter_message(&String::from_utf8_lossy(&out.stderr), out.status.code()),
        });
    }
    let mut file = tensor_io::read(&plain)?;
    rename_and_upcast(&mut file, input, opts.strip_prefix.as_deref())?;
    let upcast = file
        .metadata
        .remove("dasgil.upcast")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    // The authors' files carry no input size: the paper's unless --input-size says otherwise
    // (the summary line says which; read_meta's warning is for loading such a file, not this).
    let paper = crate::model::config::ModelConfig::paper();
    let input_size = opts
        .input_size
        .unwrap_or((paper.input_height, paper.input_width));
    let mut meta = checkpoint::read_meta(&file, input, Some(input_size))?;
    meta.epoch = opts.epoch.or_else(|| epoch_from_file_name(input));
    meta.source = input
        .file_name()
        .map(|n| format!("imported from {}", n.to_string_lossy()));
    let (vs, network_name) = match meta.network {
        NetworkRole::Generator => {
            if opts.trained_with.is_some() && opts.trained_with != meta.discriminator {
                // The descriptor chosen for the other discriminator's training is not this one's.
                meta.descriptor_layers = None;
                meta.metric = None;
            }
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
        upcast,
    })
}

/// What the converter said, without PyTorch's advice to load with weights_only=False (which
/// would run code from the file) and never empty.
pub fn converter_message(stderr: &str, code: Option<i32>) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| !l.contains("weights_only=False") && !l.contains("Re-running `torch.load`"))
        .collect();
    if lines.is_empty() {
        format!(
            "the PyTorch converter failed (exit code {}) without a message; check that the file \
             is a PyTorch state_dict (.pth) and that the venv's torch works (`dasgil-tools info`)",
            code.map_or("none (killed by a signal)".to_string(), |c| c.to_string())
        )
    } else {
        // The last lines carry the reason (a traceback's first lines do not).
        lines[lines.len().saturating_sub(3)..].join("; ")
    }
}

/// Strips `prefix` from every name (or explains the DataParallel prefix when none is given),
/// and converts float16/bfloat16 tensors to float32, which is lossless; the count of converted
/// tensors is left in the metadata entry `dasgil.upcast`.
fn rename_and_upcast(
    file: &mut tensor_io::TensorFile,
    path: &Path,
    prefix: Option<&str>,
) -> Result<(), ImportError> {
    let names: Vec<String> = file.tensors.keys().cloned().collect();
    match prefix {
        Some(p) => {
            if !names.iter().any(|n| n.starts_with(p)) {
                return Err(ImportError::PrefixAbsent {
                    path: path.to_path_buf(),
                    prefix: p.to_string(),
                    first: names.first().cloned().unwrap_or_default(),
                });
            }
            let old = std::mem::take(&mut file.tensors);
            file.tensors = old
                .into_iter()
                .map(|(k, v)| (k.strip_prefix(p).map(str::to_string).unwrap_or(k), v))
                .collect();
        }
        None => {
            if !names.is_empty() && names.iter().all(|n| n.starts_with("module.")) {
                return Err(ImportError::Prefix {
                    path: path.to_path_buf(),
                    prefix: "module.".into(),
                });
            }
        }
    }
    let mut upcast = 0;
    for t in file.tensors.values_mut() {
        if matches!(t.kind, tch::Kind::Half | tch::Kind::BFloat16) {
            t.tensor = t.tensor.to_kind(tch::Kind::Float);
            t.kind = tch::Kind::Float;
            upcast += 1;
        }
    }
    file.metadata
        .insert("dasgil.upcast".into(), upcast.to_string());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converter_messages_drop_unsafe_advice_and_are_never_empty() {
        let m = converter_message(
            "Weights only load failed.\nRe-running `torch.load` with `weights_only` set to `False` will likely succeed\nWeightsUnpickler error: Unsupported global: GLOBAL os.system\n",
            Some(2),
        );
        assert!(!m.contains("False"), "{m}");
        assert!(m.contains("Unsupported global"), "{m}");
        let m = converter_message("  \n", Some(1));
        assert!(
            m.contains("exit code 1") && m.contains("without a message"),
            "{m}"
        );
    }

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
