//! Retrieval descriptors: the BN-folded encoder gives the generator's own (eval-mode) features,
//! with the paper's layers and lengths, and only runs the layers it needs.

use dasgil::model::descriptor::{describe_unfolded, DescriptorLayer};
use dasgil::model::{
    DescriptorEncoder, DescriptorSpec, DiscriminatorKind, Generator, ModelConfig, WeightInit,
};
use tch::{nn, Device, Kind, Tensor};

/// A generator whose every folding term matters: running variances near 0 (1e-4 to 1.1e-3, so
/// BN's eps of 1e-5 changes the scale by up to 5%), BN weights away from 1, non-zero running
/// means, BN biases and conv biases (the reference initialises conv biases to 0, which would hide
/// a bias left unscaled by the fold).
fn generator_with_random_bn() -> (nn::VarStore, Generator) {
    tch::manual_seed(21);
    let vs = nn::VarStore::new(Device::Cpu);
    let gen = Generator::new(&vs.root(), ModelConfig::paper(), WeightInit::Reference).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
            if name.contains("_bn.") && !name.ends_with("num_batches_tracked") {
                t.copy_(
                    &(if name.ends_with("running_var") {
                        r * 1e-3 + 1e-4
                    } else if name.ends_with("running_mean") || name.ends_with("bias") {
                        r * 0.2 - 0.1
                    } else {
                        r + 0.5
                    }),
                );
            } else if name.ends_with(".bias") {
                t.copy_(&(r * 0.2 - 0.1));
            }
        }
    });
    (vs, gen)
}

#[test]
fn folded_descriptor_equals_the_generators_eval_features() {
    let (_vs, gen) = generator_with_random_bn();
    let xs = Tensor::rand([2, 3, 256, 1024], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
    for (kind, len) in [
        (DiscriminatorKind::Flatten, 20_480),
        (DiscriminatorKind::Cascade, 16_384),
    ] {
        let spec = DescriptorSpec::paper(kind);
        assert_eq!(spec.len(gen.config()), len);
        let folded = DescriptorEncoder::new(&gen, spec.clone())
            .unwrap()
            .describe(&xs)
            .unwrap();
        let plain = describe_unfolded(&gen, &spec, &xs).unwrap();
        assert_eq!(folded.size(), [2, len]);
        let err =
            (&folded - &plain).abs().max().double_value(&[]) / plain.abs().max().double_value(&[]);
        assert!(
            err < 1e-5,
            "{kind:?}: folded vs unfolded max relative error {err:e}"
        );
    }
    // The e5 part of the FD descriptor is exactly e5 of the full generator.
    let full = tch::no_grad(|| gen.forward_t(&xs, false)).unwrap();
    let desc = DescriptorEncoder::new(&gen, DescriptorSpec::paper(DiscriminatorKind::Flatten))
        .unwrap()
        .describe(&xs)
        .unwrap();
    let e5 = full.features[4].flatten(1, -1);
    let err = (desc.narrow(1, 0, 16_384) - &e5)
        .abs()
        .max()
        .double_value(&[])
        / e5.abs().max().double_value(&[]);
    assert!(err < 1e-5, "e5 {err:e}");
}

#[test]
fn layer_weights_scale_their_part_and_bad_requests_are_errors() {
    let (_vs, gen) = generator_with_random_bn();
    let xs = Tensor::rand([1, 3, 256, 1024], (Kind::Float, Device::Cpu));
    let one = DescriptorSpec {
        layers: vec![DescriptorLayer {
            layer: 6,
            weight: 1.0,
        }],
    };
    let three = DescriptorSpec {
        layers: vec![DescriptorLayer {
            layer: 6,
            weight: 3.0,
        }],
    };
    let a = DescriptorEncoder::new(&gen, one)
        .unwrap()
        .describe(&xs)
        .unwrap();
    let b = DescriptorEncoder::new(&gen, three)
        .unwrap()
        .describe(&xs)
        .unwrap();
    assert!((a * 3.0 - b).abs().max().double_value(&[]) < 1e-4);

    let bad = DescriptorSpec {
        layers: vec![DescriptorLayer {
            layer: 9,
            weight: 1.0,
        }],
    };
    let e = DescriptorEncoder::new(&gen, bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        "encoder layer 9 does not exist: layers are numbered 1 to 8"
    );
    let enc =
        DescriptorEncoder::new(&gen, DescriptorSpec::paper(DiscriminatorKind::Cascade)).unwrap();
    let e = enc
        .describe(&Tensor::zeros(
            [1, 3, 375, 1242],
            (Kind::Float, Device::Cpu),
        ))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "network input has shape [1, 3, 375, 1242], expected [B, 3, 256, 1024]"
    );
}

/// The L1 distance of two map descriptors made of two layers (e5 + e6, the FD choice) equals the
/// reference's: the sum over layers of the mean absolute difference of that layer's features.
/// One global 1/D instead of 1/len per layer would give another number (e5 has 4x e6's values).
#[test]
fn a_two_layer_descriptor_distance_is_the_sum_of_per_layer_mean_differences() {
    use dasgil::extract::MapEncoder;
    let spec = DescriptorSpec::paper(DiscriminatorKind::Flatten);
    assert_eq!(
        spec.layers.iter().map(|l| l.layer).collect::<Vec<_>>(),
        [5, 6]
    );
    // One generator (random BN statistics and biases, so every term matters), saved and loaded
    // by the map encoder: the same weights on both sides whatever other threads draw.
    let (vs, gen) = generator_with_random_bn();
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("gen.safetensors");
    dasgil::model::checkpoint::save(
        &vs,
        &dasgil::model::CheckpointMeta {
            network: dasgil::model::NetworkRole::Generator,
            config: ModelConfig::paper(),
            discriminator: Some(DiscriminatorKind::Flatten),
            epoch: None,
            step: None,
            source: Some("test".into()),
            descriptor_layers: None,
            metric: None,
            photometric: None,
        },
        &ckpt,
    )
    .unwrap();
    let enc = MapEncoder::from_checkpoint(&ckpt, Device::Cpu, Some(spec)).unwrap();
    let img = |k: u32| {
        image::RgbImage::from_fn(1024, 256, |x, y| {
            image::Rgb([
                ((x * (3 + k)) % 256) as u8,
                ((y * 5 + k * 40) % 256) as u8,
                ((x + y * k) % 251) as u8,
            ])
        })
    };
    let (pa, pb) = (enc.prepare(&img(1)).unwrap(), enc.prepare(&img(2)).unwrap());
    let desc = enc.encode(&[pa.clone(), pb.clone()]).unwrap();
    let d = desc.len() / 2;
    let ours = dasgil::retrieval::distance(dasgil::retrieval::Metric::L1, &desc[..d], &desc[d..]);
    // The reference: the generator's own eval-mode features.
    let batch = |p: &[f32]| Tensor::from_slice(p).view([1, 3, 256, 1024]);
    let fa = tch::no_grad(|| gen.encode_t(&batch(&pa), 6, false)).unwrap();
    let fb = tch::no_grad(|| gen.encode_t(&batch(&pb), 6, false)).unwrap();
    let per_layer: Vec<f64> = [5usize, 6]
        .iter()
        .map(|&l| {
            (&fa[l - 1] - &fb[l - 1])
                .abs()
                .mean(Kind::Double)
                .double_value(&[])
        })
        .collect();
    let reference: f64 = per_layer.iter().sum();
    assert!(
        ((ours as f64) - reference).abs() <= 1e-4 * reference,
        "L1 {ours} vs reference sum of per-layer means {reference} (e5 {}, e6 {})",
        per_layer[0],
        per_layer[1]
    );
}
