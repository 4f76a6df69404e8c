//! DASGIL ("Domain Adaptation for Semantic and Geometric-aware Image-based Localization",
//! Hu et al., IEEE TIP 2021) for robots: the network, its training data, the maps it searches and
//! the ROS 2 node that turns camera frames into coarse 6-DoF pose priors.
//!
//! Pipeline: `data` (dataset readers, preprocessing) -> `model` (generator, discriminators,
//! losses, checkpoints) -> training; `model` -> descriptors -> retrieval -> `node` (behind the
//! `ros` feature). `synth` renders synthetic worlds in the real datasets' on-disk formats; `bag`
//! reads a robot's rosbag2 recordings as posed frames.

pub mod atomic;
pub mod bag;
pub mod data;
pub mod error;
pub mod eval;
pub mod extract;
pub mod geom;
pub mod localize;
pub mod map;
pub mod model;
pub mod plot;
pub mod progress;
pub mod python;
pub mod report;
pub mod resources;
pub mod retrieval;
pub mod synth;
pub mod tensor_io;
pub mod toolchain;
pub mod train;
pub mod yaml;

#[cfg(feature = "ros")]
pub mod node;
#[cfg(feature = "ros")]
pub mod ros;
