//! Raw camera frames as sensor_msgs/Image carries them (width, height, encoding, step, bytes)
//! -> 8-bit RGB. Every inconsistency is an error that says what was expected and found, so a
//! bad frame is reported and skipped, never a crash.

use image::RgbImage;

/// What makes a raw frame unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawImageError {
    #[error("image is empty: width {width}, height {height}")]
    Empty { width: u32, height: u32 },
    #[error("unsupported encoding `{0}`: expected rgb8, bgr8, rgba8, bgra8, mono8 or mono16")]
    Encoding(String),
    #[error("step {step} bytes is less than width {width} x {bytes_per_pixel} bytes per pixel")]
    Step {
        step: u32,
        width: u32,
        bytes_per_pixel: u32,
    },
    #[error("data has {found} bytes, expected step {step} x height {height} = {expected}")]
    Length {
        expected: usize,
        found: usize,
        step: u32,
        height: u32,
    },
}

/// Pixel layouts this decoder accepts (sensor_msgs/image_encodings names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Rgb8,
    Bgr8,
    Rgba8,
    Bgra8,
    Mono8,
    Mono16,
}

impl Layout {
    fn parse(encoding: &str) -> Option<Self> {
        Some(match encoding {
            "rgb8" => Self::Rgb8,
            "bgr8" => Self::Bgr8,
            "rgba8" => Self::Rgba8,
            "bgra8" => Self::Bgra8,
            "mono8" | "8UC1" => Self::Mono8,
            "mono16" | "16UC1" => Self::Mono16,
            _ => return None,
        })
    }

    fn bytes_per_pixel(self) -> u32 {
        match self {
            Self::Rgb8 | Self::Bgr8 => 3,
            Self::Rgba8 | Self::Bgra8 => 4,
            Self::Mono8 => 1,
            Self::Mono16 => 2,
        }
    }
}

/// Decodes one raw frame. `big_endian` matters for mono16 only.
pub fn decode(
    width: u32,
    height: u32,
    encoding: &str,
    big_endian: bool,
    step: u32,
    data: &[u8],
) -> Result<RgbImage, RawImageError> {
    if width == 0 || height == 0 {
        return Err(RawImageError::Empty { width, height });
    }
    let layout =
        Layout::parse(encoding).ok_or_else(|| RawImageError::Encoding(encoding.to_string()))?;
    let bpp = layout.bytes_per_pixel();
    if (step as u64) < width as u64 * bpp as u64 {
        return Err(RawImageError::Step {
            step,
            width,
            bytes_per_pixel: bpp,
        });
    }
    let expected = step as usize * height as usize;
    if data.len() != expected {
        return Err(RawImageError::Length {
            expected,
            found: data.len(),
            step,
            height,
        });
    }
    let mut out = RgbImage::new(width, height);
    for (y, row) in data.chunks_exact(step as usize).enumerate() {
        for x in 0..width as usize {
            let p = &row[x * bpp as usize..(x + 1) * bpp as usize];
            let rgb = match layout {
                Layout::Rgb8 | Layout::Rgba8 => [p[0], p[1], p[2]],
                Layout::Bgr8 | Layout::Bgra8 => [p[2], p[1], p[0]],
                Layout::Mono8 => [p[0]; 3],
                Layout::Mono16 => {
                    let v = if big_endian {
                        u16::from_be_bytes([p[0], p[1]])
                    } else {
                        u16::from_le_bytes([p[0], p[1]])
                    };
                    [(v >> 8) as u8; 3]
                }
            };
            out.put_pixel(x as u32, y as u32, image::Rgb(rgb));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bgr_with_row_padding_becomes_rgb() {
        // 2x2 bgr8, step 8 (2 bytes of padding per row).
        let data = [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
        let img = decode(2, 2, "bgr8", false, 8, &data).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [3, 2, 1]);
        assert_eq!(img.get_pixel(1, 1).0, [12, 11, 10]);
    }

    #[test]
    fn mono16_uses_the_high_byte_in_either_byte_order() {
        let le = decode(1, 1, "mono16", false, 2, &[0x34, 0xAB]).unwrap();
        let be = decode(1, 1, "mono16", true, 2, &[0xAB, 0x34]).unwrap();
        assert_eq!(le.get_pixel(0, 0).0, [0xAB; 3]);
        assert_eq!(be.get_pixel(0, 0).0, [0xAB; 3]);
    }

    #[test]
    fn inconsistent_frames_are_errors_that_say_what_was_expected() {
        assert_eq!(
            decode(0, 5, "rgb8", false, 0, &[]),
            Err(RawImageError::Empty {
                width: 0,
                height: 5
            })
        );
        let e = decode(4, 2, "yuv422", false, 8, &[0; 16]).unwrap_err();
        assert!(
            e.to_string().contains("unsupported encoding `yuv422`"),
            "{e}"
        );
        let e = decode(4, 2, "rgb8", false, 10, &[0; 20]).unwrap_err();
        assert_eq!(
            e,
            RawImageError::Step {
                step: 10,
                width: 4,
                bytes_per_pixel: 3
            }
        );
        let e = decode(4, 2, "rgb8", false, 12, &[0; 23]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "data has 23 bytes, expected step 12 x height 2 = 24"
        );
    }
}
