//! Errors of the dataset readers: each names the file, and where it applies the line, the field,
//! what was expected and what was found.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("cannot read {path}: {}", crate::error::io_words(source))]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: missing; expected {what}")]
    Missing { path: PathBuf, what: String },
    #[error("{path}:{line}: header: expected `{expected}`, found `{found}`")]
    Header {
        path: PathBuf,
        line: usize,
        expected: String,
        found: String,
    },
    #[error("{path}:{line}: expected {expected} columns, found {found}{hint}")]
    Columns {
        path: PathBuf,
        line: usize,
        expected: String,
        found: usize,
        /// What else the line says (a last line cut short), or empty.
        hint: String,
    },
    #[error("{path}:{line}: field `{field}`: expected {expected}, found `{found}`")]
    Field {
        path: PathBuf,
        line: usize,
        field: String,
        expected: String,
        found: String,
    },
    #[error("{path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: cannot decode image: {message}")]
    Image { path: PathBuf, message: String },
    #[error("{path}: image is {found_w}x{found_h}, expected {expected_w}x{expected_h}")]
    Size {
        path: PathBuf,
        expected_w: u32,
        expected_h: u32,
        found_w: u32,
        found_h: u32,
    },
}

impl DataError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn missing(path: &Path, what: impl Into<String>) -> Self {
        Self::Missing {
            path: path.to_path_buf(),
            what: what.into(),
        }
    }

    pub fn layout(path: &Path, message: impl Into<String>) -> Self {
        Self::Layout {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// Opens an image file; a missing file is `Missing` (expected: `what`), an undecodable one `Image`.
pub fn open_image(path: &Path, what: &str) -> Result<image::DynamicImage, DataError> {
    if path.is_dir() {
        return Err(DataError::Image {
            path: path.to_path_buf(),
            message: format!("is a folder; expected {what}"),
        });
    }
    if !path.is_file() {
        return Err(DataError::missing(path, what));
    }
    decode_image(path).map_err(|message| DataError::Image {
        path: path.to_path_buf(),
        message,
    })
}

/// Largest decoded image side and decoded size accepted: larger files are refused before the
/// pixels are allocated (a crafted 100000x100000 PNG header would otherwise abort the process).
pub const MAX_IMAGE_SIDE: u32 = 16384;
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Decodes an image file (format from its content) within [`MAX_IMAGE_SIDE`] and
/// [`MAX_IMAGE_BYTES`]; the error is a message for the caller to put next to the path.
pub fn decode_image(path: &Path) -> Result<image::DynamicImage, String> {
    let len = std::fs::metadata(path)
        .map_err(|e| crate::error::io_words(&e))?
        .len();
    if len > MAX_IMAGE_BYTES {
        return Err(format!(
            "image file of {} MiB is larger than this tool accepts (at most {} MiB)",
            len >> 20,
            MAX_IMAGE_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| crate::error::io_words(&e))?;
    // The format comes from the content only (PNG and JPEG both say what they are in their
    // first bytes): a file whose name says .jpg but whose content is not one is described as
    // what it is, not through a decoder's complaint about it.
    let reader = image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    decode_checked(reader, &bytes)
}

/// An image file's width and height from its header (format from its content, as
/// [`decode_image`]): content that is no PNG or JPEG is described as what it is.
pub fn image_dimensions(path: &Path) -> Result<(u32, u32), String> {
    // Not ImageReader::open: it takes the format from the name when the content says nothing.
    let file = std::fs::File::open(path).map_err(|e| crate::error::io_words(&e))?;
    let reader = image::ImageReader::new(std::io::BufReader::new(file))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if !matches!(
        reader.format(),
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg)
    ) {
        // Said as decode_image says it (which refuses it before decoding anything).
        return decode_image(path).map(|i| (i.width(), i.height()));
    }
    reader.into_dimensions().map_err(|e| e.to_string())
}

/// Why `bytes` is a cut-off JPEG or PNG, if it is one. A JPEG decoder fills what is missing with
/// grey without a word, so the file's structure is walked from its start: a JPEG's marker
/// segments (each skipped by its length; entropy-coded data up to the next marker that is not a
/// restart marker or a stuffed 0xFF) up to the end-of-image marker (FF D9), a PNG's chunks (each
/// skipped by its length) up to IEND. Whatever follows the end (a trailer, padding) is not
/// looked at; a structure that runs past the last byte is a cut-off file.
pub fn truncation(bytes: &[u8]) -> Option<String> {
    let cut = |what: &str| {
        Some(format!(
            "truncated {what} ({} bytes); the file was cut off (an interrupted download or copy?)",
            bytes.len()
        ))
    };
    if bytes.starts_with(&[0xFF, 0xD8]) {
        let mut i = 2;
        loop {
            // Fill bytes (0xFF) may precede a marker.
            while i < bytes.len() && bytes[i] == 0xFF && bytes.get(i + 1) == Some(&0xFF) {
                i += 1;
            }
            if i + 1 >= bytes.len() {
                return cut("JPEG: no end-of-image marker (FF D9)");
            }
            if bytes[i] != 0xFF {
                // Not a marker where one must be: leave it to the decoder to name.
                return None;
            }
            let marker = bytes[i + 1];
            i += 2;
            match marker {
                0xD9 => return None,
                0x01 | 0xD0..=0xD7 => continue,
                _ => {}
            }
            if i + 2 > bytes.len() {
                return cut("JPEG: no end-of-image marker (FF D9)");
            }
            let len = u16::from_be_bytes([bytes[i], bytes[i + 1]]) as usize;
            i += len;
            if marker == 0xDA {
                // Entropy-coded data: up to a marker that is not FF 00 or a restart marker.
                loop {
                    if i + 1 >= bytes.len() {
                        return cut("JPEG: no end-of-image marker (FF D9)");
                    }
                    if bytes[i] == 0xFF && !matches!(bytes[i + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                        break;
                    }
                    i += 1;
                }
            }
        }
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        let mut i = 8;
        loop {
            if i + 8 > bytes.len() {
                return cut("PNG: no IEND chunk");
            }
            let len =
                u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
            let kind = &bytes[i + 4..i + 8];
            let end = (i + 12).saturating_add(len);
            if end > bytes.len() {
                return cut("PNG: no IEND chunk");
            }
            if kind == b"IEND" {
                return None;
            }
            i = end;
        }
    }
    None
}

/// [`decode_image`] for bytes in memory (e.g. a sensor_msgs/CompressedImage), same limits; a
/// cut-off JPEG or PNG is refused ([`truncation`]).
pub fn decode_image_bytes(bytes: &[u8]) -> Result<image::DynamicImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    decode_checked(reader, bytes)
}

/// Decodes within the limits, then refuses a cut-off file ([`truncation`]): the size limit is
/// said first (a huge header alone is both), a decoder's own error is replaced by the truncation
/// when there is one (it says more).
fn decode_checked<R: std::io::BufRead + std::io::Seek>(
    reader: image::ImageReader<R>,
    bytes: &[u8],
) -> Result<image::DynamicImage, String> {
    match reader.format() {
        Some(image::ImageFormat::Png | image::ImageFormat::Jpeg) => {}
        Some(other) => {
            return Err(format!(
                "a {} image; this tool reads PNG or JPEG: convert it",
                other
                    .extensions_str()
                    .first()
                    .unwrap_or(&"?")
                    .to_uppercase()
            ))
        }
        // A JPEG or PNG cut off within its first bytes is still a cut-off file.
        None => {
            return Err(truncation(bytes).unwrap_or_else(|| {
                format!(
                    "not an image this tool reads (PNG or JPEG): {}",
                    describe_content(bytes)
                )
            }))
        }
    }
    let decoded = decode_limited(reader);
    match (&decoded, truncation(bytes)) {
        (Err(e), _) if e.starts_with("image is larger") => decoded,
        (_, Some(why)) => Err(why),
        _ => decoded,
    }
}

fn decode_limited<R: std::io::BufRead + std::io::Seek>(
    mut reader: image::ImageReader<R>,
) -> Result<image::DynamicImage, String> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE);
    limits.max_image_height = Some(MAX_IMAGE_SIDE);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!(
            "image is larger than this tool accepts (at most {MAX_IMAGE_SIDE} pixels a side and \
             {} MiB decoded): {e}",
            MAX_IMAGE_BYTES >> 20
        ),
        other => other.to_string(),
    })
}

/// What content that is neither PNG nor JPEG starts with, for an error message: empty, text
/// (its first line, up to 40 characters) or its first 8 bytes in hex.
fn describe_content(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "the content is empty".into();
    }
    const PNG_SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    if bytes.len() < PNG_SIGNATURE.len() && PNG_SIGNATURE.starts_with(bytes) {
        return format!(
            "a PNG cut off within its 8-byte signature ({} bytes); the file was cut off (an \
             interrupted download or copy?)",
            bytes.len()
        );
    }
    let head = &bytes[..bytes.len().min(64)];
    // A character cut by the 64-byte window still reads as text.
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    match text {
        Some(text) if text.chars().all(|c| !c.is_control() || c.is_whitespace()) => {
            let line: String = text.lines().next().unwrap_or("").chars().take(40).collect();
            format!("the content is text, starting `{}`", line.trim_end())
        }
        _ => {
            let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            format!(
                "the content is neither, starting with bytes {} (a PNG starts 89 50 4e 47, a JPEG ff d8 ff)",
                hex.join(" ")
            )
        }
    }
}

/// Samples read, and the bad ones that were skipped (with why).
#[derive(Debug, Default)]
pub struct Skipped {
    pub errors: Vec<DataError>,
}

impl Skipped {
    pub fn count(&self) -> usize {
        self.errors.len()
    }
}

/// Keeps the good items of a fallible sequence and collects the errors of the bad ones, for
/// data sets where a few broken samples should not stop the run.
pub fn skip_bad<T>(items: impl IntoIterator<Item = Result<T, DataError>>) -> (Vec<T>, Skipped) {
    let mut good = Vec::new();
    let mut skipped = Skipped::default();
    for item in items {
        match item {
            Ok(v) => good.push(v),
            Err(e) => {
                tracing::warn!(error = %e, "skipping bad sample");
                skipped.errors.push(e);
            }
        }
    }
    (good, skipped)
}

#[cfg(test)]
mod truncation_tests {
    use super::truncation;

    fn jpeg() -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(40, 24, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 77]));
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn whole_files_pass_cut_ones_are_named_and_trailers_are_not_read() {
        let j = jpeg();
        assert_eq!(truncation(&j), None);
        for cut in [j.len() - 1, j.len() - 2, j.len() / 2, 30] {
            let why = truncation(&j[..cut]).unwrap_or_else(|| panic!("cut at {cut} passed"));
            assert!(why.starts_with("truncated JPEG"), "{why}");
        }
        // A trailer after EOI (a motion photo's video, padding) holding FF DA and no FF D9.
        let mut trailer = j.clone();
        trailer.extend([0xFF, 0xDA, 0x00, 0x04, 0x11, 0x22, 0x33, 0x00, 0x00]);
        assert_eq!(truncation(&trailer), None);
        let mut png = Vec::new();
        image::RgbImage::from_fn(16, 16, |x, _| image::Rgb([x as u8, 0, 0]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(truncation(&png), None);
        assert!(truncation(&png[..png.len() - 5])
            .unwrap()
            .starts_with("truncated PNG"));
        assert!(truncation(&png[..png.len() / 2])
            .unwrap()
            .starts_with("truncated PNG"));
        let mut after = png.clone();
        after.extend(vec![7u8; 1000]);
        assert_eq!(truncation(&after), None, "data after IEND is not a cut");
        assert_eq!(
            truncation(b"hello"),
            None,
            "not a JPEG or PNG: the decoder says"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content that is neither PNG nor JPEG is described as what it is, whatever the file's
    /// name, and never through a decoder's complaint.
    #[test]
    fn content_that_is_no_image_is_said_to_be_text_empty_or_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let long_text = format!("{}é and more", "x".repeat(62));
        for (name, bytes, says) in [
            (
                "notes.jpg",
                b"hello world\nsecond line".to_vec(),
                "not an image this tool reads (PNG or JPEG): the content is text, starting `hello world`",
            ),
            ("empty.png", vec![], "the content is empty"),
            ("two.jpg", vec![0xff, 0xd8], "truncated JPEG: no end-of-image marker (FF D9) (2 bytes)"),
            ("sig.png", vec![0x89, b'P', b'N'], "a PNG cut off within its 8-byte signature (3 bytes)"),
            ("anim.jpg", b"GIF89a\x01\x00\x01\x00".to_vec(), "a GIF image; this tool reads PNG or JPEG: convert it"),
            (
                "blob.png",
                vec![0x00, 0x01, 0xfe, 0x7f, 0x10, 0x20, 0x30, 0x40, 0x50],
                "starting with bytes 00 01 fe 7f 10 20 30 40 (a PNG starts 89 50 4e 47",
            ),
            // The 64-byte window cuts the two-byte é: still text.
            ("cut.jpg", long_text.into_bytes(), "the content is text, starting `xxxx"),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let e = decode_image(&path).unwrap_err();
            assert!(e.contains(says), "{name}: {e}");
            assert!(!e.contains("Format error") && !e.contains("neither, starting with bytes ff d8"), "{name}: {e}");
            assert_eq!(decode_image_bytes(&bytes).unwrap_err(), e, "{name}");
            assert_eq!(image_dimensions(&path).unwrap_err(), e, "{name}");
        }
    }
}
