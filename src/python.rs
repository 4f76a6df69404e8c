//! Finding the Python interpreter that has PyTorch (for `import-checkpoint` and the PyTorch
//! peers in tests and benchmarks): `DASGIL_PYTHON`, else the project venv (`DASGIL_VENV`, set by
//! tools/env.sh), else `python3` on PATH.

use std::path::PathBuf;

pub fn interpreter() -> PathBuf {
    if let Some(p) = std::env::var_os("DASGIL_PYTHON") {
        return PathBuf::from(p);
    }
    if let Some(venv) = std::env::var_os("DASGIL_VENV") {
        let p = PathBuf::from(venv).join("bin/python");
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from("python3")
}
