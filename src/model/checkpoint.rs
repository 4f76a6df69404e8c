//! Checkpoints: one network's state_dict as a safetensors file whose tensor names are the
//! reference PyTorch keys, plus metadata (model config, discriminator type, epoch, step).
//! Loading is strict: every missing, unexpected or mis-shaped tensor is reported at once.
//!
//! A plain safetensors file of a reference state_dict (no metadata) loads too: the generator's
//! widths are read from its shapes, the input size defaults to the paper's 256x1024.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use super::config::ModelConfig;
use super::descriptor::DescriptorSpec;
use super::discriminator::{Discriminator, DiscriminatorKind};
use super::generator::Generator;
use super::layers::WeightInit;
use super::ModelError;
use crate::tensor_io::{self, TensorFile, TensorFileError};

/// Value of the `dasgil.format` metadata entry.
pub const FORMAT: &str = "dasgil-checkpoint/1";

/// Which network a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkRole {
    Generator,
    Discriminator,
}

/// What a checkpoint says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub network: NetworkRole,
    pub config: ModelConfig,
    /// The discriminator the model was trained with (for a discriminator: its own type).
    pub discriminator: Option<DiscriminatorKind>,
    pub epoch: Option<u64>,
    pub step: Option<u64>,
    /// Where the weights came from (e.g. the imported .pth file), free text.
    pub source: Option<String>,
    /// The descriptor layers chosen for this generator on validation (`dasgil.descriptor_layers`,
    /// e.g. `6`); absent: the paper's for its discriminator (`extract::default_spec`).
    pub descriptor_layers: Option<DescriptorSpec>,
    /// The descriptor metric chosen for this generator on validation (`dasgil.metric`: `l1`,
    /// `l2` or `cosine`); absent: the reference's L1 (`extract::MapEncoder::default_metric`).
    pub metric: Option<crate::retrieval::Metric>,
    /// The per-image photometric normalisation the generator was trained with
    /// (`dasgil.photometric`, `train --photometric`): maps built with it apply the same unless
    /// told otherwise. Absent: none (the paper's).
    pub photometric: Option<crate::data::preprocess::Photometric>,
}

impl CheckpointMeta {
    fn to_metadata(&self) -> HashMap<String, String> {
        let mut m = HashMap::new();
        m.insert("dasgil.format".into(), FORMAT.into());
        let role = match self.network {
            NetworkRole::Generator => "generator",
            NetworkRole::Discriminator => "discriminator",
        };
        m.insert("dasgil.network".into(), role.into());
        // ModelConfig serialises to a flat JSON object of integers; this cannot fail.
        m.insert(
            "dasgil.config".into(),
            serde_json::to_string(&self.config).unwrap_or_default(),
        );
        if let Some(d) = self.discriminator {
            m.insert("dasgil.discriminator".into(), d.short_name().into());
        }
        if let Some(e) = self.epoch {
            m.insert("dasgil.epoch".into(), e.to_string());
        }
        if let Some(s) = self.step {
            m.insert("dasgil.step".into(), s.to_string());
        }
        if let Some(s) = &self.source {
            m.insert("dasgil.source".into(), s.clone());
        }
        if let Some(l) = &self.descriptor_layers {
            m.insert("dasgil.descriptor_layers".into(), l.to_string());
        }
        if let Some(metric) = self.metric {
            m.insert("dasgil.metric".into(), metric.name().into());
        }
        if let Some(p) = self.photometric {
            m.insert("dasgil.photometric".into(), p.name().into());
        }
        m
    }
}

/// A tensor that is not what the network expects.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMismatch {
    pub name: String,
    pub expected: Option<(Vec<i64>, Kind)>,
    pub found: Option<(Vec<i64>, Kind)>,
}

impl fmt::Display for TensorMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<(Vec<i64>, Kind)>| match v {
            Some((s, k)) => format!("{s:?} {k:?}"),
            None => "absent".to_string(),
        };
        let what = match (&self.expected, &self.found) {
            (Some(_), None) => "missing",
            (None, Some(_)) => "unexpected",
            _ => "wrong shape or dtype",
        };
        write!(
            f,
            "{}: {what} (expected {}, found {})",
            self.name,
            show(&self.expected),
            show(&self.found)
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    File(#[from] TensorFileError),
    #[error("{path}: metadata field `{field}`: expected {expected}, found `{found}`")]
    Metadata {
        path: PathBuf,
        field: String,
        expected: String,
        found: String,
    },
    #[error("{path}: cannot tell which network this is: {reason}")]
    Unrecognised { path: PathBuf, reason: String },
    #[error("{path}: {} tensor(s) do not match the {network}:\n  {}", mismatches.len(),
        mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Mismatch {
        path: PathBuf,
        network: String,
        mismatches: Vec<TensorMismatch>,
    },
    #[error("{path}: {source}")]
    Model { path: PathBuf, source: ModelError },
    #[error("{path}: tensor `{name}` holds {count} non-finite value(s) (NaN or infinite); the checkpoint is damaged or its training diverged, and a network with it would only output NaN")]
    NonFinite {
        path: PathBuf,
        name: String,
        count: i64,
    },
    #[error("{path}: cannot copy tensor `{name}`: {source}")]
    Copy {
        path: PathBuf,
        name: String,
        source: tch::TchError,
    },
}

/// A generator with its variables.
pub struct LoadedGenerator {
    pub vs: nn::VarStore,
    pub net: Generator,
    pub meta: CheckpointMeta,
}

/// A discriminator with its variables.
pub struct LoadedDiscriminator {
    pub vs: nn::VarStore,
    pub net: Discriminator,
    pub meta: CheckpointMeta,
}

/// Every (name, tensor) of a var store, sorted by name.
pub fn named_tensors(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<_> = vs.variables().into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Saves a network's variables and metadata to `path` (safetensors, atomic).
pub fn save(vs: &nn::VarStore, meta: &CheckpointMeta, path: &Path) -> Result<(), CheckpointError> {
    tensor_io::write(path, &named_tensors(vs), &meta.to_metadata())?;
    Ok(())
}

/// Compares the file's tensors with the var store's, then copies them in (strict).
pub fn load_strict(
    vs: &nn::VarStore,
    file: &TensorFile,
    path: &Path,
    network: &str,
) -> Result<(), CheckpointError> {
    let vars = vs.variables();
    let mut mismatches = Vec::new();
    let mut names: Vec<&String> = vars.keys().chain(file.tensors.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let expected = vars.get(name).map(|t| (t.size(), t.kind()));
        let found = file.tensors.get(name).map(|t| (t.shape.clone(), t.kind));
        if expected != found {
            mismatches.push(TensorMismatch {
                name: name.clone(),
                expected,
                found,
            });
        }
    }
    if !mismatches.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: path.to_path_buf(),
            network: network.into(),
            mismatches,
        });
    }
    for (name, t) in &file.tensors {
        if matches!(
            t.kind,
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        ) {
            let bad = t
                .tensor
                .isfinite()
                .logical_not()
                .sum(Kind::Int64)
                .int64_value(&[]);
            if bad > 0 {
                return Err(CheckpointError::NonFinite {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    count: bad,
                });
            }
        }
    }
    tch::no_grad(|| {
        for (name, var) in &vars {
            let mut var = var.shallow_clone();
            // Present: checked above.
            if let Some(src) = file.tensors.get(name) {
                var.f_copy_(&src.tensor)
                    .map_err(|source| CheckpointError::Copy {
                        path: path.to_path_buf(),
                        name: name.clone(),
                        source,
                    })?;
            }
        }
        Ok(())
    })
}

fn meta_field<T: std::str::FromStr>(
    file: &TensorFile,
    path: &Path,
    field: &str,
    expected: &str,
) -> Result<Option<T>, CheckpointError> {
    match file.metadata.get(field) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| CheckpointError::Metadata {
            path: path.to_path_buf(),
            field: field.into(),
            expected: expected.into(),
            found: v.clone(),
        }),
    }
}

/// Reads the metadata of a checkpoint, filling what a plain state_dict file lacks from its
/// tensor shapes (`input_size` overrides the input size, default the paper's).
pub fn read_meta(
    file: &TensorFile,
    path: &Path,
    input_size: Option<(i64, i64)>,
) -> Result<CheckpointMeta, CheckpointError> {
    if let Some(format) = file.metadata.get("dasgil.format") {
        if format != FORMAT {
            return Err(CheckpointError::Metadata {
                path: path.into(),
                field: "dasgil.format".into(),
                expected: FORMAT.into(),
                found: format.clone(),
            });
        }
    }
    let network = match file.metadata.get("dasgil.network").map(String::as_str) {
        Some("generator") => NetworkRole::Generator,
        Some("discriminator") => NetworkRole::Discriminator,
        Some(other) => {
            return Err(CheckpointError::Metadata {
                path: path.into(),
                field: "dasgil.network".into(),
                expected: "generator or discriminator".into(),
                found: other.into(),
            })
        }
        None => infer_role(file, path)?,
    };
    let config = match file.metadata.get("dasgil.config") {
        Some(json) => {
            serde_json::from_str::<ModelConfig>(json).map_err(|e| CheckpointError::Metadata {
                path: path.into(),
                field: "dasgil.config".into(),
                expected: format!("a model config ({e})"),
                found: json.clone(),
            })?
        }
        None => {
            let config = infer_config(file, path, network)?;
            if network == NetworkRole::Generator && input_size.is_none() {
                // The authors' weights carry no input size; the paper's is the only safe guess,
                // and a wrong one changes every descriptor without an error: say it.
                tracing::warn!(
                    "{}: no `dasgil.config` in its metadata: its input is taken as the paper's \
                     {}x{} (height x width); for a model trained at another size, import its \
                     .pth with `dasgil-tools import-checkpoint --input-size HxW`",
                    path.display(),
                    config.input_height,
                    config.input_width
                );
            }
            config
        }
    };
    let config = match input_size {
        Some((h, w)) => config
            .with_input_size(h, w)
            .map_err(|e| CheckpointError::Model {
                path: path.into(),
                source: e.into(),
            })?,
        None => config,
    };
    let discriminator = match meta_field::<String>(file, path, "dasgil.discriminator", "FD or CD")?
    {
        Some(s) => Some(
            s.parse::<DiscriminatorKind>()
                .map_err(|e| CheckpointError::Metadata {
                    path: path.into(),
                    field: "dasgil.discriminator".into(),
                    expected: e,
                    found: s,
                })?,
        ),
        None if network == NetworkRole::Discriminator => Some(infer_discriminator(file, path)?),
        None => None,
    };
    Ok(CheckpointMeta {
        network,
        config,
        discriminator,
        epoch: meta_field(file, path, "dasgil.epoch", "an unsigned integer")?,
        step: meta_field(file, path, "dasgil.step", "an unsigned integer")?,
        source: file.metadata.get("dasgil.source").cloned(),
        descriptor_layers: meta_field(
            file,
            path,
            "dasgil.descriptor_layers",
            "encoder layers 1 to 8, each once, comma-separated, such as 6 or 5,6",
        )?,
        metric: meta_field(file, path, "dasgil.metric", "l1, l2 or cosine")?,
        photometric: meta_field(file, path, "dasgil.photometric", "none or autocontrast")?,
    })
}

fn infer_role(file: &TensorFile, path: &Path) -> Result<NetworkRole, CheckpointError> {
    if file.tensors.contains_key("conv1.weight") {
        Ok(NetworkRole::Generator)
    } else if file.tensors.contains_key("bn.running_mean")
        || file.tensors.contains_key("rb1.bn1.weight")
    {
        Ok(NetworkRole::Discriminator)
    } else {
        Err(CheckpointError::Unrecognised {
            path: path.into(),
            reason: "no `conv1.weight` (generator), `bn.running_mean` (FD) or `rb1.bn1.weight` (CD) tensor".into(),
        })
    }
}

fn infer_discriminator(
    file: &TensorFile,
    path: &Path,
) -> Result<DiscriminatorKind, CheckpointError> {
    if file.tensors.contains_key("bn.running_mean") {
        Ok(DiscriminatorKind::Flatten)
    } else if file.tensors.contains_key("rb1.bn1.weight") {
        Ok(DiscriminatorKind::Cascade)
    } else {
        Err(CheckpointError::Unrecognised {
            path: path.into(),
            reason: "neither FD (`bn.*`) nor CD (`rb1.*`) tensors".into(),
        })
    }
}

/// Widths from shapes: d = conv1.weight[0] (generator) or rb1.bn1.weight[0] (CD); classes =
/// conv_score.conv_final.weight[0]. Input size: the paper's.
fn infer_config(
    file: &TensorFile,
    path: &Path,
    role: NetworkRole,
) -> Result<ModelConfig, CheckpointError> {
    let dim0 = |name: &str| {
        file.tensors
            .get(name)
            .and_then(|t| t.shape.first().copied())
    };
    let paper = ModelConfig::paper();
    let unrecognised = |reason: &str| CheckpointError::Unrecognised {
        path: path.into(),
        reason: reason.into(),
    };
    match role {
        NetworkRole::Generator => Ok(ModelConfig {
            base_width: dim0("conv1.weight").ok_or_else(|| unrecognised("no `conv1.weight`"))?,
            num_classes: dim0("conv_score.conv_final.weight")
                .ok_or_else(|| unrecognised("no `conv_score.conv_final.weight`"))?,
            ..paper
        }),
        NetworkRole::Discriminator => Ok(ModelConfig {
            base_width: dim0("rb1.bn1.weight").unwrap_or(paper.base_width),
            ..paper
        }),
    }
}

fn wrong_role(path: &Path, expected: &str, found: &str) -> CheckpointError {
    CheckpointError::Metadata {
        path: path.into(),
        field: "dasgil.network".into(),
        expected: expected.into(),
        found: found.into(),
    }
}

/// The generator `meta` describes, on `device`, with `file`'s tensors loaded strictly.
pub fn generator_from(
    file: &TensorFile,
    meta: &CheckpointMeta,
    path: &Path,
    device: Device,
) -> Result<(nn::VarStore, Generator), CheckpointError> {
    if meta.network != NetworkRole::Generator {
        return Err(wrong_role(path, "generator", "discriminator"));
    }
    let vs = nn::VarStore::new(device);
    let net =
        Generator::new(&vs.root(), meta.config, WeightInit::TorchDefault).map_err(|source| {
            CheckpointError::Model {
                path: path.into(),
                source,
            }
        })?;
    load_strict(&vs, file, path, "DASGIL generator")?;
    Ok((vs, net))
}

/// The discriminator `meta` describes, on `device`, with `file`'s tensors loaded strictly.
pub fn discriminator_from(
    file: &TensorFile,
    meta: &CheckpointMeta,
    path: &Path,
    device: Device,
) -> Result<(nn::VarStore, Discriminator), CheckpointError> {
    let kind = match (meta.network, meta.discriminator) {
        (NetworkRole::Discriminator, Some(kind)) => kind,
        _ => return Err(wrong_role(path, "discriminator", "generator")),
    };
    let vs = nn::VarStore::new(device);
    let net = Discriminator::new(&vs.root(), &meta.config, kind).map_err(|source| {
        CheckpointError::Model {
            path: path.into(),
            source,
        }
    })?;
    load_strict(
        &vs,
        file,
        path,
        &format!("DASGIL {} discriminator", kind.short_name()),
    )?;
    Ok((vs, net))
}

/// Loads a generator checkpoint onto `device`. `input_size` overrides the stored input size.
pub fn load_generator(
    path: &Path,
    device: Device,
    input_size: Option<(i64, i64)>,
) -> Result<LoadedGenerator, CheckpointError> {
    let file = tensor_io::read(path)?;
    let meta = read_meta(&file, path, input_size)?;
    let (vs, net) = generator_from(&file, &meta, path, device)?;
    Ok(LoadedGenerator { vs, net, meta })
}

/// Loads a discriminator checkpoint onto `device`.
pub fn load_discriminator(
    path: &Path,
    device: Device,
    input_size: Option<(i64, i64)>,
) -> Result<LoadedDiscriminator, CheckpointError> {
    let file = tensor_io::read(path)?;
    let meta = read_meta(&file, path, input_size)?;
    let (vs, net) = discriminator_from(&file, &meta, path, device)?;
    Ok(LoadedDiscriminator { vs, net, meta })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> CheckpointMeta {
        CheckpointMeta {
            network: NetworkRole::Generator,
            config: ModelConfig::paper().with_input_size(256, 512).unwrap(),
            discriminator: Some(DiscriminatorKind::Cascade),
            epoch: Some(3),
            step: Some(1200),
            source: Some("trained here".into()),
            descriptor_layers: Some("6".parse().unwrap()),
            metric: Some(crate::retrieval::Metric::Cosine),
            photometric: Some(crate::data::preprocess::Photometric::Autocontrast),
        }
    }

    /// A generator of `meta`'s config saved with `meta` in a new folder: (folder, file, weights).
    fn saved(meta: &CheckpointMeta) -> (tempfile::TempDir, PathBuf, nn::VarStore) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gen.safetensors");
        let vs = nn::VarStore::new(Device::Cpu);
        Generator::new(&vs.root(), meta.config, WeightInit::Reference).unwrap();
        save(&vs, meta, &path).unwrap();
        (dir, path, vs)
    }

    #[test]
    fn metadata_round_trips_and_bad_metadata_is_named() {
        let (_dir, path, vs) = saved(&meta());
        let loaded = load_generator(&path, Device::Cpu, None).unwrap();
        assert_eq!(loaded.meta, meta());
        assert_eq!(loaded.net.config().input_width, 512);
        // The weights themselves round-trip bit for bit.
        let before = vs.variables();
        for (name, t) in loaded.vs.variables() {
            assert!(t.equal(&before[&name]), "{name}");
        }
        // A discriminator loader refuses a generator file.
        let e = load_discriminator(&path, Device::Cpu, None).err().unwrap();
        assert!(
            e.to_string()
                .contains("field `dasgil.network`: expected discriminator, found `generator`"),
            "{e}"
        );

        let mut file = tensor_io::read(&path).unwrap();
        file.metadata.insert("dasgil.epoch".into(), "three".into());
        let tensors: Vec<(String, Tensor)> = file
            .tensors
            .into_iter()
            .map(|(k, v)| (k, v.tensor))
            .collect();
        tensor_io::write(&path, &tensors, &file.metadata).unwrap();
        let e = load_generator(&path, Device::Cpu, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: metadata field `dasgil.epoch`: expected an unsigned integer, found `three`",
                path.display()
            )
        );

        // Descriptor layers named twice (or outside 1..8) are refused naming the field.
        file.metadata.insert("dasgil.epoch".into(), "3".into());
        file.metadata
            .insert("dasgil.descriptor_layers".into(), "4,4".into());
        tensor_io::write(&path, &tensors, &file.metadata).unwrap();
        let e = load_generator(&path, Device::Cpu, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: metadata field `dasgil.descriptor_layers`: expected encoder layers 1 to 8, \
                 each once, comma-separated, such as 6 or 5,6, found `4,4`",
                path.display()
            )
        );

        // A metric this build does not know is refused naming the field and the value.
        file.metadata
            .insert("dasgil.descriptor_layers".into(), "6".into());
        file.metadata
            .insert("dasgil.metric".into(), "hamming".into());
        tensor_io::write(&path, &tensors, &file.metadata).unwrap();
        let e = load_generator(&path, Device::Cpu, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: metadata field `dasgil.metric`: expected l1, l2 or cosine, found `hamming`",
                path.display()
            )
        );

        // So is a photometric normalisation this build does not know.
        file.metadata
            .insert("dasgil.metric".into(), "cosine".into());
        file.metadata
            .insert("dasgil.photometric".into(), "equalize".into());
        tensor_io::write(&path, &tensors, &file.metadata).unwrap();
        let e = load_generator(&path, Device::Cpu, None).err().unwrap();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: metadata field `dasgil.photometric`: expected none or autocontrast, found `equalize`",
                path.display()
            )
        );
    }

    #[test]
    fn a_recorded_metric_is_the_default_else_the_references_l1() {
        use crate::retrieval::Metric;
        for metric in [Some(Metric::L2), Some(Metric::Cosine), None] {
            let m = CheckpointMeta { metric, ..meta() };
            let (_dir, path, _) = saved(&m);
            let loaded = load_generator(&path, Device::Cpu, None).unwrap().meta;
            assert_eq!(loaded, m, "round trip of {metric:?}");
            // The encoder built from the file searches with it unless told otherwise.
            let enc =
                crate::extract::MapEncoder::from_checkpoint(&path, Device::Cpu, None).unwrap();
            assert_eq!(enc.recorded_metric(), metric);
            assert_eq!(enc.default_metric(), metric.unwrap_or(Metric::L1));
        }
        // The baselines search as the reference scores them.
        assert_eq!(
            crate::extract::MapEncoder::raw_pixels().default_metric(),
            Metric::L1
        );
    }

    #[test]
    fn recorded_descriptor_layers_are_the_default_else_the_papers() {
        // A weighted set round-trips through the file's metadata.
        let weighted = CheckpointMeta {
            descriptor_layers: Some("5*0.5,6".parse().unwrap()),
            ..meta()
        };
        let (_dir, path, _) = saved(&weighted);
        assert_eq!(
            load_generator(&path, Device::Cpu, None).unwrap().meta,
            weighted
        );
        let mut m = meta();
        assert_eq!(
            crate::extract::default_spec(&m).to_string(),
            "6",
            "the layers the file records"
        );
        m.descriptor_layers = None;
        assert_eq!(crate::extract::default_spec(&m).to_string(), "5", "CD: e5");
        m.discriminator = Some(DiscriminatorKind::Flatten);
        assert_eq!(crate::extract::default_spec(&m).to_string(), "5,6", "FD");
        m.discriminator = None;
        assert_eq!(
            crate::extract::default_spec(&m).to_string(),
            "5,6",
            "unsaid: FD"
        );
        for text in ["6,5", "5*0.5,6", "3,4*2,5,6"] {
            let spec: DescriptorSpec = text.parse().unwrap();
            assert_eq!(spec.to_string(), text, "written as read, order kept");
        }
        assert_eq!(
            "5*0.5".parse::<DescriptorSpec>().unwrap().layers[0].weight,
            0.5
        );
        for bad in [
            "", "0", "9", "5,5", "five", "5*", "5*0", "5*-1", "5*nan", "5*inf",
        ] {
            assert!(bad.parse::<DescriptorSpec>().is_err(), "{bad:?}");
        }
    }
}
