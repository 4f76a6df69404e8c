//! Writing files so that a reader never sees half of one: write a temporary file beside the
//! target, flush it to disk, then rename it over the target. What was already at the path stays
//! intact until the new content is complete. The file gets the permissions of any newly
//! created file (0666 less the user's umask, e.g. 0644), not the temporary file's private 0600.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// An I/O failure with the path it concerns.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {}", crate::error::io_words(source))]
pub struct PathIoError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PathIoError {
    pub fn new(action: &'static str, path: &Path, source: io::Error) -> Self {
        Self {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// 0666: the kernel applies the umask when the file is created, as for any new file.
fn new_file_permissions() -> std::fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    std::fs::Permissions::from_mode(0o666)
}

/// The same file (same device and inode, so through symlinks and hard links too)?
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// An output that would overwrite one of the inputs.
#[derive(Debug, thiserror::Error)]
#[error("refusing to write {output_flag} {output}: it is the same file as {input_flag} {input}; choose another output path")]
pub struct SameFileError {
    pub output_flag: String,
    pub output: PathBuf,
    pub input_flag: String,
    pub input: PathBuf,
}

/// Refuses `output` when it is the same file as any of `inputs` ((flag, path) pairs).
pub fn refuse_overwriting_inputs(
    output: (&str, &Path),
    inputs: &[(&str, &Path)],
) -> Result<(), SameFileError> {
    for (flag, input) in inputs {
        if same_file(output.1, input) {
            return Err(SameFileError {
                output_flag: output.0.to_string(),
                output: output.1.to_path_buf(),
                input_flag: flag.to_string(),
                input: input.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The nearest part of `path`'s folders that exists, when it is not a folder (a file, or a link
/// that leads nowhere): nothing can be made below it.
pub fn blocked_by(path: &Path) -> Option<&Path> {
    path.ancestors()
        .skip(1)
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| std::fs::symlink_metadata(a).is_ok())
        .filter(|a| !a.is_dir())
}

/// When `--out` cannot become a folder: a link that leads nowhere (to a folder that does not
/// exist, or round a loop of links; an output neither follows nor removes it), or a path
/// through something that is not a folder (`--out notes.txt/run`). The refusal, naming what
/// is in the way; None when `--out` is usable as far as its path goes.
pub fn unusable_out(out: &Path) -> Option<String> {
    if let Some(blocker) = blocked_by(out) {
        return Some(format!(
            "--out {}: {} is not a folder, so nothing can be made inside it; choose another \
             --out (nothing was changed)",
            out.display(),
            blocker.display()
        ));
    }
    let link = std::fs::read_link(out).ok()?;
    let (what, fix) = match std::fs::metadata(out) {
        Ok(_) => return None,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => (
            "a link that leads round a loop of links",
            "point it at a folder",
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            ("a link to a folder that does not exist", "make that folder")
        }
        Err(e) => {
            return Some(format!(
                "--out {}: a link ({}) that cannot be followed: {e}; choose another --out \
                 (nothing was changed)",
                out.display(),
                link.display()
            ))
        }
    };
    Some(format!(
        "--out {}: {what} ({}); {fix} or choose another --out (nothing was changed)",
        out.display(),
        link.display()
    ))
}

/// The temporary files and staging folders this process is writing, removed by the handler
/// of [`remove_unfinished_on_interrupt`] when Ctrl-C or SIGTERM ends the command.
static UNFINISHED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A temporary file or staging folder being written: listed for the interrupt handler while
/// this lives. Whatever is at the path when a signal arrives is removed (a folder renamed into
/// place before then is no longer there).
#[derive(Debug)]
pub struct Unfinished(PathBuf);

impl Unfinished {
    /// Lists `path` before it is made (a signal in between finds nothing there to remove).
    pub fn new(path: &Path) -> Self {
        unfinished().push(path.to_path_buf());
        Self(path.to_path_buf())
    }

    /// Runs `make` (which makes a file or folder and returns it with its path) with the list
    /// held, then lists the path: no signal is handled between the making and the listing.
    /// `make` must not list anything itself.
    pub fn made<T>(make: impl FnOnce() -> io::Result<(T, PathBuf)>) -> io::Result<(T, Self)> {
        let mut list = unfinished();
        let (made, path) = make()?;
        list.push(path.clone());
        Ok((made, Self(path)))
    }
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        let mut list = unfinished();
        if let Some(i) = list.iter().rposition(|p| p == &self.0) {
            list.swap_remove(i);
        }
    }
}

/// `std::fs::rename` while Ctrl-C's handler cannot be removing what is listed: a listed
/// staging folder renamed into place is then either removed whole before the rename (which
/// then fails) or not touched (no handler opens it, then deletes through it at its new place).
pub fn rename_into_place(from: &Path, to: &Path) -> io::Result<()> {
    let _held = unfinished();
    std::fs::rename(from, to)
}

/// Several renames as one step for Ctrl-C's handler (it waits until all are done): e.g. a
/// run's outputs moved from its staging folder into the output folder together.
pub fn rename_all_into_place(moves: &[(PathBuf, PathBuf)]) -> Result<(), PathIoError> {
    let _held = unfinished();
    for (from, to) in moves {
        std::fs::rename(from, to).map_err(|e| PathIoError::new("cannot move into place", to, e))?;
    }
    Ok(())
}

/// For commands without a Ctrl-C handler of their own (build-map, evaluate, localize, embed,
/// import-checkpoint): SIGINT or SIGTERM removes the [`Unfinished`] temporary files and staging
/// folders (a rename into place in progress finishes first), says so, and ends the process by
/// the signal (a shell's `$?`: 130 for Ctrl-C, 143 for SIGTERM); a second signal ends it at
/// once. Outputs already renamed into place stay; what an output path held before its new
/// file was complete is untouched.
pub fn remove_unfinished_on_interrupt(command: &'static str) -> io::Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::spawn(move || {
        let Some(sig) = signals.forever().next() else {
            return;
        };
        // A second Ctrl-C ends the process at once, whatever this handler is waiting for.
        // SAFETY: restores the default disposition of two signals.
        unsafe {
            libc::signal(SIGINT, libc::SIG_DFL);
            libc::signal(SIGTERM, libc::SIG_DFL);
        }
        // Held to the end: no rename into place starts after this.
        let list = unfinished();
        let mut removed = Vec::new();
        for p in list.iter() {
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                continue;
            };
            // Other threads may still write into a staging folder: removed until it stays gone.
            for _ in 0..20 {
                let _ = if meta.is_dir() {
                    std::fs::remove_dir_all(p)
                } else {
                    std::fs::remove_file(p)
                };
                if std::fs::symlink_metadata(p).is_err() {
                    removed.push(p.display().to_string());
                    break;
                }
            }
        }
        let name = if sig == SIGINT { "Ctrl-C" } else { "SIGTERM" };
        let said = if removed.is_empty() {
            format!("{command}: interrupted ({name}); no file was being written")
        } else {
            format!(
                "{command}: interrupted ({name}); removed what was being written: {}; outputs \
                 already in place stay",
                removed.join(", ")
            )
        };
        // Said without panicking when stderr is gone (a pipe closed by the same Ctrl-C).
        let _ = writeln!(io::stderr(), "{said}");
        // Ended by the signal itself (its default action, as before any handler): a shell
        // running a loop of commands stops at Ctrl-C, as it does for a program that does not
        // catch it (`$?` is 128 + the signal: 130, 143). Not by exit handlers, which other
        // threads (libtorch's) may be using.
        // SAFETY: the disposition is the default (above); raise only sends the signal.
        unsafe {
            libc::raise(sig);
            libc::_exit(128 + sig)
        };
    });
    Ok(())
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PathIoError> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// Like [`write_atomic`], with the content produced by `fill` writing into a buffered writer.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> Result<(), PathIoError>
where
    F: FnOnce(&mut dyn Write) -> io::Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| PathIoError::new("cannot create folder", &dir, e))?;
    let (tmp, _listed) = Unfinished::made(|| {
        let tmp = tempfile::Builder::new()
            .prefix(".dasgil-tmp-")
            .permissions(new_file_permissions())
            .tempfile_in(&dir)?;
        let path = tmp.path().to_path_buf();
        Ok((tmp, path))
    })
    .map_err(|e| PathIoError::new("cannot create a temporary file in", &dir, e))?;
    {
        let mut w = io::BufWriter::new(tmp.as_file());
        fill(&mut w).map_err(|e| PathIoError::new("cannot write", path, e))?;
        w.flush()
            .map_err(|e| PathIoError::new("cannot write", path, e))?;
    }
    tmp.as_file()
        .sync_all()
        .map_err(|e| PathIoError::new("cannot sync", path, e))?;
    // Not while the interrupt handler removes what is unfinished.
    let held = unfinished();
    tmp.persist(path)
        .map_err(|e| PathIoError::new("cannot rename into place", path, e.error))?;
    drop(held);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.txt");
        write_atomic(&path, b"first").unwrap();
        write_atomic(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn written_files_get_the_umask_not_the_private_temporary_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"x").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        // What a plain create gives under this process's umask.
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, b"x").unwrap();
        let expected = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, expected);
        assert_ne!(mode, 0o600, "the temporary file's private mode leaked");
    }

    #[cfg(unix)]
    #[test]
    fn the_same_file_is_recognised_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&a, &hard).unwrap();
        let sym = dir.path().join("sym");
        std::os::unix::fs::symlink(&a, &sym).unwrap();
        assert!(same_file(&a, &hard) && same_file(&a, &sym));
        assert!(!same_file(&a, &dir.path().join("missing")));
        let e = refuse_overwriting_inputs(("output", &sym), &[("input", &a)]).unwrap_err();
        assert!(e.to_string().contains("same file as input"), "{e}");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomic(&path, b"kept").unwrap();
        let err = write_atomic_with(&path, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("out.txt"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"kept");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
