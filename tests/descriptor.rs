//! Retrieval descriptors: the BN-folded encoder gives the generator's own (eval-mode) features,
//! with the paper's layers and lengths, and only runs the layers it needs.

use dasgil::model::descriptor::{describe_unfolded, DescriptorLayer};
use dasgil::model::{
    DescriptorEncoder, DescriptorSpec, DiscriminatorKind, Generator, ModelConfig, WeightInit,
};
use tch::{nn, Device, Kind, Tensor};

fn generator_with_random_bn() -> (nn::VarStore, Generator) {
    tch::manual_seed(21);
    let vs = nn::VarStore::new(Device::Cpu);
    let gen = Generator::new(&vs.root(), ModelConfig::paper(), WeightInit::Reference).unwrap();
    tch::no_grad(|| {
        for (name, mut t) in vs.variables() {
            if name.contains("_bn.") && !name.ends_with("num_batches_tracked") {
                let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
                t.copy_(
                    &(if name.ends_with("running_mean") || name.ends_with("bias") {
                        r * 0.2 - 0.1
                    } else {
                        r + 0.5
                    }),
                );
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
