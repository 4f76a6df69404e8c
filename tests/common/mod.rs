//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use tch::Tensor;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The venv's Python (tools/env.sh exports DASGIL_VENV). Tests that compare with PyTorch need it.
pub fn python() -> PathBuf {
    let p = dasgil::python::interpreter();
    assert!(
        Command::new(&p).arg("-c").arg("import torch, safetensors").status().map(|s| s.success()).unwrap_or(false),
        "the Python interpreter {} lacks torch/safetensors: run tools/setup.sh and source tools/env.sh",
        p.display()
    );
    p
}

/// Runs tools/python/dasgil_torch.py with `args`; panics with its stderr on failure.
pub fn torch_peer(args: &[&str]) -> String {
    python_tool("dasgil_torch.py", args)
}

/// Runs tools/python/SCRIPT with `args` in the project's Python; returns its stdout, panics
/// with its stderr on failure.
pub fn python_tool(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(root().join("tools/python").join(script))
        .args(args)
        .output_limited()
        .unwrap_or_else(|e| panic!("run {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `dasgil-tools synth cmu` into `root`: a small Extended CMU-Seasons slice 3 of `places`
/// places, 128x96, snow and overcast queries.
pub fn small_cmu(root: &Path, places: &str) {
    small_cmu_with(root, places, &[]);
}

/// [`small_cmu`] with more `synth cmu` options (`--lens cmu`, ...).
pub fn small_cmu_with(root: &Path, places: &str, more: &[&str]) {
    let mut args = vec![
        "synth",
        "cmu",
        "--out",
        path_str(root),
        "--slice",
        "3",
        "--places",
        places,
        "--width",
        "128",
        "--height",
        "96",
        "--conditions",
        "snow,overcast",
    ];
    args.extend_from_slice(more);
    run_tools_ok(&args);
}

/// Reads a safetensors file into name -> tensor.
pub fn read_tensors(path: &Path) -> BTreeMap<String, Tensor> {
    dasgil::tensor_io::read(path)
        .expect("read tensors")
        .tensors
        .into_iter()
        .map(|(k, v)| (k, v.tensor))
        .collect()
}

/// max |a - b| / max |b|: the error relative to the reference tensor's scale.
pub fn max_rel_err(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "shapes differ");
    let a = a.to_kind(tch::Kind::Double);
    let b = b.to_kind(tch::Kind::Double);
    let diff = (&a - &b).abs().max().double_value(&[]);
    let scale = b.abs().max().double_value(&[]).max(1e-12);
    diff / scale
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// How long a test lets one command run before it fails the test: far above any command's
/// time in the suite on a loaded 2-core machine, so only a hang reaches it.
pub const COMMAND_LIMIT: std::time::Duration = std::time::Duration::from_secs(900);

/// `Command::output` with a time limit: a command that hangs is killed and the test fails,
/// naming it and showing what it printed, instead of the suite hanging.
pub trait OutputWithin {
    /// Within [`COMMAND_LIMIT`].
    fn output_limited(&mut self) -> std::io::Result<std::process::Output> {
        self.output_within(COMMAND_LIMIT)
    }
    fn output_within(
        &mut self,
        limit: std::time::Duration,
    ) -> std::io::Result<std::process::Output>;
}

impl OutputWithin for Command {
    fn output_within(
        &mut self,
        limit: std::time::Duration,
    ) -> std::io::Result<std::process::Output> {
        use std::os::unix::process::CommandExt;
        // Its own process group: a hang is killed with everything it started (a Python
        // grandchild holding the pipes open would keep the readers waiting).
        let mut child = self
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .spawn()?;
        let what = format!("{self:?}");
        Ok(wait_output_within(&mut child, limit, &what))
    }
}

/// Waits at most `limit` for a spawned `child` whose stdout and stderr are piped (read while it
/// runs, so a full pipe never blocks it) and returns its output. A child still running then is
/// killed, with its process group when it leads one, and the test fails naming `what` and
/// showing what it printed.
pub fn wait_output_within(
    child: &mut std::process::Child,
    limit: std::time::Duration,
    what: &str,
) -> std::process::Output {
    use std::io::Read;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let start = std::time::Instant::now();
    let status = loop {
        let waited = child.try_wait();
        if let Ok(Some(status)) = waited {
            break status;
        }
        if waited.is_err() || start.elapsed() > limit {
            // SAFETY: signals to the child and to the process group it leads (if it leads one;
            // otherwise no such group exists and the call does nothing).
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.kill();
            let _ = child.wait();
            let (o, e) = (
                out.join().unwrap_or_default(),
                err.join().unwrap_or_default(),
            );
            panic!(
                "{what} did not finish within {} s (killed); it printed:\n{}\n{}",
                limit.as_secs(),
                String::from_utf8_lossy(&o),
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Runs `dasgil-tools` with `args`; panics with its output unless it succeeds.
pub fn run_tools_ok(args: &[&str]) -> String {
    run_tools_ok_in(None, args)
}

/// `dasgil-tools ARGS` (with `DASGIL_DATA` set to `data` when given), its output.
pub fn run_tools_in(data: Option<&Path>, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"));
    cmd.args(args).env("RUST_LOG", "warn");
    if let Some(d) = data {
        cmd.env("DASGIL_DATA", d);
    }
    cmd.output_limited().expect("run dasgil-tools")
}

/// As [`run_tools_ok`], with `DASGIL_DATA` set to `data` when given.
pub fn run_tools_ok_in(data: Option<&Path>, args: &[&str]) -> String {
    let out = run_tools_in(data, args);
    assert!(
        out.status.success(),
        "{args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-traversal synthetic RobotCar data set (128x96, `frames` frames) in `dir/robotcar`;
/// returns the traversal folder.
pub fn synth_robotcar(dir: &Path, frames: usize) -> PathBuf {
    let rc = dir.join("robotcar");
    let frames = frames.to_string();
    run_tools_ok(&[
        "synth",
        "robotcar",
        "--out",
        path_str(&rc),
        "--traversals",
        "1",
        "--frames",
        &frames,
        "--width",
        "128",
        "--height",
        "96",
    ]);
    rc.join(dasgil::synth::robotcar::traversal_name(0))
}

/// The build-map arguments of a traversal's stereo/centre map with `ckpt`, written to `map`.
pub fn robotcar_map_args<'a>(trav: &'a Path, ckpt: &'a Path, map: &'a Path) -> Vec<&'a str> {
    vec![
        "build-map",
        "--format",
        "robotcar",
        "--root",
        path_str(trav),
        "--cameras",
        "stereo/centre",
        "--checkpoint",
        path_str(ckpt),
        "--device",
        "cpu",
        "--out",
        path_str(map),
    ]
}

/// A freshly initialised 256x256 generator checkpoint (trained with CD: descriptor e5).
pub fn checkpoint(path: &Path, seed: i64) {
    use dasgil::model::{
        checkpoint, CheckpointMeta, Generator, ModelConfig, NetworkRole, WeightInit,
    };
    tch::manual_seed(seed);
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let cfg = ModelConfig::paper().with_input_size(256, 256).unwrap();
    Generator::new(&vs.root(), cfg, WeightInit::Reference).unwrap();
    checkpoint::save(
        &vs,
        &CheckpointMeta {
            network: NetworkRole::Generator,
            config: cfg,
            discriminator: Some(dasgil::model::DiscriminatorKind::Cascade),
            epoch: None,
            step: None,
            source: Some("test".into()),
            descriptor_layers: None,
            metric: None,
            photometric: None,
        },
        path,
    )
    .unwrap();
}

/// Sends SIGINT (Ctrl-C) to `child`, a dasgil-tools run with stderr piped, and waits for it.
/// None when it had finished, successfully, before the signal arrived (a fast machine);
/// otherwise checks that it ended by the signal, as a program without a handler does (a
/// shell's `$?`: 130), saying `COMMAND: interrupted (Ctrl-C)`, and returns what it said.
pub fn interrupt(child: std::process::Child, command: &str) -> Option<String> {
    // SAFETY: a signal to the child the caller spawned.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) },
        0
    );
    let done = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&done.stderr).into_owned();
    if done.status.success() {
        return None;
    }
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&done.status),
        Some(libc::SIGINT),
        "{said}"
    );
    assert!(
        said.contains(&format!("{command}: interrupted (Ctrl-C)")),
        "{said}"
    );
    Some(said)
}
