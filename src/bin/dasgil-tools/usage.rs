//! Command-line usage errors with the reason this program knows: clap says that two flags cannot
//! be used together, or that a flag is unknown; the flags' own help says why, or which flag was
//! meant.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::Command;

/// `err` with a tip added where the flags' help gives one: for two flags that cannot be used
/// together, the sentence of either one's help that names the other ("Not with --map: ...");
/// for an unknown `--X` that clap has no suggestion for, a flag of the same command whose name
/// has X as a whole part (`synth cmu --lateral`: `--query-lateral`).
pub(crate) fn explain(mut err: clap::Error, root: &Command) -> clap::Error {
    let Some(cmd) = command_of(&err, root) else {
        return err;
    };
    match err.kind() {
        ErrorKind::ArgumentConflict if err.get(ContextKind::Suggested).is_none() => {
            let invalid = err
                .get(ContextKind::InvalidArg)
                .and_then(string)
                .map(long_name);
            let prior: Vec<String> = match err.get(ContextKind::PriorArg) {
                Some(ContextValue::String(s)) => vec![long_name(s.clone())],
                Some(ContextValue::Strings(v)) => v.iter().cloned().map(long_name).collect(),
                _ => Vec::new(),
            };
            let Some(invalid) = invalid else {
                return err;
            };
            // One tip per pair: the earlier flag's sentence on the later one (the more
            // specific, as `--yaw-views`' "Not with --map: ..."), else the other way round.
            let mut tips = Vec::new();
            for other in &prior {
                let tip = [(other, &invalid), (&invalid, other)]
                    .into_iter()
                    .find_map(|(a, b)| sentence_naming(cmd, a, b).map(|s| format!("--{a}: {s}")));
                tips.extend(tip.filter(|t| !tips.contains(t)));
            }
            if !tips.is_empty() {
                let tips = tips.into_iter().map(Into::into).collect();
                err.insert(ContextKind::Suggested, ContextValue::StyledStrs(tips));
            }
        }
        ErrorKind::UnknownArgument if err.get(ContextKind::SuggestedArg).is_none() => {
            let Some(unknown) = err.get(ContextKind::InvalidArg).and_then(string) else {
                return err;
            };
            let name = long_name(unknown);
            if name.is_empty() {
                return err;
            }
            let similar: Vec<String> = cmd
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|l| l.starts_with(&format!("{name}-")) || l.ends_with(&format!("-{name}")))
                .map(|l| format!("--{l}"))
                .collect();
            match similar.len() {
                0 => {}
                1 => {
                    let one = similar.into_iter().next().unwrap_or_default();
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

fn string(v: &ContextValue) -> Option<String> {
    match v {
        ContextValue::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// `--map <MAP>` -> `map`; `--yaw-views=3` -> `yaw-views`.
fn long_name(arg: String) -> String {
    arg.trim_start_matches('-')
        .split(|c: char| c.is_whitespace() || c == '=' || c == '<')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// The subcommand the error is about, from its usage line (`Usage: dasgil-tools synth cmu
/// --out <OUT>`: the words between the program's name and the first flag or value).
fn command_of<'a>(err: &clap::Error, root: &'a Command) -> Option<&'a Command> {
    let Some(ContextValue::StyledStr(usage)) = err.get(ContextKind::Usage) else {
        return None;
    };
    let text = usage.to_string();
    let mut words = text
        .split_whitespace()
        .skip_while(|w| *w != root.get_name());
    words.next()?;
    let mut cmd = root;
    for w in words.take_while(|w| !w.starts_with(['-', '<', '['])) {
        cmd = cmd.find_subcommand(w)?;
    }
    Some(cmd)
}

/// The sentence of flag `a`'s help (of `cmd`) that names flag `b`, if any.
fn sentence_naming(cmd: &Command, a: &str, b: &str) -> Option<String> {
    let arg = cmd.get_arguments().find(|x| x.get_long() == Some(a))?;
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
        .find(|s| names(s))
        .map(str::to_string)
}

/// `text` cut after each ". " that closes a sentence (not "e.g. " or "i.e. ").
fn sentences(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in text.match_indices(". ") {
        if i < start || text[..i].ends_with("e.g") || text[..i].ends_with("i.e") {
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
            sentences("One (e.g. this). Not with --map: two. Three"),
            vec!["One (e.g. this).", "Not with --map: two.", "Three"]
        );
        assert_eq!(long_name("--map <MAP>".into()), "map");
        assert_eq!(long_name("--yaw-views=3".into()), "yaw-views");
    }
}
