//! serde_yaml's errors in a user's words. A YAML file a user writes (a `--config` for `train`,
//! a `--sequences` file) is read with serde, whose type errors speak Rust ("invalid type:
//! string \"abc\", expected f64 at line 29 column 15"); [`explain`] says the same as the rest
//! of the project's errors do: the field, what was expected and what was found ("field
//! `lr_generator`: expected a number, found the text \"abc\""). The caller puts the file and
//! the line (`serde_yaml::Error::location`) in front, so the location serde appends at the
//! end is left out (a syntax error's message keeps the locations libyaml writes within it).

/// The message of a YAML (de)serialization error, without serde's trailing location, a type or
/// value mismatch worded as "field `F`: expected E, found V"; other errors (unknown or missing
/// fields, syntax) keep serde's wording, which already names what it found.
pub fn explain(e: &serde_yaml::Error) -> String {
    explain_with(e, |_| None)
}

/// As [`explain`], with what a field accepts in the caller's words (`expected("batch")`:
/// "1 to 64") instead of its type's ("a whole number, 0 or more"), where it has them. The
/// field is named as in the file, list positions left out (`triplet[0].margin` is
/// `triplet.margin`).
pub fn explain_with(e: &serde_yaml::Error, expected: impl Fn(&str) -> Option<String>) -> String {
    let mut message = e.to_string();
    if let Some(at) = e.location() {
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        if let Some(rest) = message.strip_suffix(&suffix) {
            message = rest.to_string();
        }
    }
    mismatch(&message, &expected).unwrap_or_else(|| with_nearest_field(message))
}

/// serde's "unknown field `lamda_seg`, expected one of `a`, `b`, ..." with the nearest
/// expected name said first, when one is near (a typo: at most a third of the name's letters,
/// and at least one, edited; `step` is not near `seed`).
fn with_nearest_field(message: String) -> String {
    let Some(at) = message.find("unknown field `") else {
        return message;
    };
    let rest = &message[at + "unknown field `".len()..];
    let Some((name, rest)) = rest.split_once('`') else {
        return message;
    };
    let nearest = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(d, _)| *d <= (name.chars().count() / 3).max(1))
        .min();
    match nearest {
        Some((_, k)) => message.replacen(
            &format!("unknown field `{name}`,"),
            &format!("unknown field `{name}` (did you mean `{k}`?),"),
            1,
        ),
        None => message,
    }
}

/// As [`explain_with`], for an error in `text`: a line the error is at that holds a tab (YAML
/// indents with spaces only; libyaml says "found character that cannot start any token") is
/// named as the cause.
pub fn explain_in(
    text: &str,
    e: &serde_yaml::Error,
    expected: impl Fn(&str) -> Option<String>,
) -> String {
    let message = explain_with(e, expected);
    let tab = e
        .location()
        .and_then(|l| text.lines().nth(l.line().checked_sub(1)?))
        .is_some_and(|l| l.contains('\t'));
    if tab {
        format!("{message} (the line holds a tab: YAML indents with spaces only)")
    } else {
        message
    }
}

/// The line to name for `e`: where libyaml found the error, or, for a key without its `:`
/// ("could not find expected ':' ... while scanning a simple key at line N"), the key's line N
/// (libyaml notices the missing colon only on the line after it).
pub fn error_line(e: &serde_yaml::Error) -> Option<usize> {
    let message = e.to_string();
    let key = "while scanning a simple key at line ";
    let simple_key = message.find(key).and_then(|at| {
        let rest = &message[at + key.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    simple_key.or_else(|| e.location().map(|l| l.line()))
}

/// "path: invalid type: X, expected T" (or "invalid value: ...", "invalid length N, ...",
/// "unknown variant `V`, ...") in the project's words.
fn mismatch(message: &str, expected: &impl Fn(&str) -> Option<String>) -> Option<String> {
    // The earliest of the kinds: a value quoted in the message cannot be taken for one.
    let (at, kind) = [
        "invalid type: ",
        "invalid value: ",
        "invalid length ",
        "unknown variant ",
    ]
    .iter()
    .filter_map(|kind| message.find(kind).map(|at| (at, *kind)))
    .min()?;
    let path = message[..at].trim_end().trim_end_matches(':');
    let (found, wanted) = message[at + kind.len()..].rsplit_once(", expected ")?;
    let found = match kind {
        "invalid length " => format!("a list of {found}"),
        "unknown variant " => found.to_string(),
        _ => found_words(found),
    };
    let field = unindexed(path);
    let wanted = expected(&field).unwrap_or_else(|| expected_words(wanted));
    let field = if path.is_empty() {
        String::new()
    } else {
        format!("field `{field}`: ")
    };
    Some(format!("{field}expected {wanted}, found {found}"))
}

/// A serde path without its list positions: `triplet[0].margin` -> `triplet.margin`.
fn unindexed(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0usize;
    for c in path.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// serde's name of the type a field holds, as a user would write it.
fn expected_words(expected: &str) -> String {
    match expected {
        "f64" | "f32" => "a number".into(),
        "usize" | "u64" | "u32" | "u16" | "u8" => "a whole number, 0 or more".into(),
        "isize" | "i64" | "i32" | "i16" | "i8" => "a whole number".into(),
        "a boolean" => "true or false".into(),
        "a string" | "a borrowed string" | "path string" => "text".into(),
        "a sequence" => "a list".into(),
        e if e.starts_with("struct ") || e == "a map" => "a mapping (`key: value` lines)".into(),
        e if e.starts_with("an array of length ") => {
            format!("a list of {} values", &e["an array of length ".len()..])
        }
        e => e.into(),
    }
}

/// serde's description of the value a file holds, as the file writes it.
fn found_words(found: &str) -> String {
    // A whole number too large for any integer type: serde says which it tried.
    let found = found
        .strip_suffix(" as u128")
        .or_else(|| found.strip_suffix(" as i128"))
        .unwrap_or(found);
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|v| v.strip_prefix('`'))
            .and_then(|v| v.strip_suffix('`'))
            .map(str::to_string)
    };
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the text {s}");
    }
    for prefix in ["integer ", "floating point ", "boolean ", "character "] {
        if let Some(v) = quoted(prefix) {
            return v;
        }
    }
    match found {
        "sequence" => "a list".into(),
        "map" => "a mapping".into(),
        "unit value" => "nothing (an empty value)".into(),
        f => f.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Layer {
        margin: f64,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    enum Kind {
        FD,
        CD,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        kind: Option<Kind>,
        rate: Option<f64>,
        batch: Option<usize>,
        on: Option<bool>,
        betas: Option<[f64; 2]>,
        layers: Option<Vec<Layer>>,
    }

    fn error_of(text: &str) -> (Option<usize>, String) {
        let e = serde_yaml::from_str::<File>(text).unwrap_err();
        (e.location().map(|l| l.line()), explain(&e))
    }

    #[test]
    fn an_unknown_field_near_a_known_one_says_which() {
        let e = serde_yaml::from_str::<File>("rat: 0.5\n").unwrap_err();
        let m = explain(&e);
        assert!(
            m.starts_with("unknown field `rat` (did you mean `rate`?), expected"),
            "{m}"
        );
        for far in ["velocity: 0.5\n", "bat: 1\n"] {
            let e = serde_yaml::from_str::<File>(far).unwrap_err();
            assert!(!explain(&e).contains("did you mean"), "{}", explain(&e));
        }
    }

    #[test]
    fn a_key_without_its_colon_is_named_at_its_own_line() {
        // libyaml notices the missing ':' of line 2 on line 3.
        let e = serde_yaml::from_str::<File>("rate: 0.5\nbatch 4\non: true\n").unwrap_err();
        assert_eq!(e.location().map(|l| l.line()), Some(3), "{e}");
        assert_eq!(error_line(&e), Some(2));
        let e = serde_yaml::from_str::<File>("rate: [1\n").unwrap_err();
        assert_eq!(error_line(&e), e.location().map(|l| l.line()));
    }

    #[test]
    fn type_and_value_errors_name_the_field_what_was_expected_and_found() {
        assert_eq!(
            error_of("batch: 2\nrate: 2e-3x\n"),
            (
                Some(2),
                "field `rate`: expected a number, found the text \"2e-3x\"".into()
            )
        );
        assert_eq!(
            error_of("batch: -3\n").1,
            "field `batch`: expected a whole number, 0 or more, found -3"
        );
        assert_eq!(
            error_of("batch: 2.5\n").1,
            "field `batch`: expected a whole number, 0 or more, found 2.5"
        );
        assert_eq!(
            error_of("on: yes\n").1,
            "field `on`: expected true or false, found the text \"yes\""
        );
        assert_eq!(
            error_of("betas: [0.5]\n").1,
            "field `betas`: expected a list of 2 values, found a list of 1"
        );
        assert_eq!(
            error_of("layers:\n  - {margin: big}\n"),
            (
                Some(2),
                "field `layers.margin`: expected a number, found the text \"big\"".into()
            )
        );
        assert_eq!(
            error_of("rate: [1, 2]\n").1,
            "field `rate`: expected a number, found a list"
        );
        assert_eq!(
            error_of("batch: 99999999999999999999999\n").1,
            "field `batch`: expected a whole number, 0 or more, found 99999999999999999999999"
        );
        assert_eq!(
            error_of("kind: XD\n").1,
            "field `kind`: expected `FD` or `CD`, found `XD`"
        );
    }

    #[test]
    fn the_callers_words_for_a_field_replace_its_types() {
        let words = |field: &str| (field == "layers.margin").then(|| "more than 0".to_string());
        let e = serde_yaml::from_str::<File>("layers:\n  - {margin: big}\n").unwrap_err();
        assert_eq!(
            explain_with(&e, words),
            "field `layers.margin`: expected more than 0, found the text \"big\""
        );
        let e = serde_yaml::from_str::<File>("rate: big\n").unwrap_err();
        assert_eq!(
            explain_with(&e, words),
            "field `rate`: expected a number, found the text \"big\""
        );
    }

    #[test]
    fn a_tab_in_the_indentation_is_named() {
        let text = "a: 1\n\tb: 2\n";
        let e = serde_yaml::from_str::<serde_yaml::Value>(text).unwrap_err();
        assert!(
            explain_in(text, &e, |_| None)
                .ends_with("(the line holds a tab: YAML indents with spaces only)"),
            "{}",
            explain_in(text, &e, |_| None)
        );
        let text = "a: [1\nb: 2\n";
        let e = serde_yaml::from_str::<serde_yaml::Value>(text).unwrap_err();
        assert!(!explain_in(text, &e, |_| None).contains("tab"));
    }

    #[test]
    fn other_errors_keep_their_wording_without_the_location() {
        let (line, m) = error_of("batch: 2\nvelocity: 1\n");
        assert_eq!(line, Some(2));
        assert!(
            m.starts_with("unknown field `velocity`, expected one of"),
            "{m}"
        );
        assert!(!m.contains("at line"), "{m}");
        let (_, m) = error_of("batch: [\n");
        assert!(!m.is_empty(), "{m}");
    }
}
