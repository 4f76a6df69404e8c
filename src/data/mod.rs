//! Data: the image preprocessing shared by every path into the network, and one reader per
//! on-disk dataset format (written from ../shared/reference/dataset-formats.md). Readers
//! validate the layout when opened and give typed samples; poses are converted to the
//! conventions of `crate::geom` at this boundary, and every reader hands out `PosedImage`s.

pub mod cmu_seasons;
pub mod error;
pub mod kitti;
pub mod preprocess;
pub mod raw_image;
pub mod robotcar;
pub mod sequence;
pub mod sources;
pub mod text;
pub mod vkitti2;

pub use error::{skip_bad, DataError, Skipped};
pub use sequence::{Decode, PosedImage};
