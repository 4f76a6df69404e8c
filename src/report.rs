//! How the binaries print an error: the message, then each cause that adds something (many
//! library errors already quote their source in their own message).

/// The lines `error: ...` and `  caused by: ...` for `err`.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        // An I/O error in the words the project's messages quote it with, so that one quoted
        // already is not repeated in std's ("No such file or directory (os error 2)").
        let raw = cause.to_string();
        let text = match cause.downcast_ref::<std::io::Error>() {
            Some(io) => crate::error::io_words(io),
            None => raw.clone(),
        };
        if !last.contains(&text) && !last.contains(&raw) {
            out.push_str(&format!("\n  caused by: {text}"));
        }
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = Err::<(), _>(io)
            .context("cannot read a.png: No such file")
            .context("embedding a.png")
            .unwrap_err();
        assert_eq!(
            error_report(&err),
            "error: embedding a.png\n  caused by: cannot read a.png: No such file"
        );
    }

    #[test]
    fn an_io_error_quoted_in_the_projects_words_is_not_repeated_in_stds() {
        let io = std::fs::read("/nonexistent/dasgil/a.png").unwrap_err();
        let quoted = Err::<(), _>(io)
            .map_err(|e| crate::atomic::PathIoError::new("cannot read", "a.png".as_ref(), e))
            .context("embedding")
            .unwrap_err();
        assert_eq!(
            error_report(&quoted),
            "error: embedding\n  caused by: cannot read a.png: no such file or folder"
        );
        let bare = Err::<(), _>(std::fs::read("/nonexistent/dasgil/a.png").unwrap_err())
            .context("embedding")
            .unwrap_err();
        assert_eq!(
            error_report(&bare),
            "error: embedding\n  caused by: no such file or folder"
        );
    }
}
