//! How the binaries print an error: the message, then each cause that adds something (many
//! library errors already quote their source in their own message).

/// The lines `error: ...` and `  caused by: ...` for `err`.
pub fn error_report(err: &anyhow::Error) -> String {
    let mut out = format!("error: {err}");
    let mut last = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !last.contains(&text) {
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
}
