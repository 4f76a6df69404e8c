//! Reading the datasets' small text files line by line, with errors that say file, line, field,
//! expected and found.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::error::DataError;

/// How far a pose file's rotation matrix may be from orthonormal (largest entry of |RᵀR - I|):
/// the benchmarks print rotations to 6 or more digits (about 1e-6 off); a hand-edited one with
/// 3 decimals stays near 1e-3.
pub const ROTATION_TOLERANCE: f64 = 0.01;

/// A text file's content with its path, for parsing with located errors.
pub struct TextFile {
    pub path: PathBuf,
    pub text: String,
}

/// One non-empty line split into fields.
pub struct Line<'a> {
    pub path: &'a Path,
    /// 1-based line number.
    pub number: usize,
    pub raw: &'a str,
    pub fields: Vec<&'a str>,
    /// Whether it is the file's last line and no newline ends it (where a file cut short
    /// ends; a file written whole ends its last line).
    pub cut_off: bool,
}

impl TextFile {
    pub fn read(path: &Path) -> Result<Self, DataError> {
        if !path.exists() {
            return Err(DataError::missing(path, "a text file"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        // A UTF-8 byte-order mark (what Excel and Notepad put first) is no part of the header.
        let text = match text.strip_prefix('\u{feff}') {
            Some(rest) => rest.to_string(),
            None => text,
        };
        Ok(Self {
            path: path.to_path_buf(),
            text,
        })
    }

    /// Non-empty lines (comments starting with `comment` skipped if given), fields split by
    /// `sep` (None: any whitespace).
    pub fn lines(
        &self,
        sep: Option<char>,
        comment: Option<char>,
    ) -> impl Iterator<Item = Line<'_>> {
        // The final line, when something other than blanks follows the last newline.
        let last = (!self.text.ends_with('\n'))
            .then(|| self.text.lines().enumerate().last())
            .flatten()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, _)| i);
        self.text.lines().enumerate().filter_map(move |(i, raw)| {
            let trimmed = raw.trim_end_matches('\r');
            if trimmed.trim().is_empty()
                || comment.is_some_and(|c| trimmed.trim_start().starts_with(c))
            {
                return None;
            }
            let fields = match sep {
                Some(c) => trimmed.split(c).map(str::trim).collect(),
                None => trimmed.split_whitespace().collect(),
            };
            Some(Line {
                path: &self.path,
                number: i + 1,
                raw: trimmed,
                fields,
                cut_off: Some(i) == last,
            })
        })
    }

    /// Checks that the first line equals `expected` (whitespace-normalised).
    pub fn expect_header(&self, expected: &str) -> Result<(), DataError> {
        let first = self
            .text
            .lines()
            .next()
            .unwrap_or("")
            .trim_end_matches('\r');
        let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.text.trim().is_empty() {
            return Err(DataError::layout(
                &self.path,
                format!(
                    "empty ({} bytes{}): expected the header `{expected}` and rows below it (a \
                     copy or download that failed?)",
                    std::fs::metadata(&self.path).map_or(self.text.len() as u64, |m| m.len()),
                    if self.text.is_empty() {
                        ""
                    } else {
                        " of blanks"
                    }
                ),
            ));
        }
        if norm(first) != norm(expected) {
            return Err(DataError::Header {
                path: self.path.clone(),
                line: 1,
                expected: expected.to_string(),
                found: first.to_string(),
            });
        }
        Ok(())
    }
}

impl Line<'_> {
    pub fn expect_columns(&self, n: usize) -> Result<(), DataError> {
        if self.fields.len() != n {
            return Err(DataError::Columns {
                path: self.path.to_path_buf(),
                line: self.number,
                expected: n.to_string(),
                found: self.fields.len(),
                hint: if self.cut_off && self.fields.len() < n {
                    " (the file's last line, with no newline after it: the file looks cut \
                     short, e.g. a copy or download that stopped; copy it again, or delete that \
                     line)"
                        .into()
                } else {
                    String::new()
                },
            });
        }
        Ok(())
    }

    /// Field `index` parsed as T; `name` and `expected` describe it in errors.
    pub fn parse<T: FromStr>(
        &self,
        index: usize,
        name: &str,
        expected: &str,
    ) -> Result<T, DataError> {
        let found = self.fields.get(index).copied().unwrap_or("");
        found
            .parse()
            .map_err(|_| self.field_error(name, expected, found))
    }

    /// Fields `from..from + N` as f64; each named `names[i]` in errors.
    pub fn floats<const N: usize>(
        &self,
        from: usize,
        names: &[&str; N],
    ) -> Result<[f64; N], DataError> {
        let mut out = [0.0f64; N];
        for (i, name) in names.iter().enumerate() {
            out[i] = self.parse(from + i, name, "a number")?;
            if !out[i].is_finite() {
                return Err(self.field_error(name, "a finite number", self.fields[from + i]));
            }
        }
        Ok(out)
    }

    /// Checks that the row-major 3x3 `r` (fields `names`, as one field in errors) is a
    /// rotation: orthonormal within [`ROTATION_TOLERANCE`] (largest entry of |RᵀR - I|) and
    /// with determinant +1. A zero, scaled or mirrored matrix is a broken pose, not a rotation
    /// (it would reach the map and the node's priors as NaN or a skewed frame).
    pub fn expect_rotation(&self, r: [[f64; 3]; 3], names: &str) -> Result<(), DataError> {
        let m = nalgebra::Matrix3::from_fn(|i, j| r[i][j]);
        let dev = (m.transpose() * m - nalgebra::Matrix3::identity())
            .abs()
            .max();
        let det = m.determinant();
        if dev > ROTATION_TOLERANCE || det <= 0.0 {
            return Err(self.field_error(
                names,
                &format!(
                    "a rotation matrix (|RᵀR - I| <= {ROTATION_TOLERANCE} per entry, determinant +1)"
                ),
                &format!("largest |RᵀR - I| entry {dev:.3e}, determinant {det:.4}"),
            ));
        }
        Ok(())
    }

    pub fn field_error(&self, name: &str, expected: &str, found: &str) -> DataError {
        DataError::Field {
            path: self.path.to_path_buf(),
            line: self.number,
            field: name.to_string(),
            expected: expected.to_string(),
            found: found.to_string(),
        }
    }
}

/// Sorted entries of a folder (files and folders), by file name bytes.
pub fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v = Vec::new();
    for entry in rd {
        v.push(entry.map_err(|e| DataError::io(dir, e))?.path());
    }
    v.sort();
    Ok(v)
}

/// Sorted sub-folders of a folder.
pub fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| p.is_dir())
        .collect())
}

/// Image files directly in `dir`, sorted by name.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| is_image(p))
        .collect())
}

/// Image extensions the reference accepts (`.jpg .jpeg .png .ppm .bmp`, any case).
pub fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .map(|e| {
            matches!(
                e.to_ascii_lowercase().as_str(),
                "jpg" | "jpeg" | "png" | "ppm" | "bmp"
            )
        })
        .unwrap_or(false)
}

/// Every image file under `dir`, recursively, sorted by full path (the reference's
/// `make_dataset`).
pub fn images_recursive(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for p in sorted_entries(&d)? {
            if p.is_dir() {
                stack.push(p);
            } else if is_image(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What files copied by hand carry: a byte-order mark (read past), an empty file and a
    /// last line cut short (each said as such).
    #[test]
    fn a_byte_order_mark_is_read_past_and_empty_or_cut_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ins.csv");
        std::fs::write(&path, "\u{feff}timestamp,a\r\n1,2\r\n").unwrap();
        let f = TextFile::read(&path).unwrap();
        f.expect_header("timestamp,a").unwrap();
        let rows: Vec<Vec<&str>> = f.lines(Some(','), None).map(|l| l.fields).collect();
        assert_eq!(rows, vec![vec!["timestamp", "a"], vec!["1", "2"]]);

        std::fs::write(&path, "").unwrap();
        let e = TextFile::read(&path)
            .unwrap()
            .expect_header("timestamp,a")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ins.csv") && e.contains("empty (0 bytes): expected the header"),
            "{e}"
        );

        std::fs::write(&path, "1 2 3\n4 5 6\n7 8").unwrap();
        let f = TextFile::read(&path).unwrap();
        let errs: Vec<String> = f
            .lines(None, None)
            .filter_map(|l| l.expect_columns(3).err())
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("ins.csv:3: expected 3 columns, found 2 (the file's last line, with no newline after it: the file looks cut short"), "{}", errs[0]);
        // The error of line `nth` (0-based among non-empty lines) of a file of `text`.
        let error_of = |text: &str, nth: usize| {
            std::fs::write(&path, text).unwrap();
            TextFile::read(&path)
                .unwrap()
                .lines(None, None)
                .nth(nth)
                .unwrap()
                .expect_columns(3)
                .unwrap_err()
                .to_string()
        };
        // No such guess for: blanks after the last newline (the line before them ended as
        // written), a short line that is not the last, a last line that ends as written.
        for (text, nth) in [
            ("1 2 3\n4 5\n  ", 1),
            ("1 2\n4 5 6\n", 0),
            ("1 2 3\n4 5\n", 1),
        ] {
            let e = error_of(text, nth);
            assert!(e.ends_with("expected 3 columns, found 2"), "{text:?}: {e}");
        }
    }

    #[test]
    fn errors_name_file_line_field_expected_and_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("intrinsic.txt");
        std::fs::write(
            &path,
            "frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]\n0 0 725.0 7x5.0 620.5 187.0\n",
        )
        .unwrap();
        let f = TextFile::read(&path).unwrap();
        f.expect_header("frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]")
            .unwrap();
        let line = f.lines(None, None).nth(1).unwrap();
        line.expect_columns(6).unwrap();
        let e = line.floats(2, &["fx", "fy", "cx", "cy"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}:2: field `fy`: expected a number, found `7x5.0`",
                path.display()
            )
        );
        let e = f.expect_header("frame cameraID").unwrap_err();
        assert!(
            e.to_string()
                .contains(":1: header: expected `frame cameraID`"),
            "{e}"
        );
        let e = line.expect_columns(18).unwrap_err();
        assert!(
            e.to_string().ends_with(":2: expected 18 columns, found 6"),
            "{e}"
        );
    }
}
