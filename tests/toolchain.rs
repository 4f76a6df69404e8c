//! The toolchain works for real: libtorch computes known values, and `dasgil-tools info` (the
//! README's main command) reports the libtorch, CUDA, ROS 2 and RMW facts of this build.

use tch::{Device, Kind, Tensor};

mod common;
use common::OutputWithin;

#[test]
fn libtorch_computes_known_values() {
    // [[1, 2], [3, 4]] x [[5, 6], [7, 8]] = [[19, 22], [43, 50]]
    let a = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
    let b = Tensor::from_slice(&[5.0f32, 6.0, 7.0, 8.0]).view([2, 2]);
    assert_eq!(
        Vec::<f32>::try_from(a.matmul(&b).flatten(0, -1)).unwrap(),
        [19.0, 22.0, 43.0, 50.0]
    );
    // A 2x2 box filter over 0..16 (4x4), stride 2: block means 2.5, 4.5, 10.5, 12.5.
    let x = Tensor::arange(16, (Kind::Float, Device::Cpu)).view([1, 1, 4, 4]);
    let w = Tensor::full([1, 1, 2, 2], 0.25, (Kind::Float, Device::Cpu));
    let y = x.conv2d(&w, None::<Tensor>, [2, 2], [0, 0], [1, 1], 1);
    assert_eq!(
        Vec::<f32>::try_from(y.flatten(0, -1)).unwrap(),
        [2.5, 4.5, 10.5, 12.5]
    );
    // Autograd: d/dx sum(x^2) = 2x.
    let x = Tensor::from_slice(&[1.0f32, -3.0]).set_requires_grad(true);
    x.square().sum(Kind::Float).backward();
    assert_eq!(Vec::<f32>::try_from(x.grad()).unwrap(), [2.0, -6.0]);
}

#[test]
fn info_reports_the_toolchain() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(["info", "--json"])
        .output_limited()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        info["libtorch_version"]
            .as_str()
            .unwrap()
            .starts_with("2.11.0"),
        "{info}"
    );
    assert_eq!(
        info["cuda_available"].as_bool(),
        Some(tch::Cuda::is_available())
    );
    if cfg!(feature = "ros") {
        assert_eq!(info["ros_distro"], "jazzy");
        assert_eq!(info["rmw_implementation"], "rmw_fastrtps_cpp");
    }
    let text = std::process::Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .arg("info")
        .output_limited()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("libtorch:")
            && text.contains("CUDA:")
            && text.contains("ROS distro:")
            && text.contains("RMW:"),
        "{text}"
    );
}
