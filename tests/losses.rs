//! The DASGIL losses against hand-computed values and against the same formulas in the venv's
//! PyTorch (tools/python/dasgil_torch.py `losses`, written from the reference's model.py).

mod common;

use common::{path_str, read_tensors, torch_peer};
use dasgil::model::losses::{
    depth_loss, lsgan_discriminator_loss, lsgan_generator_loss, paper_triplet_layers,
    segmentation_loss, triplet_loss, TripletDistance, TripletLayer,
};
use tch::{Device, Kind, Tensor};

fn scalar(t: &Tensor) -> f64 {
    t.double_value(&[])
}

fn close(a: f64, b: f64, what: &str) {
    assert!(
        (a - b).abs() <= 1e-5 * b.abs().max(1.0),
        "{what}: {a} vs {b}"
    );
}

/// Triplet by hand: features whose MSEs are known exactly.
/// A = 0, A+ = 1 everywhere -> dp = 1; B = 2 everywhere -> dn = 4.
/// Layer 3 (m = 1, w = 25): max(0, 1 - 4 / (1 + 1)) = 0 -> 0.
/// Layer 4 (m = 5, w = 2): max(0, 1 - 4 / 6) * 2 = 2/3.
#[test]
fn triplet_matches_hand_values() {
    let f = |v: f64| -> Vec<Tensor> {
        (0..8)
            .map(|_| Tensor::full([1, 2, 3, 3], v, (Kind::Float, Device::Cpu)))
            .collect()
    };
    let (a, p, n) = (f(0.0), f(1.0), f(2.0));
    let layers = [
        TripletLayer {
            layer: 3,
            margin: 1.0,
            weight: 25.0,
            distance: TripletDistance::Mse,
        },
        TripletLayer {
            layer: 4,
            margin: 5.0,
            weight: 2.0,
            distance: TripletDistance::Mse,
        },
    ];
    let t = triplet_loss(&a, &p, &n, &layers).unwrap();
    close(scalar(&t.per_layer[0].0), 1.0, "dp");
    close(scalar(&t.per_layer[0].1), 4.0, "dn");
    close(
        scalar(&t.per_layer[0].2),
        0.0,
        "layer 3 term (clamped at 0)",
    );
    close(scalar(&t.per_layer[1].2), 2.0 / 3.0, "layer 4 term");
    close(scalar(&t.total), 2.0 / 3.0, "total");
    // A layer outside e1..e8 is an error, not a panic.
    assert!(triplet_loss(
        &a,
        &p,
        &n,
        &[TripletLayer {
            layer: 9,
            margin: 1.0,
            weight: 1.0,
            distance: TripletDistance::Mse,
        }]
    )
    .is_err());
}

/// Cosine triplet by hand, a batch of two images with 2 features each (shape [2, 2, 1, 1]):
/// image 0: A = (1, 0), A+ = (1, 0), B = (0, 1) -> 1 - cos: dp 0, dn 1;
/// image 1: A = (0, 2), A+ = (3, 0), B = (0, 5) -> dp 1, dn 0.
/// Means over the batch: dp 0.5, dn 0.5 (over the flattened batch instead: 1 - 1/sqrt(50)
/// and 1 - 10/sqrt(130)). Layer 6 (m 0.25, w 4): max(0, 1 - 0.5 / 0.75) * 4 = 4/3. The
/// distance ignores the features' scale: A+ times 7 gives the same term.
#[test]
fn cosine_triplet_matches_hand_values() {
    let t = |v: [f32; 4]| Tensor::from_slice(&v).reshape([2, 2, 1, 1]);
    let per_layer = |v: [f32; 4]| -> Vec<Tensor> { (0..8).map(|_| t(v)).collect() };
    let a = per_layer([1.0, 0.0, 0.0, 2.0]);
    let n = per_layer([0.0, 1.0, 0.0, 5.0]);
    let spec = [TripletLayer {
        layer: 6,
        margin: 0.25,
        weight: 4.0,
        distance: TripletDistance::Cosine,
    }];
    for scale in [1.0f32, 7.0] {
        let p = per_layer([scale, 0.0, 3.0 * scale, 0.0]);
        let trip = triplet_loss(&a, &p, &n, &spec).unwrap();
        close(scalar(&trip.per_layer[0].0), 0.5, "cosine dp");
        close(scalar(&trip.per_layer[0].1), 0.5, "cosine dn");
        close(scalar(&trip.total), 4.0 / 3.0, "cosine term");
    }
    // The paper's distance on the same features differs (it is not what was computed above).
    let p = per_layer([1.0, 0.0, 3.0, 0.0]);
    let mse = TripletLayer {
        distance: TripletDistance::Mse,
        ..spec[0]
    };
    let trip = triplet_loss(&a, &p, &n, &[mse]).unwrap();
    close(scalar(&trip.per_layer[0].0), 13.0 / 4.0, "mse dp");
}

/// The cosine distance of an all-zero feature map (a dead layer) is 1 with finite gradients:
/// no NaN reaches the weights.
#[test]
fn cosine_triplet_of_zero_features_has_finite_gradients() {
    let a: Vec<Tensor> = (0..8)
        .map(|_| Tensor::zeros([2, 2, 1, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true))
        .collect();
    let p: Vec<Tensor> = (0..8)
        .map(|_| Tensor::from_slice(&[1.0f32, 0.0, 0.0, 2.0]).reshape([2, 2, 1, 1]))
        .collect();
    let n: Vec<Tensor> = (0..8)
        .map(|_| Tensor::from_slice(&[0.0f32, 1.0, 3.0, 0.0]).reshape([2, 2, 1, 1]))
        .collect();
    let spec = [TripletLayer {
        layer: 6,
        margin: 0.1,
        weight: 1.0,
        distance: TripletDistance::Cosine,
    }];
    let trip = triplet_loss(&a, &p, &n, &spec).unwrap();
    close(scalar(&trip.per_layer[0].0), 1.0, "dp of a zero anchor");
    trip.total.backward();
    let g = a[5].grad();
    assert!(g.isfinite().all().int64_value(&[]) == 1, "gradient {g:?}");
}

/// LSGAN by hand: D(real) = [1, 3] -> mean((x-1)^2) = 2; D(virtual) = [0, 2] -> mean(x^2) = 2,
/// mean((x-1)^2) = 1. D loss = 0.5 (2 + 2) = 2, G loss = 0.5 * 1 = 0.5.
#[test]
fn lsgan_matches_hand_values() {
    let real = Tensor::from_slice(&[1.0f32, 3.0]);
    let virt = Tensor::from_slice(&[0.0f32, 2.0]);
    close(
        scalar(&lsgan_discriminator_loss(&real, &virt)),
        2.0,
        "D loss",
    );
    close(scalar(&lsgan_generator_loss(&virt)), 0.5, "G loss");
}

/// Depth by hand: ground truth 4x4 of value 2, one side output 2x2 of 1 and one 4x4 of 2:
/// (|1 - 2| + 0) / 2 = 0.5.
#[test]
fn depth_matches_hand_values() {
    let gt = Tensor::full([1, 1, 4, 4], 2.0, (Kind::Float, Device::Cpu));
    let preds = [
        Tensor::ones([1, 1, 2, 2], (Kind::Float, Device::Cpu)),
        gt.copy(),
    ];
    close(scalar(&depth_loss(&preds, &gt).unwrap()), 0.5, "depth");
}

/// Every loss on random tensors, against PyTorch: multi-scale depth (nearest-resized ground
/// truth at 4 scales), 15-class cross-entropy, LSGAN D and G, and the paper's triplet layers.
#[test]
fn losses_match_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    tch::manual_seed(11);
    let opts = (Kind::Float, Device::Cpu);
    let (b, h, w) = (2, 32, 64);
    let mut named: Vec<(String, Tensor)> = Vec::new();
    let gt = Tensor::rand([b, 1, h, w], opts) * 80.0;
    named.push(("depth_gt".into(), gt.shallow_clone()));
    let depth: Vec<Tensor> = (0..4)
        .map(|i| Tensor::rand([b, 1, h >> (3 - i), w >> (3 - i)], opts) * 80.0)
        .collect();
    for (i, d) in depth.iter().enumerate() {
        named.push((format!("depth_{i}"), d.shallow_clone()));
    }
    let logits = Tensor::randn([b, 15, h, w], opts) * 3.0;
    let target = Tensor::randint(15, [b, h, w], (Kind::Int64, Device::Cpu));
    named.push(("seg_logits".into(), logits.shallow_clone()));
    named.push(("seg_target".into(), target.shallow_clone()));
    let d_real = Tensor::randn([b, 1], opts);
    let d_virtual = Tensor::randn([b, 1], opts);
    named.push(("d_real".into(), d_real.shallow_clone()));
    named.push(("d_virtual".into(), d_virtual.shallow_clone()));
    // Features for layers 1..8: A random; A+ = A + noise (std 0.3, dp ~ 0.09); B = A + noise with
    // std 0.8 on layers 1-4 (dn ~ 0.64: a positive term) and 2.0 on layers 5-8 (dn ~ 4: clamped
    // to 0), so both regimes of max(0, .) are compared.
    let a: Vec<Tensor> = (0..8)
        .map(|l| Tensor::randn([b, 4, 8 >> (l / 3), 8 >> (l / 3)], opts))
        .collect();
    let near = |base: &Vec<Tensor>, std: &dyn Fn(usize) -> f64| -> Vec<Tensor> {
        base.iter()
            .enumerate()
            .map(|(l, t)| t + t.randn_like() * std(l))
            .collect()
    };
    let p = near(&a, &|_| 0.3);
    let n = near(&a, &|l| if l < 4 { 0.8 } else { 2.0 });
    let layers = paper_triplet_layers();
    for spec in &layers {
        let i = spec.layer - 1;
        named.push((format!("a{}", spec.layer), a[i].shallow_clone()));
        named.push((format!("p{}", spec.layer), p[i].shallow_clone()));
        named.push((format!("n{}", spec.layer), n[i].shallow_clone()));
    }
    let input = dir.path().join("in.safetensors");
    let output = dir.path().join("out.safetensors");
    dasgil::tensor_io::write(&input, &named, &Default::default()).unwrap();
    let triplet_json = serde_json::to_string(
        &layers
            .iter()
            .map(|l| (l.layer, l.margin, l.weight))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    torch_peer(&[
        "losses",
        "--input",
        path_str(&input),
        "--output",
        path_str(&output),
        "--triplet",
        &triplet_json,
    ]);
    let theirs = read_tensors(&output);
    let t = |k: &str| scalar(&theirs[k]);

    close(
        scalar(&depth_loss(&depth, &gt).unwrap()),
        t("depth"),
        "depth",
    );
    close(
        scalar(&segmentation_loss(&logits, &target).unwrap()),
        t("seg"),
        "segmentation",
    );
    close(
        scalar(&lsgan_discriminator_loss(&d_real, &d_virtual)),
        t("lsgan_d"),
        "LSGAN D",
    );
    close(
        scalar(&lsgan_generator_loss(&d_virtual)),
        t("lsgan_g"),
        "LSGAN G",
    );
    let trip = triplet_loss(&a, &p, &n, &layers).unwrap();
    for (spec, (_, _, term)) in layers.iter().zip(&trip.per_layer) {
        close(
            scalar(term),
            t(&format!("triplet_{}", spec.layer)),
            &format!("triplet layer {}", spec.layer),
        );
    }
    close(scalar(&trip.total), t("triplet"), "triplet total");
    assert!(
        scalar(&trip.per_layer[0].2) > 0.0 && scalar(&trip.per_layer[1].2) > 0.0,
        "layers 3-4: within the margin"
    );
    assert_eq!(
        scalar(&trip.per_layer[2].2),
        0.0,
        "layer 5: beyond the margin, clamped"
    );
}
