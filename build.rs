//! Link-time quirks of the ROS 2 PyPI wheels (see ../shared/notes/toolchain.md, quirk 3).
//!
//! `librcl` from the wheels pulls in `*__rosidl_generator_py.so`, which need libpython's symbols.
//! tools/env.sh exports `DASGIL_LIBPYTHON` (the venv interpreter's libpython); when it is set and
//! the `ros` feature is on, every binary and test of this package links it with `--no-as-needed`
//! (nothing references it directly, so the default `--as-needed` would drop it) and gets an
//! rpath to its folder. On a real ROS 2 install the variable is unset and nothing changes.
//! libtorch's folder is added to the rpath too, so installed binaries find it without
//! LD_LIBRARY_PATH.

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-env-changed=DASGIL_LIBPYTHON");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");

    if let Some(torch_lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        let torch_lib = Path::new(&torch_lib);
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", torch_lib.display());
        println!(
            "cargo:rustc-env=DASGIL_LIBTORCH_VERSION={}",
            libtorch_version(torch_lib).unwrap_or_else(|| "unknown".to_string())
        );
    }

    if std::env::var_os("CARGO_FEATURE_ROS").is_some() {
        if let Some(libpython) = std::env::var_os("DASGIL_LIBPYTHON") {
            let libpython = Path::new(&libpython);
            if !libpython.is_file() {
                panic!(
                    "DASGIL_LIBPYTHON={} is not a file; source tools/env.sh again or unset it",
                    libpython.display()
                );
            }
            println!(
                "cargo:rustc-link-arg=-Wl,--no-as-needed,{},--as-needed",
                libpython.display()
            );
            if let Some(dir) = libpython.parent() {
                println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
            }
        }
    }
}

/// The version of the libtorch being linked: `torch/version.py` next to a PyTorch install's
/// `lib/`, or the `build-version` file of a standalone libtorch archive.
fn libtorch_version(torch_lib: &Path) -> Option<String> {
    let root = torch_lib.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("__version__") {
                let v = rest.trim_start_matches([' ', '=']).trim();
                return Some(v.trim_matches(['\'', '"']).to_string());
            }
        }
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
}
