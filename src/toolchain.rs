//! Facts about the toolchain this binary was built with and runs on: libtorch, CUDA, ROS 2.
//! `dasgil-tools info` prints them, so a user can see at once whether the set-up worked.

use std::fmt;

/// What `dasgil-tools info` reports.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolchainInfo {
    /// Version of the libtorch this binary links (read at build time).
    pub libtorch_version: String,
    /// Whether libtorch sees a usable CUDA device.
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
    /// Threads libtorch uses for CPU ops.
    pub torch_threads: i32,
    /// ROS 2 distribution r2r was built against, or `None` without the `ros` feature.
    pub ros_distro: Option<String>,
    /// The RMW implementation the ROS 2 client library reports at run time.
    pub rmw_implementation: Option<String>,
    /// ROS_DOMAIN_ID from the environment (ROS 2 default: 0).
    pub ros_domain_id: String,
}

impl ToolchainInfo {
    pub fn collect() -> Self {
        Self {
            libtorch_version: option_env!("DASGIL_LIBTORCH_VERSION")
                .unwrap_or("unknown")
                .into(),
            cuda_available: tch::Cuda::is_available(),
            cuda_device_count: tch::Cuda::device_count(),
            cudnn_available: tch::Cuda::cudnn_is_available(),
            torch_threads: tch::get_num_threads(),
            ros_distro: ros_distro(),
            rmw_implementation: rmw_implementation(),
            ros_domain_id: std::env::var("ROS_DOMAIN_ID").unwrap_or_else(|_| "0 (default)".into()),
        }
    }
}

/// A device choice as spelt: `auto`, `cpu`, or CUDA device N (`cuda` is `cuda:0`).
enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

/// Reads the spelling of a device choice (`cpu`, `cuda`, `cuda:N` or `auto`); the one place
/// that knows it.
fn device_choice(s: &str) -> Result<DeviceChoice, String> {
    match s {
        "auto" => Ok(DeviceChoice::Auto),
        "cpu" => Ok(DeviceChoice::Cpu),
        "cuda" => Ok(DeviceChoice::Cuda(0)),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => Ok(DeviceChoice::Cuda(index)),
            _ => Err(format!(
                "expected cpu, cuda, cuda:N or auto, found `{other}`"
            )),
        },
    }
}

/// Checks the spelling of a device choice without asking libtorch what it sees: the
/// command-line flags' value parser, so that a misspelt `--device` is a usage error (exit 2)
/// like any other bad flag value.
pub fn device_syntax(s: &str) -> Result<String, String> {
    device_choice(s).map(|_| s.to_string())
}

/// Parses a device choice `cpu`, `cuda`, `cuda:N` or `auto` (CUDA when libtorch sees a GPU);
/// `what` names the option or parameter in errors.
pub fn parse_device(s: &str, what: &str) -> Result<tch::Device, String> {
    let cuda = |index: usize| {
        let count = tch::Cuda::device_count() as usize;
        if index < count {
            Ok(tch::Device::Cuda(index))
        } else if count == 0 {
            Err(format!(
                "{what} is {s}, but libtorch sees no CUDA device (see `dasgil-tools info`)"
            ))
        } else {
            Err(format!(
                "{what} is {s}, but libtorch sees only {count} CUDA device(s): cuda:0 to cuda:{}",
                count - 1
            ))
        }
    };
    match device_choice(s).map_err(|e| format!("{what}: {e}"))? {
        DeviceChoice::Auto => Ok(tch::Device::cuda_if_available()),
        DeviceChoice::Cpu => Ok(tch::Device::Cpu),
        DeviceChoice::Cuda(index) => cuda(index),
    }
}

#[cfg(feature = "ros")]
fn ros_distro() -> Option<String> {
    Some(r2r::ROS_DISTRO.to_string())
}

#[cfg(not(feature = "ros"))]
fn ros_distro() -> Option<String> {
    None
}

#[cfg(feature = "ros")]
fn rmw_implementation() -> Option<String> {
    crate::ros::rmw_implementation_identifier()
}

#[cfg(not(feature = "ros"))]
fn rmw_implementation() -> Option<String> {
    None
}

impl fmt::Display for ToolchainInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let none = "not built (cargo feature `ros` is off)";
        writeln!(f, "dasgil {}", env!("CARGO_PKG_VERSION"))?;
        writeln!(f, "libtorch:       {}", self.libtorch_version)?;
        writeln!(
            f,
            "CUDA:           {}",
            if self.cuda_available {
                format!(
                    "available ({} device(s), cuDNN {})",
                    self.cuda_device_count,
                    if self.cudnn_available { "yes" } else { "no" }
                )
            } else {
                "not available (running on CPU)".to_string()
            }
        )?;
        writeln!(f, "torch threads:  {}", self.torch_threads)?;
        writeln!(
            f,
            "ROS distro:     {}",
            self.ros_distro.as_deref().unwrap_or(none)
        )?;
        writeln!(
            f,
            "RMW:            {}",
            self.rmw_implementation.as_deref().unwrap_or(none)
        )?;
        write!(f, "ROS_DOMAIN_ID:  {}", self.ros_domain_id)
    }
}
