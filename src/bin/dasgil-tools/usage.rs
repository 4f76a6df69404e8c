//! Command-line usage errors with the reason this program knows: clap says that two flags cannot
//! be used together, or that a flag is unknown; the flags' own help says why, or which flag was
//! meant.
//!
//! The convention: a flag that conflicts with others says so in its help, in a sentence that
//! begins "Not with" and names them ("Not with --map: a map's views are fixed when it is
//! built ..."). `tests::every_conflict_has_a_reason` holds every subcommand to it.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, Command};

/// `err` with a tip added where the flags' help gives one: for two flags that cannot be used
/// together, the "Not with" sentence of either flag (or of the flag the first one goes with,
/// such as `--bag` for `--every`) that names the other; for an unknown `--X`, the command's
/// flags whose name has X as a whole part (`synth cmu --lateral`: `--query-lateral`), before
/// clap's own guess.
pub(crate) fn explain(mut err: clap::Error, root: &Command) -> clap::Error {
    let Some(cmd) = command_of(&err, root) else {
        return err;
    };
    match err.kind() {
        ErrorKind::ArgumentConflict if err.get(ContextKind::Suggested).is_none() => {
            let Some(invalid) = err.get(ContextKind::InvalidArg).and_then(string) else {
                return err;
            };
            let invalid = long_name(&invalid);
            let prior: Vec<String> = match err.get(ContextKind::PriorArg) {
                Some(ContextValue::String(s)) => vec![long_name(s)],
                Some(ContextValue::Strings(v)) => v.iter().map(|s| long_name(s)).collect(),
                _ => Vec::new(),
            };
            let mut tips: Vec<String> = Vec::new();
            for other in &prior {
                // A flag given twice is "cannot be used multiple times": no reason to give.
                if let Some(tip) = conflict_tip(cmd, &invalid, other) {
                    if !tips.contains(&tip) {
                        tips.push(tip);
                    }
                }
            }
            if !tips.is_empty() {
                let tips = tips.into_iter().map(Into::into).collect();
                err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
            }
        }
        ErrorKind::UnknownArgument => {
            let Some(unknown) = err.get(ContextKind::InvalidArg).and_then(string) else {
                return err;
            };
            let mut similar = whole_part_matches(cmd, &long_name(&unknown));
            match err.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => similar.push(s.clone()),
                Some(ContextValue::Strings(v)) => similar.extend(v.iter().cloned()),
                _ => {}
            }
            let mut seen = std::collections::BTreeSet::new();
            similar.retain(|s| seen.insert(s.clone()));
            match similar.len() {
                0 => {}
                1 => {
                    let one = similar.remove(0);
                    err.insert(ContextKind::SuggestedArg, ContextValue::String(one));
                }
                _ => {
                    err.insert(ContextKind::SuggestedArg, ContextValue::Strings(similar));
                }
            }
        }
        _ => {}
    }
    err
}

/// The tip for flags `a` and `b` of `cmd` (long names) that cannot be used together: the
/// "Not with" sentence naming the other of either one, the one naming the fewest flags (the
/// more specific: `--yaw-views`' "Not with --map: ..." before `--map`'s list of five), else
/// that of a flag that `a` or `b` goes with: the one whose conflicts are the most of its own
/// (`--every` and `--tf-topic` with `--bag`). None for the same flag twice.
pub(crate) fn conflict_tip(cmd: &Command, a: &str, b: &str) -> Option<String> {
    if a == b || a.is_empty() || b.is_empty() {
        return None;
    }
    let flags = |s: &str| s.matches("--").count();
    let direct = [(b, a), (a, b)]
        .into_iter()
        .filter_map(|(x, y)| not_with(cmd, x, y).map(|s| (x, s)))
        .min_by_key(|(_, s)| flags(s));
    if let Some((x, s)) = direct {
        return Some(format!("--{x}: {s}"));
    }
    for (x, y) in [(a, b), (b, a)] {
        let Some(arg) = long_arg(cmd, x) else {
            continue;
        };
        let conflicts = conflict_ids(cmd, arg);
        if conflicts.is_empty() {
            continue;
        }
        // The closest: the most conflicts in common (`--bag`'s six for `--every`, not
        // `--slice`'s one).
        let host = cmd
            .get_arguments()
            .filter(|h| {
                h.get_id() != arg.get_id()
                    && !h.is_hide_set()
                    && h.get_long().is_some_and(|l| l != y)
                    && conflict_ids(cmd, h).is_subset(&conflicts)
                    && h.get_long().and_then(|l| not_with(cmd, l, y)).is_some()
            })
            .max_by_key(|h| conflict_ids(cmd, h).len());
        if let Some(h) = host.and_then(Arg::get_long) {
            let s = not_with(cmd, h, y)?;
            return Some(format!("--{x} goes with --{h}; --{h}: {s}"));
        }
    }
    None
}

fn conflict_ids(cmd: &Command, arg: &Arg) -> std::collections::BTreeSet<String> {
    cmd.get_arg_conflicts_with(arg)
        .into_iter()
        .map(|c| c.get_id().as_str().to_string())
        .collect()
}

fn long_arg<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments().find(|x| x.get_long() == Some(long))
}

/// `cmd`'s visible flags whose long name starts with "NAME-" or ends with "-NAME".
fn whole_part_matches(cmd: &Command, name: &str) -> Vec<String> {
    if name.is_empty() {
        return Vec::new();
    }
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(Arg::get_long)
        .filter(|l| l.starts_with(&format!("{name}-")) || l.ends_with(&format!("-{name}")))
        .map(|l| format!("--{l}"))
        .collect()
}

fn string(v: &ContextValue) -> Option<String> {
    match v {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `--map <MAP>` -> `map`; `--yaw-views=3` -> `yaw-views`; a positional `<OUT>` -> ``.
fn long_name(arg: &str) -> String {
    if !arg.starts_with("--") {
        return String::new();
    }
    arg.trim_start_matches('-')
        .split(|c: char| c.is_whitespace() || c == '=' || c == '<')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The subcommand the error is about, from its usage line (`Usage: NAME synth cmu --out <OUT>`:
/// the words after the program's name, whatever it was started as, up to the first flag or
/// value).
fn command_of<'a>(err: &clap::Error, root: &'a Command) -> Option<&'a Command> {
    let Some(ContextValue::StyledStr(usage)) = err.get(ContextKind::Usage) else {
        return None;
    };
    let text = usage.to_string();
    let mut words = text.split_whitespace().skip_while(|w| *w != "Usage:");
    words.next()?;
    words.next()?;
    let mut cmd = root;
    for w in words.take_while(|w| !w.starts_with(['-', '<', '['])) {
        cmd = cmd.find_subcommand(w)?;
    }
    Some(cmd)
}

/// The sentence of flag `a`'s help (of `cmd`) that begins "Not with" and names flag `b`.
fn not_with(cmd: &Command, a: &str, b: &str) -> Option<String> {
    let arg = long_arg(cmd, a)?;
    let help = arg.get_long_help().or(arg.get_help())?.to_string();
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let flag = format!("--{b}");
    let names = |s: &str| {
        s.match_indices(&flag).any(|(i, _)| {
            let next = s[i + flag.len()..].chars().next();
            !next.is_some_and(|c| c.is_alphanumeric() || c == '-')
        })
    };
    sentences(&help)
        .into_iter()
        .find(|s| s.starts_with("Not with") && names(s))
        .map(|s| s.trim_end_matches('.').to_string())
}

/// `text` cut after each ". " that closes a sentence (not "e.g. " or "i.e. ").
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(". ") {
        let before = text[..i].to_ascii_lowercase();
        if i < start || before.ends_with("e.g") || before.ends_with("i.e") {
            continue;
        }
        out.push(text[start..=i].trim());
        start = i + 2;
    }
    out.push(text[start..].trim());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_and_flag_names() {
        assert_eq!(
            sentences("One (e.g. this). E.g. that. Not with --map: two. Three"),
            vec![
                "One (e.g. this).",
                "E.g. that.",
                "Not with --map: two.",
                "Three"
            ]
        );
        assert_eq!(long_name("--map <MAP>"), "map");
        assert_eq!(long_name("--yaw-views=3"), "yaw-views");
        assert_eq!(long_name("<OUT>"), "");
    }
}
