//! Where a synthetic data set is written: only into a new or empty folder, or with `force` over
//! an earlier synth output as a whole. It is rendered into a staging folder beside the target,
//! marked complete ([`MARKER`]) and renamed into place, so an interrupted run never leaves a
//! folder a reader would take as complete and two data sets are never mixed.

use std::path::{Path, PathBuf};

use super::SynthError;
use crate::atomic::{write_atomic, PathIoError};

/// File name of the marker a complete synth output holds (written last).
pub const MARKER: &str = ".dasgil-synth.json";

/// Checks that `out` may receive a new data set and creates the staging folder beside it.
pub fn staging(out: &Path, force: bool) -> Result<PathBuf, SynthError> {
    if out.exists() {
        if !out.is_dir() {
            return Err(SynthError::Options(format!(
                "--out {}: exists and is not a folder",
                out.display()
            )));
        }
        let empty = std::fs::read_dir(out)
            .map_err(|e| PathIoError::new("cannot list", out, e))?
            .next()
            .is_none();
        if !empty {
            match (force, out.join(MARKER).is_file()) {
                (true, true) => {}
                (false, true) => {
                    return Err(SynthError::Options(format!(
                        "--out {}: holds an earlier synth data set; add --force to replace it \
                         as a whole, or choose a new folder",
                        out.display()
                    )))
                }
                (_, false) => {
                    return Err(SynthError::Options(format!(
                        "--out {}: folder is not empty and is not a synth output; choose a new \
                         or empty folder (nothing in it was changed)",
                        out.display()
                    )))
                }
            }
        }
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "synth".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .map_err(|e| PathIoError::new("cannot create folder", &parent, e))?;
    // Unique per process and call: two renders of one data set never share a staging folder.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".{name}.partial-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir(&staging)
        .map_err(|e| PathIoError::new("cannot create folder", &staging, e))?;
    Ok(staging)
}

/// The kind (`dataset`, e.g. `kitti`) and image count of the complete synth data set in
/// `out`, from its marker; None when there is none (or its marker is unreadable).
pub fn earlier(out: &Path) -> Option<(String, u64)> {
    let text = std::fs::read_to_string(out.join(MARKER)).ok()?;
    let marker: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        marker["dataset"]
            .as_str()
            .unwrap_or("(unnamed)")
            .to_string(),
        marker["images"].as_u64().unwrap_or(0),
    ))
}

/// Whether `out` holds a complete synth data set (its marker is written last).
pub fn is_complete(out: &Path) -> bool {
    out.join(MARKER).is_file()
}

/// Like [`finish`] for a data set rendered on first use: when another process put `out` in
/// place meanwhile (two commands rendering the same named sequence at once), its copy is kept
/// and this one removed, so that a reader of the first copy never sees it moved away.
pub fn finish_unless_present(
    staging: &Path,
    out: &Path,
    marker: serde_json::Value,
) -> Result<(), SynthError> {
    write_marker(staging, marker)?;
    // rename(2) onto a non-empty folder fails: whoever renames first wins, atomically.
    match std::fs::rename(staging, out) {
        Ok(()) => Ok(()),
        Err(_) if out.join(MARKER).is_file() => {
            let _ = std::fs::remove_dir_all(staging);
            Ok(())
        }
        Err(e) => Err(PathIoError::new("cannot move into place", out, e).into()),
    }
}

/// Writes the marker (plus the format tag) that says `staging` holds a complete data set.
fn write_marker(staging: &Path, mut marker: serde_json::Value) -> Result<(), SynthError> {
    marker["format"] = "dasgil-synth/1".into();
    write_atomic(
        &staging.join(MARKER),
        serde_json::to_string_pretty(&marker)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(())
}

/// Marks the data set in `staging` complete (`marker` plus the format tag) and moves it to
/// `out`, replacing what [`staging`] allowed.
pub fn finish(staging: &Path, out: &Path, marker: serde_json::Value) -> Result<(), SynthError> {
    write_marker(staging, marker)?;
    let old = PathBuf::from(format!("{}-old", staging.display()));
    if out.exists() {
        std::fs::rename(out, &old).map_err(|e| PathIoError::new("cannot move aside", out, e))?;
    }
    std::fs::rename(staging, out)
        .map_err(|e| PathIoError::new("cannot move into place", out, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| PathIoError::new("cannot remove the replaced data set", &old, e))?;
    }
    Ok(())
}
