//! The ROS side of localization: a camera message as it came off the wire, handed to the
//! library's one [`crate::localize::Localizer`] as a [`Frame`] (encoding or format string
//! included, so the frame is decoded the way the map's images were).

use crate::localize::Frame;

pub type ImageMsg = r2r::sensor_msgs::msg::Image;
pub type CompressedMsg = r2r::sensor_msgs::msg::CompressedImage;

/// A frame as it came off the wire.
pub enum Incoming {
    Raw(ImageMsg),
    Compressed(CompressedMsg),
}

impl Incoming {
    pub fn header(&self) -> &r2r::std_msgs::msg::Header {
        match self {
            Incoming::Raw(m) => &m.header,
            Incoming::Compressed(m) => &m.header,
        }
    }

    /// The message as the Localizer takes it.
    pub fn frame(&self) -> Frame<'_> {
        match self {
            Incoming::Raw(m) => Frame::Raw {
                width: m.width,
                height: m.height,
                encoding: &m.encoding,
                big_endian: m.is_bigendian != 0,
                step: m.step,
                data: &m.data,
            },
            Incoming::Compressed(m) => Frame::Compressed {
                format: &m.format,
                data: &m.data,
            },
        }
    }

    /// What a rejection message says the frame was.
    pub fn describe(&self, topic: &str) -> String {
        match self {
            Incoming::Raw(m) => format!(
                "{topic}: frame `{}` ({}x{} {})",
                m.header.frame_id, m.width, m.height, m.encoding
            ),
            Incoming::Compressed(m) => format!(
                "{topic}: compressed frame `{}` (format `{}`, {} bytes)",
                m.header.frame_id,
                m.format,
                m.data.len()
            ),
        }
    }
}
