//! `dasgil-tools import-checkpoint` and `embed` end to end, as a user runs them: the authors'
//! .pth files (made here by a PyTorch network built from the spec) convert, load strictly, and
//! embed an image to the same tensors PyTorch computes from the same .pth.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{max_rel_err, path_str, read_tensors, torch_peer, OutputWithin};
use image::RgbImage;

fn tools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .output_limited()
        .expect("run dasgil-tools")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "dasgil-tools failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn err(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "dasgil-tools should have failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn metadata(path: &Path) -> std::collections::HashMap<String, String> {
    dasgil::tensor_io::read(path).unwrap().metadata
}

#[test]
fn imported_generator_embeds_like_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("5_net_gen.pth");
    torch_peer(&[
        "make-pth",
        "--network",
        "generator",
        "--out",
        path_str(&pth),
        "--seed",
        "5",
    ]);
    let ckpt = dir.path().join("gen.safetensors");
    let said = ok(&tools(&[
        "import-checkpoint",
        path_str(&pth),
        path_str(&ckpt),
        "--trained-with",
        "CD",
    ]));
    assert!(
        said.contains("imported generator")
            && said.contains("160 tensors")
            && said.contains("epoch 5"),
        "{said}"
    );
    let meta = metadata(&ckpt);
    assert_eq!(meta["dasgil.network"], "generator");
    assert_eq!(meta["dasgil.epoch"], "5");
    assert_eq!(meta["dasgil.discriminator"], "CD");
    assert_eq!(meta["dasgil.source"], "imported from 5_net_gen.pth");

    // A 1024x256 image with structure in every channel (no resize needed: exact comparison).
    let img = RgbImage::from_fn(1024, 256, |x, y| {
        image::Rgb([(x % 256) as u8, (y * 3 % 256) as u8, ((x * y) % 251) as u8])
    });
    let png = dir.path().join("frame.png");
    img.save(&png).unwrap();
    let out = dir.path().join("embedding.safetensors");
    let said = ok(&tools(&[
        "embed",
        "--checkpoint",
        path_str(&ckpt),
        "--image",
        path_str(&png),
        "--output",
        path_str(&out),
        "--device",
        "cpu",
    ]));
    assert!(said.contains("13 tensors"), "{said}");

    let raw = tch::Tensor::from_slice(img.as_raw()).view([256, 1024, 3]);
    let raw_file = dir.path().join("raw.safetensors");
    dasgil::tensor_io::write(
        &raw_file,
        &[("image_u8".to_string(), raw)],
        &Default::default(),
    )
    .unwrap();
    let theirs_file = dir.path().join("torch.safetensors");
    torch_peer(&[
        "forward",
        "--weights",
        path_str(&pth),
        "--input",
        path_str(&raw_file),
        "--output",
        path_str(&theirs_file),
    ]);
    let ours = read_tensors(&out);
    let theirs = read_tensors(&theirs_file);
    let mut names: Vec<&String> = ours.keys().collect();
    names.sort();
    let expected = [
        "depth_0", "depth_1", "depth_2", "depth_3", "e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8",
        "seg",
    ];
    assert_eq!(names, expected);
    assert_eq!(ours["seg"].size(), [1, 15, 256, 1024]);
    assert_eq!(ours["depth_0"].size(), [1, 1, 32, 128]);
    assert_eq!(ours["e5"].size(), [1, 64, 8, 32]);
    for name in expected {
        let e = max_rel_err(&ours[name], &theirs[name]);
        assert!(e < 1e-4, "{name}: max relative error {e:e}");
    }
}

#[test]
fn imported_discriminators_keep_their_type_and_shared_prelu() {
    let dir = tempfile::tempdir().unwrap();
    for (kind, tensors) in [("CD", 67), ("FD", 13)] {
        let pth = dir.path().join("40_net_dis.pth");
        torch_peer(&["make-pth", "--network", kind, "--out", path_str(&pth)]);
        let ckpt = dir.path().join(format!("{kind}.safetensors"));
        let said = ok(&tools(&[
            "import-checkpoint",
            path_str(&pth),
            path_str(&ckpt),
        ]));
        assert!(
            said.contains(&format!("{kind} discriminator"))
                && said.contains(&format!("{tensors} tensors")),
            "{said}"
        );
        let meta = metadata(&ckpt);
        assert_eq!(
            (
                meta["dasgil.network"].as_str(),
                meta["dasgil.discriminator"].as_str()
            ),
            ("discriminator", kind)
        );
        let loaded =
            dasgil::model::checkpoint::load_discriminator(&ckpt, tch::Device::Cpu, None).unwrap();
        if kind == "FD" {
            // One PReLU module appears under two keys; both carry the same value.
            let vars = loaded.vs.variables();
            assert_eq!(
                vars["model.1.weight"].double_value(&[0]),
                vars["model.3.weight"].double_value(&[0])
            );
        }
    }
}

#[test]
fn bad_inputs_get_errors_that_name_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing.pth");
    let e = err(&tools(&[
        "import-checkpoint",
        path_str(&missing),
        "/tmp/x.safetensors",
    ]));
    assert!(e.contains("nothing.pth: no such file"), "{e}");

    // Pickled code is refused (weights_only), with the file named.
    let evil = dir.path().join("evil.pth");
    let script = format!(
        "import torch, collections\nclass Evil:\n    def __reduce__(self):\n        return (print, ('pwned',))\ntorch.save({{'x': Evil()}}, r'{}')\n",
        evil.display()
    );
    let st = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .output_limited()
        .unwrap()
        .status;
    assert!(st.success());
    let out = tools(&[
        "import-checkpoint",
        path_str(&evil),
        path_str(&dir.path().join("evil.safetensors")),
    ]);
    let e = err(&out);
    assert!(
        e.contains("evil.pth: not a weights-only PyTorch state_dict")
            && e.contains("never runs code"),
        "{e}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("pwned"));

    // A generator file with one tensor missing, one unexpected and one mis-shaped: all listed.
    let pth = dir.path().join("1_net_gen.pth");
    torch_peer(&[
        "make-pth",
        "--network",
        "generator",
        "--out",
        path_str(&pth),
    ]);
    let ckpt = dir.path().join("gen.safetensors");
    ok(&tools(&[
        "import-checkpoint",
        path_str(&pth),
        path_str(&ckpt),
    ]));
    let file = dasgil::tensor_io::read(&ckpt).unwrap();
    let mut tensors: Vec<(String, tch::Tensor)> = file
        .tensors
        .into_iter()
        .map(|(k, v)| (k, v.tensor))
        .collect();
    tensors.retain(|(k, _)| k != "conv3_bn.running_var");
    tensors.push((
        "conv9.weight".into(),
        tch::Tensor::zeros([2], (tch::Kind::Float, tch::Device::Cpu)),
    ));
    for (k, t) in tensors.iter_mut() {
        if k == "deconv5_seg.bias" {
            *t = tch::Tensor::zeros([31], (tch::Kind::Float, tch::Device::Cpu));
        }
    }
    let broken = dir.path().join("broken.safetensors");
    dasgil::tensor_io::write(&broken, &tensors, &file.metadata).unwrap();
    let png = dir.path().join("f.png");
    RgbImage::new(8, 8).save(&png).unwrap();
    let e = err(&tools(&[
        "embed",
        "--checkpoint",
        path_str(&broken),
        "--image",
        path_str(&png),
        "--output",
        "/tmp/never.safetensors",
    ]));
    assert!(
        e.contains("broken.safetensors") && e.contains("3 tensor(s) do not match"),
        "{e}"
    );
    assert!(
        e.contains("conv3_bn.running_var: missing (expected [32] Float, found absent)"),
        "{e}"
    );
    assert!(
        e.contains("conv9.weight: unexpected (expected absent, found [2] Float)"),
        "{e}"
    );
    assert!(
        e.contains(
            "deconv5_seg.bias: wrong shape or dtype (expected [32] Float, found [31] Float)"
        ),
        "{e}"
    );
    assert!(!Path::new("/tmp/never.safetensors").exists());
}

/// A state_dict from a PyTorch before `num_batches_tracked` (no such buffers; `_metadata`
/// version 1) loads in PyTorch strictly, so it imports; the same without the buffers but
/// marked as from a newer PyTorch (version 2) is refused by PyTorch's strict load, and here.
#[test]
fn old_batchnorm_state_dicts_import_exactly_when_pytorch_loads_them() {
    let dir = tempfile::tempdir().unwrap();
    let pth = dir.path().join("gen.pth");
    torch_peer(&[
        "make-pth",
        "--network",
        "generator",
        "--out",
        path_str(&pth),
    ]);
    let (old, newer) = (dir.path().join("old.pth"), dir.path().join("newer.pth"));
    let st = Command::new(common::python())
        .arg("-c")
        .arg(format!(
            "import torch, collections\n\
             sd = torch.load(r'{}', weights_only=True)\n\
             for version, out in ((1, r'{}'), (2, r'{}')):\n\
             \x20   old = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith('num_batches_tracked'))\n\
             \x20   old._metadata = collections.OrderedDict((k[:-len('.running_mean')], {{'version': version}}) for k in sd if k.endswith('.running_mean'))\n\
             \x20   torch.save(old, out)\n",
            path_str(&pth),
            path_str(&old),
            path_str(&newer)
        ))
        .output_limited()
        .unwrap()
        .status;
    assert!(st.success());
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    ok(&tools(&["import-checkpoint", path_str(&pth), path_str(&a)]));
    let said = ok(&tools(&["import-checkpoint", path_str(&old), path_str(&b)]));
    assert!(said.contains("160 tensors"), "{said}");
    // The same weights; the filled-in counters are 0.
    let (ta, tb) = (read_tensors(&a), read_tensors(&b));
    for (name, t) in &ta {
        if name.ends_with("num_batches_tracked") {
            assert_eq!(tb[name].int64_value(&[]), 0, "{name}");
        } else {
            assert!(t.equal(&tb[name]), "{name}");
        }
    }
    let e = err(&tools(&[
        "import-checkpoint",
        path_str(&newer),
        path_str(&dir.path().join("c.safetensors")),
    ]));
    assert!(
        e.contains("20 tensor(s) do not match")
            && e.contains("conv2_bn.num_batches_tracked: missing"),
        "{e}"
    );
}
