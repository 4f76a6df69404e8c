//! Where a synthetic data set is written: only into a new or empty folder, or with `force` over
//! an earlier synth output as a whole. It is rendered into a staging folder beside the target,
//! marked complete ([`MARKER`]) and renamed into place, so an interrupted run never leaves a
//! folder a reader would take as complete and two data sets are never mixed.

use std::path::{Path, PathBuf};

use super::SynthError;
use crate::atomic::{write_atomic, PathIoError};

/// File name of the marker a complete synth output holds (written last).
pub const MARKER: &str = ".dasgil-synth.json";

/// The marker's format tag.
const FORMAT: &str = "dasgil-synth/1";
/// A staging folder's lock file: held (flock) by the process that renders into it.
const LOCK: &str = ".dasgil-staging.lock";
/// The files a complete output holds, one relative path a line (what `--force` may replace).
const MANIFEST: &str = ".dasgil-synth-files.txt";

/// `out` as the file system names it: absolute, links and `.`/`..` resolved as far as it
/// exists (`--out .` is the current folder by its own name, so it can be renamed into place,
/// and `--force` through a link replaces what the link points at).
pub fn resolved(out: &Path) -> PathBuf {
    if let Ok(p) = out.canonicalize() {
        return p;
    }
    let absolute = || std::path::absolute(out).unwrap_or_else(|_| out.to_path_buf());
    match (out.parent(), out.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map(|p| p.join(name))
                .unwrap_or_else(|_| absolute())
        }
        _ => absolute(),
    }
}

/// Every file below `dir` (links counted as files, not followed), as a sorted list of paths
/// relative to it; the marker, its manifest and the lock left out.
fn contents(dir: &Path) -> Result<Vec<String>, PathIoError> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries: Vec<std::fs::DirEntry> = std::fs::read_dir(&d)
            .and_then(|entries| entries.collect())
            .map_err(|e| PathIoError::new("cannot list", &d, e))?;
        for entry in entries {
            let kind = entry
                .file_type()
                .map_err(|e| PathIoError::new("cannot read", &entry.path(), e))?;
            let path = entry.path();
            if kind.is_dir() {
                stack.push(path);
            } else if !(d == dir
                && [MARKER, MANIFEST, LOCK].contains(&&*entry.file_name().to_string_lossy()))
            {
                let rel = path.strip_prefix(dir).unwrap_or(&path);
                files.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// What `--force` would lose besides the earlier data set: files its manifest does not list,
/// named. None when there are none (or the output, from before manifests, cannot tell).
fn added_since(out: &Path, marker: &serde_json::Value) -> Result<Option<String>, PathIoError> {
    let Ok(listed) = std::fs::read_to_string(out.join(MANIFEST)) else {
        // Outputs of 2026-12-07's first versions record a file count (and top-level names)
        // in the marker instead.
        let Some(written) = marker["files"].as_u64() else {
            return Ok(None);
        };
        let files = contents(out)?;
        let top: Vec<&str> = marker["entries"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let unlisted = files
            .iter()
            .filter(|f| !top.is_empty() && !top.iter().any(|t| f.split('/').next() == Some(*t)))
            .count();
        return Ok((files.len() as u64 > written || unlisted > 0).then(|| {
            format!(
                "{} files where it wrote {written} (files synth did not write)",
                files.len()
            )
        }));
    };
    let listed: std::collections::HashSet<&str> = listed.lines().collect();
    let extra: Vec<String> = contents(out)?
        .into_iter()
        .filter(|f| !listed.contains(f.as_str()))
        .collect();
    if extra.is_empty() {
        return Ok(None);
    }
    let more = extra.len().saturating_sub(5);
    Ok(Some(format!(
        "{}{} that synth did not write",
        extra[..extra.len().min(5)].join(", "),
        if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        }
    )))
}

/// Takes an exclusive flock on `file` without waiting; false when another process holds it.
fn try_lock(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor the caller owns; closing it releases the lock.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

/// Locks `staging`'s lock file for as long as this process lives (the handle is kept in a
/// process-wide list): [`remove_stale_staging`] then leaves the folder alone, on any host
/// that shares the folder.
fn hold_staging_lock(staging: &Path) -> Result<(), PathIoError> {
    static HELD: std::sync::Mutex<Vec<std::fs::File>> = std::sync::Mutex::new(Vec::new());
    let path = staging.join(LOCK);
    let file =
        std::fs::File::create(&path).map_err(|e| PathIoError::new("cannot create", &path, e))?;
    if !try_lock(&file) {
        return Err(PathIoError::new(
            "cannot lock",
            &path,
            std::io::Error::last_os_error(),
        ));
    }
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(file);
    Ok(())
}

/// Whether a staging folder was left by a run that is gone: its lock file exists and can be
/// locked (no process holds it, on any host that shares the folder); without a lock file (a
/// run stopped before making it, an interrupted run's last write, or the `-old` folder of an
/// interrupted replace) when the process of the name's PID is gone on this host.
pub(crate) fn abandoned(dir: &Path, pid: libc::pid_t) -> bool {
    match std::fs::File::open(dir.join(LOCK)) {
        Ok(f) => try_lock(&f),
        Err(_) => {
            // SAFETY: kill with signal 0 only asks whether the process exists.
            let alive = unsafe { libc::kill(pid, 0) } == 0;
            !alive && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
        }
    }
}

/// Staging folders beside `out` (`.NAME.partial-PID-N`, and `...-old` for an earlier output
/// moved aside) left by runs that are gone ([`abandoned`]): removed, and said. An earlier
/// output moved aside whose replacement never arrived (`out` missing) is put back instead.
fn remove_stale_staging(parent: &Path, name: &str, out: &Path) {
    sweep_staging(parent, Some((name, out)));
}

/// The staging folders of every output in a folder of cached outputs (`$DASGIL_DATA`, its
/// `bags/`) left by runs that are gone, whatever options named them: removed, and said, like
/// [`remove_stale_staging`] does for one output. A run interrupted with options that are not
/// used again would otherwise leave its half-written copy there for good.
pub fn remove_stale_staging_in(cache: &Path) {
    sweep_staging(cache, None);
}

/// `only`: the one output (its name and path) whose staging folders to look at; None: all.
fn sweep_staging(parent: &Path, only: Option<(&str, &Path)>) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        // .NAME.partial-PID-N or .NAME.partial-PID-N-old, digits only.
        let Some((name, rest)) = file
            .strip_prefix('.')
            .and_then(|f| f.rsplit_once(".partial-"))
        else {
            continue;
        };
        if name.is_empty() || only.is_some_and(|(n, _)| n != name) {
            continue;
        }
        let out = match only {
            Some((_, out)) => out.to_path_buf(),
            None => parent.join(name),
        };
        let out = out.as_path();
        let parts = rest.split('-').collect::<Vec<_>>();
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        let aside = parts.len() == 3 && parts[2] == "old";
        if !((parts.len() == 2 || aside) && digits(parts[0]) && digits(parts[1])) {
            continue;
        }
        let Some(pid) = parts[0].parse::<libc::pid_t>().ok().filter(|&p| p > 0) else {
            continue;
        };
        let dir = entry.path();
        // Folders only (a link of that name is not ours).
        if !std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) || !abandoned(&dir, pid) {
            continue;
        }
        if aside && !out.exists() && std::fs::rename(&dir, out).is_ok() {
            tracing::warn!(
                "{}: put back from {}, where an interrupted --force had moved it aside",
                out.display(),
                dir.display()
            );
        } else if std::fs::remove_dir_all(&dir).is_ok() {
            tracing::info!(
                "removed {}: a staging folder left by an interrupted run (process {pid})",
                dir.display()
            );
        }
    }
}

/// Whether `out` may receive a new data set: new, empty, or (with `force`) an earlier synth
/// output that holds nothing synth did not write.
fn check_out(out: &Path, force: bool) -> Result<(), SynthError> {
    if let Some(refusal) = crate::atomic::unusable_out(out) {
        return Err(SynthError::Options(refusal));
    }
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
            let marker = read_marker(out).filter(|m| m["format"] == FORMAT);
            match (force, marker) {
                (true, Some(m)) => {
                    if let Some(added) = added_since(out, &m)? {
                        return Err(SynthError::Options(format!(
                            "--out {}: holds an earlier synth data set and also {added}; \
                             --force replaces the folder as a whole: move what you want to \
                             keep out of it, then run again (nothing was changed)",
                            out.display()
                        )));
                    }
                }
                (false, Some(_)) => {
                    return Err(SynthError::Options(format!(
                        "--out {}: holds an earlier synth data set; add --force to replace it \
                         as a whole, or choose a new folder",
                        out.display()
                    )))
                }
                (_, None) => {
                    let why = if out.join(MARKER).exists() {
                        format!(
                            " (its {MARKER} is not a synth marker: expected JSON with format \
                             {FORMAT})"
                        )
                    } else {
                        String::new()
                    };
                    return Err(SynthError::Options(format!(
                        "--out {}: folder is not empty and is not a synth output{why}; choose \
                         a new or empty folder (nothing in it was changed)",
                        out.display()
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Checks that `out` may receive a new data set and creates the staging folder beside it
/// (`out` as [`resolved`] gives it, so that its parent is where it lives); staging folders
/// that interrupted runs left there are removed first.
pub fn staging(
    out: &Path,
    force: bool,
) -> Result<(PathBuf, crate::atomic::Unfinished), SynthError> {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "synth".into());
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // First, so that an earlier output put back is checked like any other.
    remove_stale_staging(&parent, &name, out);
    check_out(out, force)?;
    std::fs::create_dir_all(&parent)
        .map_err(|e| PathIoError::new("cannot create folder", &parent, e))?;
    // Unique per process and call: two renders of one data set never share a staging folder.
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let staging = parent.join(format!(".{name}.partial-{}-{call}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    // Listed as it is made: Ctrl-C's handler (atomic::remove_unfinished_on_interrupt) removes
    // it, whenever the signal comes.
    let listed = crate::atomic::Unfinished::new(&staging);
    std::fs::create_dir(&staging)
        .map_err(|e| PathIoError::new("cannot create folder", &staging, e))?;
    hold_staging_lock(&staging)?;
    Ok((staging, listed))
}

/// The marker of the complete output in `out`, parsed; None when there is none or it cannot
/// be read as JSON.
pub fn read_marker(out: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(out.join(MARKER)).ok()?;
    serde_json::from_str(&text).ok()
}

/// What `out` holds, in words, for a `--force` that replaces it: "synth kitti data set (3
/// images)", "rosbag2 frames output"; with the kind (`dataset`) when the marker names one.
/// None when `out` holds no complete output.
pub fn earlier(out: &Path) -> Option<(String, Option<String>)> {
    let marker = read_marker(out)?;
    let kind = marker["dataset"].as_str().map(str::to_string);
    let images = marker["images"]
        .as_u64()
        .map(|n| format!(" ({n} images)"))
        .unwrap_or_default();
    let words = match &kind {
        Some(k) if ["vkitti2", "kitti", "cmu", "robotcar"].contains(&k.as_str()) => {
            format!("synth {k} data set{images}")
        }
        Some(k) => format!("{k} output{images}"),
        None => format!("output{images}"),
    };
    Some((words, kind))
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
    match crate::atomic::rename_into_place(staging, out) {
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
    marker["format"] = FORMAT.into();
    // The lock was the staging folder's, not the data set's (this process keeps holding it,
    // unlinked, until it exits).
    let lock = staging.join(LOCK);
    match std::fs::remove_file(&lock) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(PathIoError::new("cannot remove", &lock, e).into())
        }
        _ => {}
    }
    // What --force may replace later without losing anything else (added_since).
    let files = contents(staging)?;
    marker["files"] = files.len().into();
    let mut listing = files.join("\n");
    listing.push('\n');
    write_atomic(&staging.join(MANIFEST), listing.as_bytes())?;
    write_atomic(
        &staging.join(MARKER),
        serde_json::to_string_pretty(&marker)
            .unwrap_or_default()
            .as_bytes(),
    )?;
    Ok(())
}

/// Marks the data set in `staging` complete (`marker` plus the format tag) and moves it to
/// `out`, replacing what [`staging`] allowed (checked again first).
pub fn finish(
    staging: &Path,
    out: &Path,
    marker: serde_json::Value,
    force: bool,
) -> Result<(), SynthError> {
    write_marker(staging, marker)?;
    // What [`staging`] allowed may have changed while rendering (a file put into --out):
    // checked again, and on refusal the new data set is kept under a name of its own.
    if let Err(e) = check_out(out, force) {
        // OUT.new-PID, or -2, -3, ... when that is taken (a name of its own, never a staging
        // name, so no later run removes it).
        let pid = std::process::id();
        let kept = (1..100).find_map(|n| {
            let mut name = out.as_os_str().to_os_string();
            name.push(if n == 1 {
                format!(".new-{pid}")
            } else {
                format!(".new-{pid}-{n}")
            });
            let kept = PathBuf::from(name);
            (!kept.exists() && std::fs::rename(staging, &kept).is_ok()).then_some(kept)
        });
        return Err(SynthError::Options(match kept {
            Some(kept) => format!(
                "{e} (it changed while rendering); the new data set is complete in {}",
                kept.display()
            ),
            None => format!(
                "{e} (it changed while rendering); the new data set is complete in {} (it \
                 could not be renamed: move it before running synth into {} again, which \
                 removes it)",
                staging.display(),
                out.display()
            ),
        }));
    }
    let old = PathBuf::from(format!("{}-old", staging.display()));
    if out.exists() {
        std::fs::rename(out, &old).map_err(|e| PathIoError::new("cannot move aside", out, e))?;
    }
    crate::atomic::rename_into_place(staging, out)
        .map_err(|e| PathIoError::new("cannot move into place", out, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)
            .map_err(|e| PathIoError::new("cannot remove the replaced data set", &old, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file put into --out while the render ran is kept, and so is the render (beside it).
    #[test]
    fn a_file_put_into_out_while_rendering_keeps_both() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let (staged, _listed) = staging(&out, false).unwrap();
        assert!(staged.join(LOCK).is_file());
        std::fs::write(staged.join("a.png"), "x").unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let e = finish(
            &staged,
            &out,
            serde_json::json!({"dataset": "kitti"}),
            false,
        )
        .unwrap_err()
        .to_string();
        let kept = dir.path().join(format!("out.new-{}", std::process::id()));
        assert!(
            e.contains("(it changed while rendering); the new data set is complete in")
                && e.contains(&kept.display().to_string()),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine"
        );
        assert!(kept.join("a.png").is_file() && kept.join(MARKER).is_file());
        assert!(!kept.join(LOCK).exists() && !staged.exists());
        assert_eq!(
            std::fs::read_to_string(kept.join(MANIFEST)).unwrap(),
            "a.png\n"
        );
    }

    /// An output of the first versions (a file count and names in the marker, no manifest)
    /// keeps --force from taking a file the user added.
    #[test]
    fn an_output_without_manifest_is_checked_by_its_markers_count() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("a.png"), "x").unwrap();
        let marker = serde_json::json!({"format": FORMAT, "files": 1, "entries": ["a.png"]});
        std::fs::write(out.join(MARKER), marker.to_string()).unwrap();
        let (staged, _listed) = staging(&out, true).unwrap();
        std::fs::remove_dir_all(staged).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let e = staging(&out, true).unwrap_err().to_string();
        assert!(e.contains("2 files where it wrote 1"), "{e}");
    }
}
