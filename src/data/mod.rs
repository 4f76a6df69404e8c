//! Data: image preprocessing shared by every path into the network, and (with the datasets
//! issue) one reader per on-disk dataset format.

pub mod preprocess;
pub mod raw_image;
