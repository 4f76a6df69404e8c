//! Benchmark (not a test): latency of the retrieval descriptor path and of the full generator at
//! 256x1024, batch 1, CPU, against the same architecture in the venv's PyTorch eager mode.
//!
//!     source tools/env.sh && cargo bench --bench descriptor
//!
//! The PyTorch peer (tools/python/dasgil_torch.py bench-server) runs beside this process and the
//! two are timed in alternating blocks, so drifts in machine load (frequent on shared 2-core
//! VMs) hit both alike. Rows per thread count:
//!   descriptor, ours         BN folded into the convs, channels-last, layers 1..6 only
//!   descriptor, ours plain   the generator's own encoder in eval mode, layers 1..6
//!   descriptor, PyTorch      encoder layers 1..6 under no_grad, eval mode
//!   full generator           both decoders, ours and PyTorch
//! Env: DASGIL_BENCH_BLOCKS (default 10), DASGIL_BENCH_REPS (per block, default 30).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use dasgil::model::descriptor::describe_unfolded;
use dasgil::model::{
    DescriptorEncoder, DescriptorSpec, DiscriminatorKind, Generator, ModelConfig, WeightInit,
};
use tch::{nn, Device, Kind, Tensor};

struct Peer {
    stdin: std::process::ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
    child: std::process::Child,
}

impl Peer {
    fn start() -> (Self, String) {
        let python = dasgil::python::interpreter();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/python/dasgil_torch.py");
        let mut child = Command::new(python)
            .args([script, "bench-server", "--layers", "5,6"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the PyTorch peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = BufReader::new(child.stdout.take().expect("peer stdout"));
        let mut peer = Self {
            stdin,
            stdout,
            child,
        };
        let hello = peer.read();
        (
            peer,
            hello["torch_version"].as_str().unwrap_or("?").to_string(),
        )
    }

    fn read(&mut self) -> serde_json::Value {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("peer answer");
        serde_json::from_str(&line).expect("peer JSON")
    }

    fn ask(&mut self, cmd: &str) -> serde_json::Value {
        writeln!(self.stdin, "{cmd}").expect("peer command");
        self.stdin.flush().expect("peer command");
        self.read()
    }

    fn samples(&mut self, job: &str, reps: usize) -> Vec<f64> {
        let v = self.ask(&format!("{job} {reps}"));
        v["samples"]
            .as_array()
            .expect("samples")
            .iter()
            .filter_map(|s| s.as_f64())
            .collect()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

fn time_ms(reps: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let blocks = env_usize("DASGIL_BENCH_BLOCKS", 10);
    let reps = env_usize("DASGIL_BENCH_REPS", 30);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let gen =
        Generator::new(&vs.root(), ModelConfig::paper(), WeightInit::Reference).expect("generator");
    let xs = Tensor::randn([1, 3, 256, 1024], (Kind::Float, Device::Cpu));
    let spec = DescriptorSpec::paper(DiscriminatorKind::Flatten);
    let folded = DescriptorEncoder::new(&gen, spec.clone()).expect("encoder");
    let (mut peer, torch_version) = Peer::start();

    println!(
        "DASGIL at 256x1024, batch 1, CPU; libtorch {} (ours) / PyTorch {torch_version} eager",
        env!("DASGIL_LIBTORCH_VERSION")
    );
    println!(
        "descriptor = FD layers e5+e6 ({} values); {blocks} alternating blocks of {reps} runs",
        spec.len(gen.config())
    );
    for threads in [2, 1] {
        tch::set_num_threads(threads);
        peer.ask(&format!("threads {threads}"));
        let (mut ours, mut plain, mut torch) = (Vec::new(), Vec::new(), Vec::new());
        let (mut ours_full, mut torch_full) = (Vec::new(), Vec::new());
        // Warm-up of both sides.
        time_ms(20, || drop(folded.describe(&xs)));
        peer.samples("descriptor", 20);
        for block in 0..blocks {
            let run_ours = |ours: &mut Vec<f64>, plain: &mut Vec<f64>| {
                ours.extend(time_ms(reps, || {
                    drop(folded.describe(&xs).expect("describe"))
                }));
                plain.extend(time_ms(reps, || {
                    drop(describe_unfolded(&gen, &spec, &xs).expect("describe"))
                }));
            };
            if block % 2 == 0 {
                run_ours(&mut ours, &mut plain);
                torch.extend(peer.samples("descriptor", reps));
            } else {
                torch.extend(peer.samples("descriptor", reps));
                run_ours(&mut ours, &mut plain);
            }
            if block % 3 == 0 {
                ours_full.extend(time_ms(2, || {
                    drop(tch::no_grad(|| gen.forward_t(&xs, false)).expect("forward"))
                }));
                torch_full.extend(peer.samples("full", 2));
            }
        }
        let t = median(torch.clone());
        let tf = median(torch_full.clone());
        println!("\n{threads} thread(s)              median ms   vs PyTorch");
        let row = |name: &str, v: Vec<f64>, base: f64| {
            let m = median(v);
            println!("  {name:<26} {m:>9.3}   {:>6.2}x", m / base);
        };
        row("descriptor, ours", ours, t);
        row("descriptor, ours plain", plain, t);
        row("descriptor, PyTorch", torch, t);
        row("full generator, ours", ours_full, tf);
        row("full generator, PyTorch", torch_full, tf);
    }
}
