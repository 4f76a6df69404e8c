//! The networks against the reference: parameter names and shapes equal the authors'
//! state_dict key lists, and the same weights give the same outputs as a PyTorch network built
//! from the spec (tools/python/dasgil_torch.py) in the venv's PyTorch.

mod common;

use std::collections::BTreeMap;

use common::{max_rel_err, path_str, read_tensors, root, torch_peer};
use dasgil::model::checkpoint::{self, CheckpointMeta, NetworkRole};
use dasgil::model::{Discriminator, DiscriminatorKind, Generator, ModelConfig, WeightInit};
use tch::{nn, Device, Kind, Tensor};

/// name -> "[shape] dtype" from a reference key list (comment lines skipped).
fn reference_keys(file: &str, section: Option<&str>) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(root().join("tests/fixtures/reference").join(file)).unwrap();
    let mut out = BTreeMap::new();
    let mut in_section = section.is_none();
    for line in text.lines() {
        if let Some(title) = line.strip_prefix("# ") {
            if let Some(s) = section {
                in_section = title.starts_with(s);
            }
            continue;
        }
        if line.trim().is_empty() || !in_section {
            continue;
        }
        let (name, rest) = line.split_once(' ').unwrap();
        out.insert(name.to_string(), rest.trim().to_string());
    }
    out
}

fn describe(vs: &nn::VarStore) -> BTreeMap<String, String> {
    vs.variables()
        .into_iter()
        .map(|(k, t)| {
            let kind = match t.kind() {
                Kind::Float => "float32",
                Kind::Int64 => "int64",
                other => panic!("unexpected kind {other:?}"),
            };
            (k, format!("{:?} {kind}", t.size()))
        })
        .collect()
}

fn float_values(vs: &nn::VarStore) -> i64 {
    vs.variables()
        .values()
        .filter(|t| t.kind() == Kind::Float)
        .map(|t| t.numel() as i64)
        .sum()
}

#[test]
fn generator_has_the_160_reference_keys_and_shapes() {
    let vs = nn::VarStore::new(Device::Cpu);
    Generator::new(&vs.root(), ModelConfig::paper(), WeightInit::Reference).unwrap();
    let expected = reference_keys("generator-state-dict-keys.txt", None);
    assert_eq!(expected.len(), 160);
    assert_eq!(describe(&vs), expected);
}

#[test]
fn discriminators_have_the_reference_keys_and_shapes() {
    for (kind, section, values) in [
        (
            DiscriminatorKind::Flatten,
            "FlattenDiscriminator",
            68_330_691,
        ),
        (
            DiscriminatorKind::Cascade,
            "CascadeDiscriminator",
            5_636_673,
        ),
    ] {
        let vs = nn::VarStore::new(Device::Cpu);
        Discriminator::new(&vs.root(), &ModelConfig::paper(), kind).unwrap();
        assert_eq!(
            describe(&vs),
            reference_keys("discriminator-state-dict-keys.txt", Some(section)),
            "{kind:?}"
        );
        assert_eq!(
            float_values(&vs),
            values,
            "{kind:?}: float value count in the reference list"
        );
    }
}

/// Random but non-trivial BatchNorm parameters and statistics, so eval mode is not identity.
fn randomize_bn(vs: &nn::VarStore) {
    tch::manual_seed(7);
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if !name.contains("_bn") {
                continue;
            }
            let shape = t.size();
            let new = if name.ends_with("running_var") || name.ends_with(".weight") {
                Tensor::rand(&shape, (Kind::Float, Device::Cpu)) + 0.5
            } else if name.ends_with("running_mean") || name.ends_with(".bias") {
                Tensor::randn(&shape, (Kind::Float, Device::Cpu)) * 0.1
            } else {
                continue;
            };
            t.copy_(&new);
        }
    });
}

fn save_checkpoint(vs: &nn::VarStore, cfg: ModelConfig, role: NetworkRole, path: &std::path::Path) {
    let meta = CheckpointMeta {
        network: role,
        config: cfg,
        discriminator: None,
        epoch: None,
        step: None,
        source: None,
        descriptor_layers: None,
        metric: None,
        photometric: None,
    };
    checkpoint::save(vs, &meta, path).unwrap();
}

/// Generator outputs, eval and train mode, at the paper's input size (batch 2), and the BN
/// running statistics after one training-mode pass.
#[test]
fn generator_matches_pytorch_on_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::paper();
    let vs = nn::VarStore::new(Device::Cpu);
    tch::manual_seed(1);
    let gen = Generator::new(&vs.root(), cfg, WeightInit::Reference).unwrap();
    randomize_bn(&vs);
    let weights = dir.path().join("gen.safetensors");
    save_checkpoint(&vs, cfg, NetworkRole::Generator, &weights);
    let input = Tensor::rand([2, 3, 256, 1024], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    let input_file = dir.path().join("input.safetensors");
    dasgil::tensor_io::write(
        &input_file,
        &[("input".to_string(), input.shallow_clone())],
        &Default::default(),
    )
    .unwrap();

    for train in [false, true] {
        let out_file = dir.path().join(format!("torch_{train}.safetensors"));
        let mut args = vec![
            "forward",
            "--weights",
            path_str(&weights),
            "--input",
            path_str(&input_file),
            "--output",
            path_str(&out_file),
        ];
        if train {
            args.push("--train");
        }
        torch_peer(&args);
        let theirs = read_tensors(&out_file);
        let ours = tch::no_grad(|| gen.forward_t(&input, train))
            .unwrap()
            .into_named();
        assert_eq!(ours.len(), 13);
        for (name, t) in &ours {
            let err = max_rel_err(t, &theirs[name]);
            assert!(
                err < 1e-4,
                "train={train} {name}: max relative error {err:e}"
            );
        }
        if train {
            let vars = vs.variables();
            let mut checked = 0;
            for (name, t) in theirs
                .iter()
                .filter_map(|(k, v)| k.strip_prefix("state.").map(|n| (n, v)))
            {
                let mine = &vars[name];
                if name.ends_with("num_batches_tracked") {
                    assert_eq!(mine.int64_value(&[]), t.int64_value(&[]), "{name}");
                } else {
                    let err = max_rel_err(mine, t);
                    assert!(
                        err < 1e-4,
                        "{name} after one train pass: max relative error {err:e}"
                    );
                }
                checked += 1;
            }
            assert_eq!(
                checked,
                20 * 3,
                "20 BatchNorm layers (6 encoder, 7 + 7 decoder) x (mean, var, count)"
            );
        }
    }
}

/// Both discriminators on the same features, at the paper size (FD includes its 1,004,800-wide
/// BatchNorm1d; train mode uses batch statistics).
#[test]
fn discriminators_match_pytorch_on_the_same_weights() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::paper();
    tch::manual_seed(3);
    let features: Vec<(String, Tensor)> = (1..=8)
        .map(|l| {
            let [c, h, w] = cfg.feature_shape(l);
            (
                format!("e{l}"),
                Tensor::randn([2, c, h, w], (Kind::Float, Device::Cpu)),
            )
        })
        .collect();
    let feat_file = dir.path().join("features.safetensors");
    dasgil::tensor_io::write(&feat_file, &features, &Default::default()).unwrap();
    let feats: Vec<Tensor> = features.iter().map(|(_, t)| t.shallow_clone()).collect();

    for kind in [DiscriminatorKind::Flatten, DiscriminatorKind::Cascade] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = Discriminator::new(&vs.root(), &cfg, kind).unwrap();
        // Non-trivial BN statistics for the FD's eval mode.
        tch::no_grad(|| {
            for (name, mut t) in vs.variables() {
                if name == "bn.running_var" {
                    t.copy_(&(Tensor::rand(t.size(), (Kind::Float, Device::Cpu)) + 0.5));
                }
            }
        });
        let weights = dir
            .path()
            .join(format!("{}.safetensors", kind.short_name()));
        save_checkpoint(&vs, cfg, NetworkRole::Discriminator, &weights);
        for train in [false, true] {
            let out_file = dir.path().join("score.safetensors");
            let mut args = vec![
                "discriminator",
                "--kind",
                kind.short_name(),
                "--weights",
                path_str(&weights),
                "--features",
                path_str(&feat_file),
                "--output",
                path_str(&out_file),
            ];
            if train {
                args.push("--train");
            }
            torch_peer(&args);
            let theirs = &read_tensors(&out_file)["score"];
            let ours = tch::no_grad(|| net.forward_t(&feats, train)).unwrap();
            let err = max_rel_err(&ours, theirs);
            assert!(
                err < 1e-4,
                "{kind:?} train={train}: max relative error {err:e}"
            );
        }
    }
}
