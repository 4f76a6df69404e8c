//! The map: one safetensors file of descriptors, `world_from_cam` poses, names, cameras, times,
//! the encoder's description and the decoding of its images (`file`, docs/map-format.md), and
//! how it is built from a source's database images (`build`).

pub mod build;
pub mod file;
pub mod views;

pub use build::{build_map, build_map_summary, image_name, BuildOptions, Built, PROJECTION_SEED};
pub use file::{MapError, MapFile, MapMeta};
