//! Named tensors in safetensors files, with string metadata; written atomically.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Kind, Tensor};

use crate::atomic::{write_atomic, PathIoError};

#[derive(Debug, thiserror::Error)]
pub enum TensorFileError {
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("{path}: not a valid safetensors file: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: tensor `{name}` has dtype {found}, which dasgil does not read (expected one of F32, F64, F16, BF16, I64, I32, U8, BOOL)")]
    Dtype {
        path: PathBuf,
        name: String,
        found: String,
    },
    #[error("tensor `{name}` cannot be saved: {message}")]
    Tensor { name: String, message: String },
}

/// One tensor as stored: dtype, shape and its value on the CPU.
#[derive(Debug)]
pub struct StoredTensor {
    pub kind: Kind,
    pub shape: Vec<i64>,
    pub tensor: Tensor,
}

/// The content of a safetensors file.
#[derive(Debug)]
pub struct TensorFile {
    pub metadata: HashMap<String, String>,
    pub tensors: BTreeMap<String, StoredTensor>,
}

fn kind_of(dtype: Dtype) -> Option<Kind> {
    Some(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        _ => return None,
    })
}

fn dtype_of(kind: Kind) -> Option<Dtype> {
    Some(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        _ => return None,
    })
}

/// Reads every tensor of a safetensors file onto the CPU.
pub fn read(path: &Path) -> Result<TensorFile, TensorFileError> {
    let bytes = std::fs::read(path).map_err(|e| PathIoError::new("cannot read", path, e))?;
    let format_err = |e: safetensors::SafeTensorError| TensorFileError::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(format_err)?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(format_err)?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let kind = kind_of(view.dtype()).ok_or_else(|| TensorFileError::Dtype {
            path: path.to_path_buf(),
            name: name.clone(),
            found: format!("{:?}", view.dtype()),
        })?;
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        let tensor = Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| {
            TensorFileError::Format {
                path: path.to_path_buf(),
                message: format!("tensor `{name}`: {e}"),
            }
        })?;
        tensors.insert(
            name,
            StoredTensor {
                kind,
                shape,
                tensor,
            },
        );
    }
    Ok(TensorFile { metadata, tensors })
}

struct OwnedView {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &OwnedView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn to_view(name: &str, t: &Tensor) -> Result<OwnedView, TensorFileError> {
    let err = |message: String| TensorFileError::Tensor {
        name: name.to_string(),
        message,
    };
    let dtype =
        dtype_of(t.kind()).ok_or_else(|| err(format!("unsupported kind {:?}", t.kind())))?;
    let t = t
        .f_to_device(tch::Device::Cpu)
        .and_then(|t| t.f_contiguous())
        .map_err(|e| err(e.to_string()))?;
    let numel = t.numel();
    let mut data = vec![0u8; numel * t.kind().elt_size_in_bytes()];
    t.f_copy_data_u8(&mut data, numel)
        .map_err(|e| err(e.to_string()))?;
    Ok(OwnedView {
        dtype,
        shape: t.size().iter().map(|&d| d as usize).collect(),
        data,
    })
}

/// Writes `tensors` (any device) and `metadata` to `path` atomically.
pub fn write(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<(), TensorFileError> {
    let views = tch::no_grad(|| {
        tensors
            .iter()
            .map(|(n, t)| Ok((n.clone(), to_view(n, t)?)))
            .collect::<Result<Vec<_>, TensorFileError>>()
    })?;
    let info = if metadata.is_empty() {
        None
    } else {
        Some(metadata.clone())
    };
    let format = |message: String| TensorFileError::Format {
        path: path.to_path_buf(),
        message,
    };
    let bytes = safetensors::serialize(views.iter().map(|(n, v)| (n.as_str(), v)), info)
        .map_err(|e| format(e.to_string()))?;
    write_atomic(path, &canonical_header(bytes).map_err(format)?)?;
    Ok(())
}

/// The safetensors bytes with the header's JSON keys in sorted order: the crate writes the
/// metadata in a HashMap's order, which differs from process to process, so the same tensors
/// and metadata would give other bytes each time (a run's checkpoints must be the same bytes
/// for the same seed). The data and its offsets are unchanged; the header is padded with
/// spaces to 8 bytes, as the format has it.
fn canonical_header(bytes: Vec<u8>) -> Result<Vec<u8>, String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("shorter than its header length")?;
    let header = bytes.get(8..8 + n).ok_or("shorter than its header")?;
    // Objects as sorted maps (inserted in sorted order: also sorted if serde_json's map type
    // keeps insertion order).
    fn sorted(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let m: BTreeMap<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k, sorted(v))).collect();
                serde_json::to_value(m).expect("a map of JSON values")
            }
            other => other,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(header).map_err(|e| e.to_string())?;
    let mut text = serde_json::to_string(&sorted(value)).map_err(|e| e.to_string())?;
    while text.len() % 8 != 0 {
        text.push(' ');
    }
    let mut out = Vec::with_capacity(8 + text.len() + bytes.len() - 8 - n);
    out.extend_from_slice(&(text.len() as u64).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&bytes[8 + n..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tensors_and_metadata_are_the_same_bytes_every_time() {
        // Each HashMap iterates in its own order: before the header was sorted, files written
        // from maps of a dozen keys differed from one write to the next.
        let dir = tempfile::tempdir().unwrap();
        let tensors = vec![
            (
                "b.weight".to_string(),
                Tensor::from_slice(&[1.0f32, 2.0, 3.0]),
            ),
            ("a.bias".to_string(), Tensor::from_slice(&[7i64, 8])),
        ];
        let mut first: Option<Vec<u8>> = None;
        for i in 0..6 {
            let metadata: HashMap<String, String> = (0..12)
                .map(|k| (format!("dasgil.key{k}"), format!("value {k}")))
                .collect();
            let path = dir.path().join(format!("{i}.safetensors"));
            write(&path, &tensors, &metadata).unwrap();
            let bytes = std::fs::read(&path).unwrap();
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            assert_eq!(n % 8, 0, "header of {n} bytes not padded to 8");
            let back = read(&path).unwrap();
            assert_eq!(back.metadata, metadata);
            assert_eq!(back.tensors.len(), 2);
            match &first {
                None => first = Some(bytes),
                Some(f) => assert_eq!(&bytes, f, "write {i} differs from the first"),
            }
        }
    }
}
