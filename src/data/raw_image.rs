//! Camera frames as ROS carries them -> pixels, as the source says they are.
//!
//! - `sensor_msgs/Image` (width, height, encoding, endianness, step, bytes): every encoding of
//!   `sensor_msgs/image_encodings.hpp` (jazzy) is either decoded or refused by name:
//!   - colour: `rgb8`, `bgr8`, `rgba8`, `bgra8` and their 16-bit forms `rgb16`, `bgr16`,
//!     `rgba16`, `bgra16` (the high byte is kept); `yuv422`/`uyvy` (U Y0 V Y1) and
//!     `yuv422_yuy2`/`yuyv` (Y0 U Y1 V), ITU-R BT.601 with studio range (as OpenCV converts);
//!   - single channel: `mono8`, `mono16` (high byte);
//!   - raw sensor: `bayer_rggb8`, `bayer_bggr8`, `bayer_gbrg8`, `bayer_grbg8` and the `16`
//!     forms (high byte), returned as a mosaic with its pattern;
//!   - refused: the generic matrix types `8UC1`..`64FC4` (depth images are `16UC1` or `32FC1`;
//!     `8UC3` says nothing of its channel order), `nv21` and `nv24`, and any other string.
//! - `sensor_msgs/CompressedImage` (format, bytes): the format of image_transport's compressed
//!   plugins, `"<encoding>; <codec> compressed <encoding>"` (the first encoding is the frame's
//!   before compression), `"<encoding>; compressedDepth ..."` (refused: a depth image), or a
//!   bare codec (`jpeg`, `png`; the decoded channels say colour or single channel).
//!
//! Every inconsistency is an error that says what was expected and found, so a bad frame is
//! reported and skipped, never a crash. What the pixels become for a given map is decided in
//! `localize` (a map records how its own images were decoded).

use image::{GrayImage, RgbImage};

use super::robotcar::BayerPattern;

/// A frame's pixels as its source describes them.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// Colour, converted to 8-bit RGB.
    Colour(RgbImage),
    /// One channel (`mono8`, `mono16`, a grey JPEG): a grey camera, or a mosaic whose pattern
    /// the source did not state.
    Mono(GrayImage),
    /// A raw sensor mosaic with the pattern the source stated (`bayer_*`).
    Mosaic(GrayImage, BayerPattern),
}

impl Pixels {
    pub fn dimensions(&self) -> (u32, u32) {
        match self {
            Pixels::Colour(i) => i.dimensions(),
            Pixels::Mono(i) | Pixels::Mosaic(i, _) => i.dimensions(),
        }
    }
}

/// What makes a frame unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RawImageError {
    #[error("image is empty: width {width}, height {height}")]
    Empty { width: u32, height: u32 },
    #[error("encoding `{encoding}` is refused: {why}")]
    Refused { encoding: String, why: &'static str },
    #[error(
        "unknown encoding `{0}`: expected a sensor_msgs/image_encodings name (rgb8, bgr8, \
         rgba8, bgra8, rgb16, bgr16, rgba16, bgra16, mono8, mono16, bayer_rggb8 ... \
         bayer_grbg16, yuv422, yuv422_yuy2)"
    )]
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
    #[error(
        "encoding `{encoding}` packs two pixels in 4 bytes: the width must be even, found {width}"
    )]
    OddWidth { encoding: String, width: u32 },
    #[error("compressed frame: {0}")]
    Compressed(String),
}

/// Pixel layouts (sensor_msgs/image_encodings names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Channels per pixel, bytes per channel, offsets of R, G, B.
    Colour {
        channels: u32,
        depth: u32,
        rgb: [usize; 3],
    },
    Mono {
        depth: u32,
    },
    Bayer {
        depth: u32,
        pattern: BayerPattern,
    },
    /// 4 bytes per 2 pixels; offsets of Y0, U, Y1, V.
    Yuv422 {
        order: [usize; 4],
    },
}

const NOT_A_CAMERA_IMAGE: &str = "a generic matrix type (depth images are 16UC1 or 32FC1; \
     8UC3 and 8UC4 do not say their channel order): not a camera image this node localizes; \
     publish rgb8, bgr8, mono8 or bayer_* frames";

/// The layout of `encoding`, or why it is refused.
fn layout(encoding: &str) -> Result<Layout, RawImageError> {
    let colour = |channels, depth, rgb| Layout::Colour {
        channels,
        depth,
        rgb,
    };
    Ok(match encoding {
        "rgb8" => colour(3, 1, [0, 1, 2]),
        "bgr8" => colour(3, 1, [2, 1, 0]),
        "rgba8" => colour(4, 1, [0, 1, 2]),
        "bgra8" => colour(4, 1, [2, 1, 0]),
        "rgb16" => colour(3, 2, [0, 1, 2]),
        "bgr16" => colour(3, 2, [2, 1, 0]),
        "rgba16" => colour(4, 2, [0, 1, 2]),
        "bgra16" => colour(4, 2, [2, 1, 0]),
        "mono8" => Layout::Mono { depth: 1 },
        "mono16" => Layout::Mono { depth: 2 },
        "yuv422" | "uyvy" => Layout::Yuv422 {
            order: [1, 0, 3, 2],
        },
        "yuv422_yuy2" | "yuyv" => Layout::Yuv422 {
            order: [0, 1, 2, 3],
        },
        "nv21" | "nv24" => {
            return Err(RawImageError::Refused {
                encoding: encoding.into(),
                why: "planar YUV is not supported; publish rgb8, bgr8 or yuv422",
            })
        }
        _ => {
            if let Some(rest) = encoding.strip_prefix("bayer_") {
                // `get`: the name may be any bytes off the wire (a multi-byte character
                // must not be split).
                let (pattern, depth) = (rest.get(..4).unwrap_or(""), rest.get(4..).unwrap_or(""));
                if let (Some(pattern), Some(depth)) = (
                    BayerPattern::parse(pattern),
                    match depth {
                        "8" => Some(1),
                        "16" => Some(2),
                        _ => None,
                    },
                ) {
                    return Ok(Layout::Bayer { depth, pattern });
                }
            }
            if is_matrix_type(encoding) {
                return Err(RawImageError::Refused {
                    encoding: encoding.into(),
                    why: NOT_A_CAMERA_IMAGE,
                });
            }
            return Err(RawImageError::Encoding(encoding.into()));
        }
    })
}

/// `8UC1` .. `64FC4` (the generic OpenCV-style types of image_encodings).
fn is_matrix_type(encoding: &str) -> bool {
    let Some(c) = encoding.find('C') else {
        return false;
    };
    let (ty, ch) = (&encoding[..c], &encoding[c + 1..]);
    matches!(ty, "8U" | "8S" | "16U" | "16S" | "32S" | "32F" | "64F")
        && matches!(ch, "1" | "2" | "3" | "4")
}

impl Layout {
    fn bytes_per_pixel(self) -> u32 {
        match self {
            Self::Colour {
                channels, depth, ..
            } => channels * depth,
            Self::Mono { depth } | Self::Bayer { depth, .. } => depth,
            Self::Yuv422 { .. } => 2,
        }
    }
}

/// The 8 bits a channel of `depth` bytes keeps (the high byte of 16-bit values).
fn sample(p: &[u8], depth: u32, big_endian: bool) -> u8 {
    if depth == 2 && !big_endian {
        p[1]
    } else {
        p[0]
    }
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// ITU-R BT.601, studio range (Y 16..235), as OpenCV's YUV 4:2:2 conversions.
fn yuv_to_rgb(y: u8, u: u8, v: u8) -> [u8; 3] {
    let c = 1.164 * (y as f32 - 16.0);
    let (d, e) = (u as f32 - 128.0, v as f32 - 128.0);
    [
        clamp_u8(c + 1.596 * e),
        clamp_u8(c - 0.391 * d - 0.813 * e),
        clamp_u8(c + 2.018 * d),
    ]
}

/// Decodes one `sensor_msgs/Image`. `big_endian` matters for 16-bit encodings only.
pub fn decode(
    width: u32,
    height: u32,
    encoding: &str,
    big_endian: bool,
    step: u32,
    data: &[u8],
) -> Result<Pixels, RawImageError> {
    if width == 0 || height == 0 {
        return Err(RawImageError::Empty { width, height });
    }
    let layout = layout(encoding)?;
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
    let rows = data.chunks_exact(step as usize);
    let (w, bpp) = (width as usize, bpp as usize);
    Ok(match layout {
        Layout::Colour { depth, rgb, .. } => {
            let mut out = RgbImage::new(width, height);
            let d = depth as usize;
            for (y, row) in rows.enumerate() {
                for x in 0..w {
                    let p = &row[x * bpp..(x + 1) * bpp];
                    let ch = |c: usize| sample(&p[rgb[c] * d..], depth, big_endian);
                    out.put_pixel(x as u32, y as u32, image::Rgb([ch(0), ch(1), ch(2)]));
                }
            }
            Pixels::Colour(out)
        }
        Layout::Mono { depth } | Layout::Bayer { depth, .. } => {
            let mut out = GrayImage::new(width, height);
            for (y, row) in rows.enumerate() {
                for x in 0..w {
                    let v = sample(&row[x * bpp..], depth, big_endian);
                    out.put_pixel(x as u32, y as u32, image::Luma([v]));
                }
            }
            match layout {
                Layout::Bayer { pattern, .. } => Pixels::Mosaic(out, pattern),
                _ => Pixels::Mono(out),
            }
        }
        Layout::Yuv422 { order } => {
            if width % 2 != 0 {
                return Err(RawImageError::OddWidth {
                    encoding: encoding.into(),
                    width,
                });
            }
            let mut out = RgbImage::new(width, height);
            for (y, row) in rows.enumerate() {
                for pair in 0..w / 2 {
                    let q = &row[pair * 4..pair * 4 + 4];
                    let (y0, u, y1, v) = (q[order[0]], q[order[1]], q[order[2]], q[order[3]]);
                    let (x, y) = ((pair * 2) as u32, y as u32);
                    out.put_pixel(x, y, image::Rgb(yuv_to_rgb(y0, u, v)));
                    out.put_pixel(x + 1, y, image::Rgb(yuv_to_rgb(y1, u, v)));
                }
            }
            Pixels::Colour(out)
        }
    })
}

/// Decodes one `sensor_msgs/CompressedImage` (see the module's description of `format`).
pub fn decode_compressed(format: &str, data: &[u8]) -> Result<Pixels, RawImageError> {
    let format = format.trim();
    let (source, codec) = match format.split_once(';') {
        Some((enc, rest)) => (Some(enc.trim()), rest.trim()),
        None => (None, format),
    };
    if codec.contains("compressedDepth") {
        return Err(RawImageError::Refused {
            encoding: format.into(),
            why: "a compressed depth image (compressedDepth), not a camera image",
        });
    }
    let codec_word = codec.split_whitespace().next().unwrap_or("");
    if !matches!(codec_word, "" | "jpeg" | "jpg" | "png") {
        return Err(RawImageError::Refused {
            encoding: format.into(),
            why: "unknown codec: expected jpeg or png (image_transport's compressed format)",
        });
    }
    // The source encoding decides what the decoded channels are; refuse what is not a camera
    // image before decoding it.
    let source_layout = match source {
        Some(enc) if !enc.is_empty() => Some(layout(enc)?),
        _ => None,
    };
    if data.is_empty() {
        return Err(RawImageError::Compressed(format!(
            "format `{format}` but no data"
        )));
    }
    let img = super::error::decode_image_bytes(data).map_err(|e| {
        RawImageError::Compressed(format!("format `{format}`, {} bytes: {e}", data.len()))
    })?;
    let single = !img.color().has_color();
    Ok(match source_layout {
        Some(Layout::Bayer { pattern, .. }) => Pixels::Mosaic(img.to_luma8(), pattern),
        Some(Layout::Mono { .. }) => Pixels::Mono(img.to_luma8()),
        // A colour source compressed as colour (image_transport writes true colour).
        Some(_) if !single => Pixels::Colour(img.to_rgb8()),
        Some(_) => {
            return Err(RawImageError::Compressed(format!(
                "format `{format}` says colour, but the image has one channel"
            )))
        }
        None if single => Pixels::Mono(img.to_luma8()),
        None => Pixels::Colour(img.to_rgb8()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn colour(p: Pixels) -> RgbImage {
        match p {
            Pixels::Colour(i) => i,
            other => panic!("expected colour, got {other:?}"),
        }
    }

    #[test]
    fn bgr_with_row_padding_becomes_rgb() {
        // 2x2 bgr8, step 8 (2 bytes of padding per row).
        let data = [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0];
        let img = colour(decode(2, 2, "bgr8", false, 8, &data).unwrap());
        assert_eq!(img.get_pixel(0, 0).0, [3, 2, 1]);
        assert_eq!(img.get_pixel(1, 1).0, [12, 11, 10]);
    }

    /// One pixel of every colour encoding with distinct channels has one right RGB.
    #[test]
    fn every_colour_encoding_puts_red_green_and_blue_in_place() {
        let cases: [(&str, &[u8], bool); 10] = [
            ("rgb8", &[10, 20, 30], false),
            ("bgr8", &[30, 20, 10], false),
            ("rgba8", &[10, 20, 30, 99], false),
            ("bgra8", &[30, 20, 10, 99], false),
            ("rgb16", &[1, 10, 2, 20, 3, 30], false),
            ("bgr16", &[3, 30, 2, 20, 1, 10], false),
            ("rgba16", &[1, 10, 2, 20, 3, 30, 0, 99], false),
            ("bgra16", &[3, 30, 2, 20, 1, 10, 0, 99], false),
            ("rgb16", &[10, 1, 20, 2, 30, 3], true),
            ("bgra16", &[30, 3, 20, 2, 10, 1, 99, 0], true),
        ];
        for (enc, data, be) in cases {
            let img = colour(decode(1, 1, enc, be, data.len() as u32, data).unwrap());
            assert_eq!(img.get_pixel(0, 0).0, [10, 20, 30], "{enc} big_endian={be}");
        }
    }

    #[test]
    fn mono16_and_bayer16_use_the_high_byte_in_either_byte_order() {
        let le = decode(1, 1, "mono16", false, 2, &[0x34, 0xAB]).unwrap();
        let be = decode(1, 1, "mono16", true, 2, &[0xAB, 0x34]).unwrap();
        let want = GrayImage::from_pixel(1, 1, image::Luma([0xAB]));
        assert_eq!(le, Pixels::Mono(want.clone()));
        assert_eq!(be, Pixels::Mono(want.clone()));
        let b = decode(1, 1, "bayer_grbg16", false, 2, &[0x34, 0xAB]).unwrap();
        assert_eq!(b, Pixels::Mosaic(want, BayerPattern::Grbg));
    }

    #[test]
    fn every_bayer_encoding_names_its_pattern() {
        for p in BayerPattern::ALL {
            for depth in ["8", "16"] {
                let enc = format!("bayer_{}{depth}", p.name());
                let n = if depth == "8" { 4 } else { 8 };
                match decode(2, 2, &enc, false, n / 2, &vec![7; n as usize]).unwrap() {
                    Pixels::Mosaic(_, got) => assert_eq!(got, p, "{enc}"),
                    other => panic!("{enc}: {other:?}"),
                }
            }
        }
    }

    #[test]
    fn yuv422_in_both_byte_orders() {
        // Grey (U = V = 128): Y 16 is black, Y 235 white.
        let uyvy = colour(decode(2, 1, "yuv422", false, 4, &[128, 16, 128, 235]).unwrap());
        assert_eq!(uyvy.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(uyvy.get_pixel(1, 0).0, [255, 255, 255]);
        let yuyv = colour(decode(2, 1, "yuyv", false, 4, &[235, 128, 16, 128]).unwrap());
        assert_eq!(yuyv.get_pixel(0, 0).0, [255, 255, 255]);
        assert_eq!(yuyv.get_pixel(1, 0).0, [0, 0, 0]);
        // Red in yuyv order (Y0 U Y1 V): U and V in their places, not swapped.
        let red2 = colour(decode(2, 1, "yuv422_yuy2", false, 4, &[81, 90, 81, 240]).unwrap());
        let p = red2.get_pixel(1, 0).0;
        assert!(p[0] > 230 && p[1] < 30 && p[2] < 30, "{p:?}");
        // Strong V is red.
        let red = colour(decode(2, 1, "uyvy", false, 4, &[90, 81, 240, 81]).unwrap());
        let p = red.get_pixel(0, 0).0;
        assert!(p[0] > 230 && p[1] < 30 && p[2] < 30, "{p:?}");
        let e = decode(3, 1, "yuv422", false, 6, &[0; 6]).unwrap_err();
        assert!(e.to_string().contains("width must be even, found 3"), "{e}");
    }

    #[test]
    fn depth_generic_and_planar_encodings_are_refused_by_name() {
        for enc in [
            "16UC1", "32FC1", "8UC1", "8UC3", "64FC4", "16SC2", "nv21", "nv24",
        ] {
            let e = decode(2, 2, enc, false, 64, &[0; 128]).unwrap_err();
            assert!(
                matches!(&e, RawImageError::Refused { encoding, .. } if encoding == enc),
                "{enc}: {e}"
            );
            assert!(e.to_string().contains(&format!("`{enc}`")), "{e}");
        }
        for enc in ["rgb9", "bayer_aéé", "bayer_ab€8", "bayer_", "bayer_rggb32"] {
            let e = decode(2, 2, enc, false, 8, &[0; 16]).unwrap_err();
            assert!(
                e.to_string().contains(&format!("unknown encoding `{enc}`")),
                "{e}"
            );
        }
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

    fn png(img: image::DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn compressed_formats_follow_the_source_encoding() {
        let grey = GrayImage::from_fn(4, 2, |x, y| image::Luma([(x * 10 + y) as u8]));
        let g = png(image::DynamicImage::ImageLuma8(grey.clone()));
        assert_eq!(
            decode_compressed("bayer_rggb8; png compressed mono8", &g).unwrap(),
            Pixels::Mosaic(grey.clone(), BayerPattern::Rggb)
        );
        assert_eq!(
            decode_compressed("mono8; png compressed ", &g).unwrap(),
            Pixels::Mono(grey.clone())
        );
        assert_eq!(decode_compressed("png", &g).unwrap(), Pixels::Mono(grey));
        let rgb = RgbImage::from_pixel(2, 2, image::Rgb([1, 2, 3]));
        let c = png(image::DynamicImage::ImageRgb8(rgb.clone()));
        assert_eq!(
            decode_compressed("bgr8; png compressed bgr8", &c).unwrap(),
            Pixels::Colour(rgb.clone())
        );
        assert_eq!(decode_compressed("jpeg", &c).unwrap(), Pixels::Colour(rgb));
        for (format, says) in [
            ("16UC1; compressedDepth png", "compressed depth"),
            ("32FC1; png compressed ", "not a camera image"),
            ("rgb8; h264", "unknown codec"),
            (
                "rgb8; png compressed rgb8",
                "says colour, but the image has one channel",
            ),
        ] {
            let e = decode_compressed(format, &g).unwrap_err().to_string();
            assert!(
                e.contains(says) && e.contains(format.split(';').next().unwrap()),
                "{format}: {e}"
            );
        }
        let e = decode_compressed("jpeg", &[]).unwrap_err().to_string();
        assert!(e.contains("no data"), "{e}");
    }
}
