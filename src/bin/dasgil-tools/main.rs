//! `dasgil-tools`: the command-line side of DASGIL. One file per command (its flags, checked
//! where they are defined, and its run function); `args` holds the flags several commands share.

use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};

mod args;
mod build_map;
mod embed;
mod evaluate;
mod import_checkpoint;
mod localize;
#[cfg(feature = "ros")]
mod replay;
mod synth;
mod train;
mod usage;

use build_map::{run_build_map, BuildMapArgs};
use evaluate::{run_evaluate, EvaluateArgs};
use localize::{run_localize, LocalizeArgs};
#[cfg(feature = "ros")]
use replay::{run_replay, ReplayArgs};
use synth::{run_synth, SynthFormat};
use train::{run_train, TrainArgs};

#[derive(Parser)]
#[command(
    name = "dasgil-tools",
    version,
    about = "DASGIL training, data and map tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the toolchain: libtorch version, CUDA availability, ROS 2 distro and RMW.
    Info {
        /// Print as JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Convert an authors' checkpoint (N_net_gen.pth or N_net_dis.pth) to a dasgil checkpoint.
    ImportCheckpoint(Box<import_checkpoint::ImportArgs>),
    /// Run the generator (eval mode) on one image; write e1..e8, depth_0..depth_3 and seg.
    Embed(Box<embed::EmbedArgs>),
    /// Train DASGIL on Virtual KITTI 2 (+ KITTI images as the unlabelled real domain).
    ///
    /// Writes OUT/config.yaml, losses.csv, loss_curves.png, predictions.png, batch.png,
    /// generator.safetensors and checkpoints/ (resume with --resume OUT). Ctrl-C or SIGTERM
    /// writes a checkpoint and exits 0.
    Train(Box<TrainArgs>),
    /// Encode a geotagged image sequence's database images into a descriptor map.
    BuildMap(Box<BuildMapArgs>),
    /// Find the nearest map images of each image and the pose prior the node would publish.
    Localize(Box<LocalizeArgs>),
    /// Score a model (or a baseline) on a sequence with query ground truth.
    Evaluate(Box<EvaluateArgs>),
    /// Play a sequence's query frames to a running dasgil_node over ROS 2 at camera rate and
    /// score the pose priors it publishes (accuracy per condition, latency, frames dropped,
    /// covariance coverage); writes OUT/priors.csv, summary.json and route.png.
    #[cfg(feature = "ros")]
    Replay(Box<ReplayArgs>),
    /// Render a synthetic data set in a real data set's on-disk format.
    Synth {
        #[command(subcommand)]
        format: SynthFormat,
    },
}

fn main() {
    // Intel MKL (libtorch's BLAS on x86) does not promise the same code path and reduction
    // order run to run, even at a fixed thread count (seen: two identical training runs differed
    // in the 7th digit from the third step on while other trainings shared the 2 cores).
    // MKL_CBWR=AUTO selects its conditional numerical reproducibility mode: the same results run
    // to run on one machine with one thread count. Set before libtorch's first MKL call, while
    // the process has one thread; a user's value is kept.
    if std::env::var_os("MKL_CBWR").is_none() {
        std::env::set_var("MKL_CBWR", "AUTO");
    }
    init_tracing();
    // A usage error says why where the flags' help knows (usage.rs).
    let cli = Cli::try_parse().unwrap_or_else(|e| usage::explain(e, &Cli::command()).exit());
    #[cfg(feature = "ros")]
    let replay = matches!(cli.command, Command::Replay(_));
    #[cfg(not(feature = "ros"))]
    let replay = false;
    if !replay {
        quiet_on_closed_pipe();
    }
    if let Err(err) = run(cli) {
        eprintln!("{}", dasgil::report::error_report(&err));
        std::process::exit(1);
    }
}

/// Output into a pipe whose reader has gone (`dasgil-tools localize ... | head -1`) ends the
/// command quietly, as it ends `cat`, instead of a panic in println! (Rust ignores SIGPIPE, so
/// the write fails and println! panics). Not for replay, whose ROS 2 middleware may write to
/// the sockets of peers that went away, where an error is the right answer.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: restores the default disposition of one signal before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(cli: Cli) -> Result<()> {
    // Synth, train and replay handle Ctrl-C themselves; the others remove what they were
    // writing when it comes.
    let handled_here = match &cli.command {
        Command::BuildMap(_) => Some("build-map"),
        Command::Localize(_) => Some("localize"),
        Command::Evaluate(_) => Some("evaluate"),
        Command::Embed(_) => Some("embed"),
        Command::ImportCheckpoint(_) => Some("import-checkpoint"),
        _ => None,
    };
    if let Some(command) = handled_here {
        dasgil::atomic::remove_unfinished_on_interrupt(command)
            .context("installing the Ctrl-C handler")?;
    }
    match cli.command {
        Command::Synth { format } => run_synth(format)?,
        Command::Train(args) => run_train(*args)?,
        Command::BuildMap(args) => run_build_map(*args)?,
        Command::Localize(args) => run_localize(*args)?,
        Command::Evaluate(args) => run_evaluate(*args)?,
        #[cfg(feature = "ros")]
        Command::Replay(args) => run_replay(*args)?,
        Command::Info { json } => {
            let info = dasgil::toolchain::ToolchainInfo::collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&info)?);
            } else {
                println!("{info}");
            }
        }
        Command::ImportCheckpoint(a) => import_checkpoint::run_import(*a)?,
        Command::Embed(a) => embed::run_embed(*a)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// clap's own checks of every command: unique argument ids across flattened groups (a
    /// shared id silently merges two flags), valid `requires`/`conflicts_with` names.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        let cmd = super::Cli::command();
        // clap checks these only in debug builds; the suite runs release builds, so the one
        // that bit (two flattened groups sharing an id) is checked here too.
        for sub in cmd.get_subcommands() {
            let mut seen = std::collections::BTreeSet::new();
            for a in sub.get_arguments() {
                assert!(
                    seen.insert(a.get_id().as_str().to_string()),
                    "dasgil-tools {}: argument id `{}` is defined twice",
                    sub.get_name(),
                    a.get_id()
                );
            }
        }
        cmd.debug_assert();
    }

    /// Every pair of flags that cannot be used together has a reason in the help of one of
    /// them (or of the flag one goes with), which a usage error shows as a tip (usage.rs).
    #[test]
    fn every_conflict_has_a_reason() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let Some(la) = a.get_long() else { continue };
                for c in cmd.get_arg_conflicts_with(a) {
                    let Some(lc) = c.get_long() else { continue };
                    if super::usage::conflict_tip(cmd, la, lc).is_none() {
                        missing.push(format!("{path}: --{la} / --{lc}"));
                    }
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "dasgil-tools", &mut missing);
        assert!(
            missing.is_empty(),
            "no \"Not with\" reason:\n{}",
            missing.join("\n")
        );
    }

    /// What a usage error says, through clap's own parsing (as `main` does).
    fn usage_error(args: &[&str]) -> String {
        use clap::CommandFactory;
        let err = super::Cli::command()
            .try_get_matches_from(args)
            .expect_err("a usage error");
        super::usage::explain(err, &super::Cli::command()).to_string()
    }

    #[test]
    fn usage_errors_give_the_reason_once_whatever_the_order_or_program_name() {
        let map = ["--sequence", "s", "--out", "o", "--map", "m"];
        let views = ["--yaw-views", "3"];
        let want = "tip: --yaw-views: Not with --map: a map's views are fixed when it is built";
        for name in ["dasgil-tools", "/tmp/dt"] {
            for args in [
                [&map[..], &views[..]].concat(),
                [&views[..], &map[..]].concat(),
            ] {
                let mut argv = vec![name, "evaluate"];
                argv.extend(args);
                let e = usage_error(&argv);
                assert!(e.contains(want), "{argv:?}: {e}");
                assert_eq!(e.matches("tip:").count(), 1, "{e}");
            }
        }
        // A flag given twice is not a conflict to explain.
        let e = usage_error(&[
            "d",
            "evaluate",
            "--out",
            "o",
            "--photometric",
            "none",
            "--photometric",
            "none",
        ]);
        assert!(
            e.contains("cannot be used multiple times") && !e.contains("tip:"),
            "{e}"
        );
        // A bag-only flag with another source: the reason is --bag's.
        let e = usage_error(&[
            "d",
            "build-map",
            "--out",
            "o",
            "--sequence",
            "s",
            "--every",
            "2",
        ]);
        assert!(
            e.contains("tip: --every goes with --bag; --bag: Not with --sequence"),
            "{e}"
        );
        // An unknown flag: the flags with it as a whole part of their name, then clap's guess.
        let e = usage_error(&["d", "evaluate", "--out", "o", "--odometry", "x"]);
        assert!(
            e.contains("'--odometry-topic'") && e.contains("'--no-odometry'"),
            "{e}"
        );
        let e = usage_error(&["d", "synth", "cmu", "--out", "o", "--lateral", "2"]);
        assert!(
            e.contains("tip: a similar argument exists: '--query-lateral'"),
            "{e}"
        );
    }
}
