//! Reading and writing safetensors files: typed, shape-checked reads with errors that name the
//! file and the tensor, and atomic writes (temporary file in the same directory, flush, rename),
//! so that an interrupted write never destroys the file it replaces.

use crate::error::{Error, Result};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A safetensors file read into memory.
pub struct TensorFile {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl TensorFile {
    /// Reads and validates the header of a safetensors file.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_dir() {
            return Err(Error::file(path, "is a directory, not a safetensors file"));
        }
        // Only regular files: reading a pipe or a device may never end.
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(Error::file(
                path,
                "is not a regular file (a pipe, a device or a socket), not a safetensors file",
            ));
        }
        // The file's bytes, and the tensors decoded from them (twice over while they are copied).
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        crate::footprint::check_bytes(
            &format!("reading {}", path.display()),
            len.saturating_mul(3),
            "read it on a machine with more memory, or free some",
        )?;
        let bytes =
            std::fs::read(path).map_err(|e| Error::file(path, format!("cannot read: {e}")))?;
        Self::from_bytes(path, bytes)
    }

    /// Validates the header of safetensors bytes read elsewhere (a download, an upload);
    /// `path` names them in errors.
    pub fn from_bytes(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        SafeTensors::deserialize(&bytes).map_err(|e| {
            Error::file(
                path,
                format!("is not a readable safetensors file ({e}); it may be truncated or of another format"),
            )
        })?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
        })
    }

    fn tensors(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).expect("validated in open")
    }

    /// The string metadata of the header.
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }

    /// The names of every tensor in the file.
    pub fn names(&self) -> Vec<String> {
        self.tensors()
            .names()
            .into_iter()
            .map(String::from)
            .collect()
    }

    /// Whether a tensor of this name exists.
    pub fn has(&self, name: &str) -> bool {
        self.tensors().tensor(name).is_ok()
    }

    fn view(&self, name: &str, shape: Option<&[usize]>) -> Result<(Dtype, Vec<usize>, Vec<u8>)> {
        let st = self.tensors();
        let view = st
            .tensor(name)
            .map_err(|_| Error::file(&self.path, format!("has no tensor `{name}`")))?;
        if let Some(shape) = shape
            && view.shape() != shape
        {
            return Err(Error::file(
                &self.path,
                format!(
                    "tensor `{name}` has shape {}, expected {}",
                    shape_text(view.shape()),
                    shape_text(shape)
                ),
            ));
        }
        Ok((view.dtype(), view.shape().to_vec(), view.data().to_vec()))
    }

    /// A float tensor (F32 or F64) as f64, with its shape checked when `shape` is given.
    pub fn floats(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<f64>)> {
        let (dtype, shape, data) = self.view(name, shape)?;
        let values = match dtype {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            other => {
                return Err(Error::file(
                    &self.path,
                    format!("tensor `{name}` has dtype {other:?}, expected F32 or F64"),
                ));
            }
        };
        Ok((shape, values))
    }

    /// An F32 tensor, exactly, with its shape checked.
    pub fn f32s(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let (dtype, _, data) = self.view(name, Some(shape))?;
        if dtype != Dtype::F32 {
            return Err(Error::file(
                &self.path,
                format!("tensor `{name}` has dtype {dtype:?}, expected F32"),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(&data))
    }

    /// A U64 tensor of any shape, flattened.
    pub fn u64s(&self, name: &str) -> Result<Vec<u64>> {
        let (dtype, _, data) = self.view(name, None)?;
        if dtype != Dtype::U64 {
            return Err(Error::file(
                &self.path,
                format!("tensor `{name}` has dtype {dtype:?}, expected U64"),
            ));
        }
        Ok(bytemuck::pod_collect_to_vec(&data))
    }

    /// An integer tensor (I32, I64, U32 or U8) as u32, with its shape checked when given.
    pub fn ids(&self, name: &str, shape: Option<&[usize]>) -> Result<(Vec<usize>, Vec<u32>)> {
        let (dtype, shape, data) = self.view(name, shape)?;
        let bad = || {
            Error::file(
                &self.path,
                format!("tensor `{name}` holds a negative or too large id"),
            )
        };
        let values: Vec<u32> = match dtype {
            Dtype::I32 => data
                .chunks_exact(4)
                .map(|c| {
                    u32::try_from(i32::from_le_bytes(c.try_into().unwrap())).map_err(|_| bad())
                })
                .collect::<Result<_>>()?,
            Dtype::I64 => data
                .chunks_exact(8)
                .map(|c| {
                    u32::try_from(i64::from_le_bytes(c.try_into().unwrap())).map_err(|_| bad())
                })
                .collect::<Result<_>>()?,
            Dtype::U32 => bytemuck::pod_collect_to_vec(&data),
            Dtype::U8 => data.iter().map(|&v| v as u32).collect(),
            other => {
                return Err(Error::file(
                    &self.path,
                    format!("tensor `{name}` has dtype {other:?}, expected an integer type"),
                ));
            }
        };
        Ok((shape, values))
    }
}

/// A shape as the docs write it: `(3, 4)`, `(P)`, `()` for a scalar.
pub fn shape_text(shape: &[usize]) -> String {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", dims.join(", "))
}

/// One tensor to write.
pub struct OwnedTensor {
    /// Its name.
    pub name: String,
    /// Its dtype (F32, F64, U32, I32 or U64).
    pub dtype: Dtype,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes.
    pub bytes: Vec<u8>,
}

impl OwnedTensor {
    /// An F32 tensor.
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, data: &[f32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F32,
            shape,
            bytes: bytemuck::cast_slice(data).to_vec(),
        }
    }

    /// An F64 tensor.
    pub fn f64(name: impl Into<String>, shape: Vec<usize>, data: &[f64]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::F64,
            shape,
            bytes: bytemuck::cast_slice(data).to_vec(),
        }
    }

    /// A U32 tensor.
    pub fn u32(name: impl Into<String>, shape: Vec<usize>, data: &[u32]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::U32,
            shape,
            bytes: bytemuck::cast_slice(data).to_vec(),
        }
    }

    /// A U64 tensor.
    pub fn u64(name: impl Into<String>, shape: Vec<usize>, data: &[u64]) -> Self {
        Self {
            name: name.into(),
            dtype: Dtype::U64,
            shape,
            bytes: bytemuck::cast_slice(data).to_vec(),
        }
    }
}

/// Writes a safetensors file atomically: to a temporary file beside `path`, flushed to disk,
/// then renamed over `path`. A crash at any point leaves either the old file or the new one.
pub fn write_atomic(
    path: &Path,
    tensors: &[OwnedTensor],
    metadata: HashMap<String, String>,
) -> Result<()> {
    write_bytes_atomic(path, &serialize(path, tensors, metadata)?)
}

/// The bytes of a safetensors file; `path` names it in errors.
pub fn serialize(
    path: &Path,
    tensors: &[OwnedTensor],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            TensorView::new(t.dtype, t.shape.clone(), &t.bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::file(path, format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<_>>()?;
    safetensors::serialize(views, Some(metadata)).map_err(|e| Error::file(path, e.to_string()))
}

/// Writes bytes to `path` atomically (temporary file in the same directory, fsync, rename).
pub fn write_bytes_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::file(&dir, format!("cannot create directory: {e}")))?;
    let tmp = crate::owned::temporary_for(&dir.join(path.file_name().unwrap_or_default()));
    write_through(&tmp, path, bytes)
}

/// Writes bytes to the new file `tmp`, flushes it to disk and renames it over `path`. A file
/// already at `tmp` is not unroll's to replace: the write is refused and that file kept.
pub fn write_through(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let f = match std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(tmp)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::file(
                tmp,
                format!(
                    "exists: unroll writes {} through a temporary file of this name, and does not \
                     replace a file it did not make\n  hint: remove it if it is a leftover of an \
                     interrupted unroll, or write elsewhere",
                    path.display()
                ),
            ));
        }
        Err(e) => return Err(Error::file(path, format!("cannot write: {e}"))),
    };
    // The file is closed (the closure owns it) before it is renamed.
    let written = move || -> std::io::Result<()> {
        let mut f = f;
        f.write_all(bytes)?;
        f.sync_all()
    };
    let result = (|| -> std::io::Result<()> {
        written()?;
        std::fs::rename(tmp, path)?;
        // Make the rename itself durable.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(tmp);
        Error::file(path, format!("cannot write: {e}"))
    })
}
