//! serde_yaml's errors in a user's words. A YAML file a user writes (a `--config` for `train`,
//! a `--sequences` file) is read with serde, whose type errors speak Rust ("invalid type:
//! string \"abc\", expected f64 at line 29 column 15"); [`explain`] says the same as the rest
//! of the project's errors do: the field, what was expected and what was found ("field
//! `lr_generator`: expected a number, found \"abc\""). The caller puts the file and the line
//! (`serde_yaml::Error::location`) in front, so the location serde appends is left out.

/// The message of a YAML (de)serialization error, without serde's trailing location, a type or
/// value mismatch worded as "field `F`: expected E, found V"; other errors (unknown or missing
/// fields, syntax) keep serde's wording, which already names what it found.
pub fn explain(e: &serde_yaml::Error) -> String {
    let mut message = e.to_string();
    if let Some(at) = e.location() {
        let suffix = format!(" at line {} column {}", at.line(), at.column());
        if let Some(rest) = message.strip_suffix(&suffix) {
            message = rest.to_string();
        }
    }
    mismatch(&message).unwrap_or(message)
}

/// "path: invalid type: X, expected T" (or "invalid value: ...") in the project's words.
fn mismatch(message: &str) -> Option<String> {
    let (path, kind, rest) = ["invalid type: ", "invalid value: ", "invalid length "]
        .iter()
        .find_map(|kind| {
            let at = message.find(kind)?;
            Some((
                message[..at].trim_end().trim_end_matches(':'),
                *kind,
                &message[at + kind.len()..],
            ))
        })?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let found = if kind == "invalid length " {
        format!("a list of {found}")
    } else {
        found_words(found)
    };
    let field = if path.is_empty() {
        String::new()
    } else {
        format!("field `{path}`: ")
    };
    Some(format!(
        "{field}expected {}, found {}",
        expected_words(expected),
        found
    ))
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
            format!("a list of {}", &e["an array of length ".len()..])
        }
        e => e.into(),
    }
}

/// serde's description of the value a file holds, as the file writes it.
fn found_words(found: &str) -> String {
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
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
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
            "field `betas`: expected a list of 2, found a list of 1"
        );
        assert_eq!(
            error_of("layers:\n  - {margin: big}\n"),
            (
                Some(2),
                "field `layers[0].margin`: expected a number, found the text \"big\"".into()
            )
        );
        assert_eq!(
            error_of("rate: [1, 2]\n").1,
            "field `rate`: expected a number, found a list"
        );
    }

    #[test]
    fn other_errors_keep_their_wording_without_the_location() {
        let (line, m) = error_of("batch: 2\nrat: 1\n");
        assert_eq!(line, Some(2));
        assert!(m.starts_with("unknown field `rat`, expected one of"), "{m}");
        assert!(!m.contains("at line"), "{m}");
        let (_, m) = error_of("batch: [\n");
        assert!(!m.is_empty(), "{m}");
    }
}
