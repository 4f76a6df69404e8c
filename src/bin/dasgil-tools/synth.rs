//! `dasgil-tools synth`: synthetic data sets in the real data sets' on-disk formats.

use std::path::PathBuf;

use anyhow::Result;

use clap::Subcommand;

use super::args::whole_in;

type SynthResult<T> = Result<T, dasgil::synth::SynthError>;
/// Renders a data set into the given folder.
type Generate = Box<dyn FnOnce(&std::path::Path) -> SynthResult<dasgil::synth::Summary>>;
/// Writes a contact sheet of the data set in the first folder to the second path.
type Preview = Box<dyn FnOnce(&std::path::Path, &std::path::Path) -> SynthResult<()>>;

#[derive(Subcommand)]
pub(crate) enum SynthFormat {
    /// Virtual KITTI 2: scenes x 10 variations, rgb/depth/classSegmentation + text ground truth.
    Vkitti2 {
        #[command(flatten)]
        common: SynthCommon,
        /// Scenes, 1 to 1000 (each its own procedural world).
        #[arg(long, default_value_t = 2, value_parser = whole_in(1usize, MAX_SCENES as usize), allow_negative_numbers = true)]
        scenes: usize,
        /// Frames per scene and variation (1 to 100000).
        #[arg(long, default_value_t = 10, value_parser = whole_in(1usize, MAX_FRAMES as usize), allow_negative_numbers = true)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1242)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 375)]
        height: u32,
        /// 1 (Camera_0) or 2 (stereo, Camera_1 0.53 m to the right).
        #[arg(long, default_value_t = 1, value_parser = whole_in(1u8, 2), allow_negative_numbers = true)]
        cameras: u8,
        /// Write the authors' repackaged layout (vkitti_2.0.3_{rgb,depth,classSegmentation,textgt}
        /// roots, class-index segmentation) instead of the official one.
        #[arg(long)]
        dasgil_layout: bool,
        /// fixed: each variation's light and weather, one season everywhere (Virtual KITTI 2's
        /// look); wide: each scene and variation also draws its own season and light (leaves,
        /// grass, snow, sun), so that positives differ in season too; random: domain
        /// randomization on top of wide (per scene and variation a random style of palettes,
        /// surface patterns, windows, sky, colour cast, camera development and rig; per scene
        /// building and tree sizes), the place's geometry fixed across variations.
        #[arg(long, default_value = "fixed", value_parser = parse_appearance)]
        appearance: dasgil::synth::condition::Appearance,
        /// The most each scene's variation drives beside its lane, metres, 0 to 2.5 (0:
        /// Virtual KITTI 2's one line for all ten). Each scene and variation draws its own
        /// offset to the left of the lane (towards the centre line, clear of parked cars), the
        /// same for every frame, so that a positive pair sees one place from two spots on the
        /// road, as a robot in another lane than the mapping drive sees its map.
        #[arg(long, default_value_t = 0.0, value_parser = parse_lateral, allow_negative_numbers = true)]
        lateral: f64,
    },
    /// KITTI odometry layout, the "real" domain (sensor noise, blur, vignetting, tone curve).
    Kitti {
        #[command(flatten)]
        common: SynthCommon,
        /// Sequences, 1 to 100.
        #[arg(long, default_value_t = 1, value_parser = whole_in(1usize, 100), allow_negative_numbers = true)]
        sequences: usize,
        /// Frames per sequence, 1 to 100000.
        #[arg(long, default_value_t = 20, value_parser = whole_in(1usize, MAX_FRAMES as usize), allow_negative_numbers = true)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1241)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 376)]
        height: u32,
        /// fixed: one KITTI-like look; styled: each sequence in its own "real" style (natural,
        /// muted materials with weathering, a camera's noise, blur, vignetting and cast drawn
        /// per sequence), a look no `synth vkitti2` appearance uses.
        #[arg(long, default_value = "fixed", value_parser = ["fixed", "styled"])]
        appearance: String,
    },
    /// An Extended CMU-Seasons slice: reference traversal as database, other seasons as queries.
    Cmu {
        #[command(flatten)]
        common: SynthCommon,
        /// Slice number, 0 to 1000: which stretch of the loop the slice drives, in the loop's
        /// coordinates (another slice: another place, hundreds of metres away). Another --seed
        /// redraws the buildings and looks over nearly the same coordinates (metres to tens of
        /// metres apart): a map of one seed scores the other's queries as near its own places,
        /// so for a world "somewhere else" change the slice.
        #[arg(long, default_value_t = 2, value_parser = whole_in(0u32, 1000),
              allow_negative_numbers = true)]
        slice: u32,
        /// Database places along the route (two cameras each), 1 to 100000.
        #[arg(long, default_value_t = 20, value_parser = whole_in(1usize, MAX_FRAMES as usize), allow_negative_numbers = true)]
        places: usize,
        /// Metres between places, more than 0 and at most 1000.
        #[arg(long, default_value_t = 4.0, value_parser = parse_spacing, allow_negative_numbers = true)]
        spacing: f64,
        /// Query conditions, comma-separated (reference is the database's own look).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "foliage,snow,low-sun,overcast",
            value_parser = clap::builder::PossibleValuesParser::new(
                dasgil::synth::condition::Condition::SEASONS
            )
        )]
        conditions: Vec<String>,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1024)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 768)]
        height: u32,
        /// Draw the slice in a style reserved for model selection (flat-pastel: pastel colours,
        /// flat light, checkers and dots, 6 tone levels; dusk-ink: dark saturated materials
        /// under a teal-orange grade) or for test figures only (sepia-hatch: diagonal hatching
        /// under a sepia grade); each query condition is graded its own way. No training world
        /// uses these styles. Default: the world as it is.
        #[arg(long, value_parser = dasgil::synth::style::NAMED)]
        style: Option<String>,
        /// Metres every query traversal drives to the left (+) or right (-) of the database's
        /// line, on top of each traversal's own offset of up to 0.35 m; -5 to 5.
        #[arg(long, default_value_t = 0.0, value_parser = parse_query_lateral, allow_negative_numbers = true)]
        query_lateral: f64,
        /// Standard deviation, in degrees, of the vehicle's heading noise in each query frame
        /// (both cameras turn with it; drawn from the --seed, clamped at +-2.5 sigma); 0 to 30.
        #[arg(long, default_value_t = 0.0, value_parser = parse_query_yaw_noise, allow_negative_numbers = true)]
        query_yaw_noise: f64,
        /// The lens the images are drawn through: pinhole (none) or cmu (the real cameras'
        /// barrel distortion, k1 about -0.4, as the real intrinsics.txt gives it for c0 and c1;
        /// written to intrinsics.txt, so build-map's --yaw-views use it).
        #[arg(long, default_value = "pinhole", value_parser = dasgil::synth::cmu::Lens::NAMES)]
        lens: String,
    },
    /// Oxford RobotCar traversals: Bayer stereo/centre images, timestamps, gps/ins.csv and
    /// vo/vo.csv; the first (2014-12-09-13-21-02) is the reference, the others' frames lie
    /// between its frames.
    Robotcar {
        #[command(flatten)]
        common: SynthCommon,
        /// Traversals, 1 to 100.
        #[arg(long, default_value_t = 3, value_parser = whole_in(1usize, 100), allow_negative_numbers = true)]
        traversals: usize,
        /// Images per traversal, evenly along the loop, 1 to 100000.
        #[arg(long, default_value_t = 40, value_parser = whole_in(1usize, MAX_FRAMES as usize), allow_negative_numbers = true)]
        frames: usize,
        /// Image width in pixels, 16 to 8192.
        #[arg(long, default_value_t = 1280)]
        width: u32,
        /// Image height in pixels, 16 to 8192.
        #[arg(long, default_value_t = 960)]
        height: u32,
    },
}

pub(crate) fn parse_appearance(s: &str) -> Result<dasgil::synth::condition::Appearance, String> {
    dasgil::synth::condition::Appearance::parse(s)
        .ok_or_else(|| format!("expected fixed, wide or random, found `{s}`"))
}

#[derive(clap::Args)]
pub(crate) struct SynthCommon {
    /// Output folder (the data set root).
    #[arg(long)]
    out: PathBuf,
    /// World and noise seed: the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write a contact sheet of what was made (read back through the dataset reader).
    #[arg(long)]
    preview: Option<PathBuf>,
    /// Replace an earlier `synth` output in --out as a whole (never mixes two data sets; a
    /// folder that is not a synth output is never replaced).
    #[arg(long)]
    force: bool,
}

/// Largest counts `synth` accepts (a typo such as --frames 1000000000 is refused up front).
pub(crate) const MAX_FRAMES: u64 = dasgil::synth::MAX_COUNT;

pub(crate) const MAX_SCENES: u64 = 1_000;

/// One `synth` command, taken apart once: what it will make (checked before anything is
/// rendered), how to render it into a folder, and how to preview the result.
pub(crate) struct SynthJob {
    name: &'static str,
    common: SynthCommon,
    width: u32,
    height: u32,
    images: u64,
    counts: Vec<(&'static str, u64, u64)>,
    generate: Generate,
    preview: Preview,
}

pub(crate) fn synth_job(format: SynthFormat) -> Result<SynthJob> {
    use dasgil::data::vkitti2::Layout;
    use dasgil::synth::{cmu, kitti, preview, robotcar, vkitti2};
    Ok(match format {
        SynthFormat::Vkitti2 {
            common,
            scenes,
            frames,
            width,
            height,
            cameras,
            dasgil_layout,
            appearance,
            lateral,
        } => {
            let layout = if dasgil_layout {
                Layout::Dasgil
            } else {
                Layout::Official
            };
            let seed = common.seed;
            SynthJob {
                name: "vkitti2",
                width,
                height,
                images: (scenes as u64) * 10 * (frames as u64) * (cameras as u64),
                counts: vec![
                    ("--scenes", scenes as u64, MAX_SCENES),
                    ("--frames", frames as u64, MAX_FRAMES),
                    ("--cameras", cameras as u64, 2),
                ],
                generate: Box::new(move |out| {
                    vkitti2::generate(&vkitti2::Options {
                        out: out.to_path_buf(),
                        seed,
                        scenes,
                        frames,
                        width,
                        height,
                        cameras,
                        layout,
                        appearance,
                        lateral,
                    })
                }),
                preview: Box::new(move |out, p| preview::vkitti2(out, layout, p)),
                common,
            }
        }
        SynthFormat::Kitti {
            common,
            sequences,
            frames,
            width,
            height,
            appearance,
        } => {
            let seed = common.seed;
            let styled = appearance == "styled";
            SynthJob {
                name: "kitti",
                width,
                height,
                images: (sequences as u64) * (frames as u64),
                counts: vec![
                    ("--sequences", sequences as u64, 100),
                    ("--frames", frames as u64, MAX_FRAMES),
                ],
                generate: Box::new(move |out| {
                    kitti::generate(&kitti::Options {
                        out: out.to_path_buf(),
                        seed,
                        sequences,
                        frames,
                        width,
                        height,
                        styled,
                    })
                }),
                preview: Box::new(move |out, p| preview::kitti(out, sequences, p)),
                common,
            }
        }
        SynthFormat::Cmu {
            common,
            slice,
            places,
            spacing,
            conditions,
            width,
            height,
            style,
            query_lateral,
            query_yaw_noise,
            lens,
        } => {
            let seed = common.seed;
            let lens = cmu::Lens::from_name(&lens).expect("clap checked the name");
            SynthJob {
                name: "cmu",
                width,
                height,
                images: (places as u64) * 2 * (1 + conditions.len() as u64),
                counts: vec![
                    ("--places", places as u64, MAX_FRAMES),
                    ("--conditions (count)", conditions.len() as u64, 16),
                ],
                generate: Box::new(move |out| {
                    cmu::generate(&cmu::Options {
                        out: out.to_path_buf(),
                        seed,
                        slice,
                        places,
                        spacing,
                        conditions,
                        width,
                        height,
                        style,
                        query_lateral,
                        query_yaw_noise,
                        lens,
                    })
                }),
                preview: Box::new(move |out, p| preview::cmu(out, slice, places, p)),
                common,
            }
        }
        SynthFormat::Robotcar {
            common,
            traversals,
            frames,
            width,
            height,
        } => {
            let seed = common.seed;
            SynthJob {
                name: "robotcar",
                width,
                height,
                images: (traversals as u64) * (frames as u64) * 3,
                counts: vec![
                    ("--traversals", traversals as u64, 100),
                    ("--frames", frames as u64, MAX_FRAMES),
                ],
                generate: Box::new(move |out| {
                    robotcar::generate(&robotcar::Options {
                        out: out.to_path_buf(),
                        seed,
                        traversals,
                        frames,
                        width,
                        height,
                    })
                }),
                preview: Box::new(move |out, p| preview::robotcar(out, traversals, p)),
                common,
            }
        }
    })
}

/// Where a render stands, for the Ctrl-C handler.
enum Render {
    NotStarted,
    Into(std::path::PathBuf),
    Done,
}

pub(crate) fn run_synth(format: SynthFormat) -> Result<()> {
    use dasgil::synth::{check_plan, output, Plan};
    use std::io::Write;
    let started = std::time::Instant::now();
    let job = synth_job(format)?;
    // Absolute, links resolved: `--out .` and a link to an earlier output work as they read.
    let out = output::resolved(&job.common.out);
    // Whether this command runs inside the folder it replaces (`--out .`).
    let stands_in = out.is_dir() && std::env::current_dir().is_ok_and(|d| d.starts_with(&out));
    check_plan(
        &Plan {
            images: job.images,
            width: job.width,
            height: job.height,
            counts: &job.counts,
        },
        &out,
    )?;
    let preview_path = job.common.preview.as_deref().map(output::resolved);
    let preview_replaces = preview_path.as_ref().is_some_and(|p| p.exists());
    if let Some(p) = &preview_path {
        // A picture replaces only a picture (a slip of --preview onto a data file is refused).
        if p.exists() {
            let png = std::fs::File::open(p).ok().and_then(|mut f| {
                let mut head = [0u8; 16];
                std::io::Read::read_exact(&mut f, &mut head).ok()?;
                image::guess_format(&head).ok()
            });
            if png != Some(image::ImageFormat::Png) {
                anyhow::bail!(
                    "--preview {}: exists and is not a PNG picture; choose another path \
                     (nothing was changed)",
                    p.display()
                );
            }
        }
        if p.starts_with(&out) {
            anyhow::bail!(
                "--preview {} is inside --out {}: put the picture outside the data set",
                p.display(),
                out.display()
            );
        }
    }
    // Ctrl-C or SIGTERM: while rendering, the partial render goes (what --out held before is
    // untouched until the render completes); during the swap into place the handler waits for
    // it; after it, it says the data set is complete. Registered before the staging folder
    // exists, so no signal finds the default action (which would leave the folder).
    let state = std::sync::Arc::new(std::sync::Mutex::new(Render::NotStarted));
    // Set while the render moves into place (the lock is held then, and briefly at other times).
    let moving = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let state = std::sync::Arc::clone(&state);
        let moving = std::sync::Arc::clone(&moving);
        let out = out.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])?;
        std::thread::spawn(move || {
            if let Some(sig) = signals.forever().next() {
                // A second Ctrl-C ends the process at once, whatever this handler waits for.
                // SAFETY: restores the default disposition of two signals.
                unsafe {
                    libc::signal(signal_hook::consts::SIGINT, libc::SIG_DFL);
                    libc::signal(signal_hook::consts::SIGTERM, libc::SIG_DFL);
                }
                let guard = match state.try_lock() {
                    Ok(g) => g,
                    Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        if moving.load(std::sync::atomic::Ordering::SeqCst) {
                            let _ = writeln!(
                                std::io::stderr(),
                                "synth: interrupted: waiting for the data set's move into {} \
                                 to finish (a second Ctrl-C ends at once and may leave --out \
                                 half replaced)",
                                out.display()
                            );
                        }
                        state.lock().unwrap_or_else(|e| e.into_inner())
                    }
                };
                let said = match &*guard {
                    Render::NotStarted => "before rendering: nothing was written".to_string(),
                    Render::Into(staging) => {
                        // The render goes on writing meanwhile: removed until it stays gone
                        // (what a last write may still leave has no lock and is removed by
                        // the next run into the same folder).
                        for _ in 0..20 {
                            let _ = std::fs::remove_dir_all(staging);
                            if !staging.exists() {
                                break;
                            }
                        }
                        format!(
                            "the partial render {} was removed; --out is as it was",
                            staging.display()
                        )
                    }
                    Render::Done => format!(
                        "the data set was already complete in {} (a --preview may be missing)",
                        out.display()
                    ),
                };
                // Said without panicking when stderr is gone (a pipe closed by the same Ctrl-C).
                let _ = writeln!(std::io::stderr(), "synth: interrupted: {said}");
                // Ended by the signal itself (its default action, restored above), at once, so
                // the render writes nothing more and a shell running a loop of commands stops
                // (`$?` 130 or 143), as atomic::remove_unfinished_on_interrupt does.
                // SAFETY: the disposition is the default; raise only sends the signal.
                unsafe {
                    libc::raise(sig);
                    libc::_exit(128 + sig)
                };
            }
        });
    }
    // (Also listed for atomic's interrupt handler, which synth does not install: its own
    // handler above removes it.)
    let (staging, _listed) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let (staging, listed) = output::staging(&out, job.common.force)?;
        *st = Render::Into(staging.clone());
        (staging, listed)
    };
    // What --force replaces: another kind of data set is warned about before any work (an
    // interrupt then still keeps it); the summary line names it.
    let replaced = output::earlier(&out).map(|(words, kind)| {
        if kind.as_deref() != Some(job.name) {
            tracing::warn!(
                "--force: --out {} holds an earlier {words}; it is replaced by this synth {} \
                 data set when the render completes (interrupt now to keep it)",
                out.display(),
                job.name
            );
        }
        words
    });
    let summary = match (job.generate)(&staging) {
        Ok(s) => s,
        Err(e) => {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            let _ = std::fs::remove_dir_all(&staging);
            *st = Render::NotStarted;
            return Err(e.into());
        }
    };
    let marker = serde_json::json!({
        "dataset": job.name,
        "images": summary.images,
        "command": std::env::args().collect::<Vec<_>>().join(" "),
    });
    {
        // The swap into place is not interrupted halfway (the handler waits for this lock).
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        moving.store(true, std::sync::atomic::Ordering::SeqCst);
        let finished = output::finish(&staging, &out, marker, job.common.force);
        moving.store(false, std::sync::atomic::Ordering::SeqCst);
        finished?;
        *st = Render::Done;
    }
    if let Some(p) = &preview_path {
        (job.preview)(&out, p)?;
    }
    let mut replaced = replaced
        .map(|words| format!("; replaced the earlier {words}"))
        .unwrap_or_default();
    // A shell standing in the folder replaced still sees the old, removed one.
    if stands_in {
        replaced.push_str(" (the folder was replaced under this shell: `cd .` to see the new one)");
    }
    println!(
        "wrote {} images ({} files) to {} in {:.1} s{}{}",
        summary.images,
        summary.files,
        out.display(),
        started.elapsed().as_secs_f64(),
        replaced,
        preview_path
            .map(|p| format!(
                "; preview {}{}",
                p.display(),
                if preview_replaces {
                    " (replaced the earlier picture)"
                } else {
                    ""
                }
            ))
            .unwrap_or_default()
    );
    Ok(())
}

/// `synth vkitti2 --lateral`: metres, 0 to 2.5.
fn parse_lateral(s: &str) -> Result<f64, String> {
    use dasgil::synth::vkitti2::{lateral_ok, LATERAL};
    super::args::parse_number_where(s.trim(), lateral_ok, LATERAL)
}

/// `synth cmu --query-lateral`: metres, -5 to 5.
fn parse_query_lateral(s: &str) -> Result<f64, String> {
    use dasgil::synth::cmu::{query_lateral_ok, QUERY_LATERAL};
    super::args::parse_number_where(s.trim(), query_lateral_ok, QUERY_LATERAL)
}

/// `synth cmu --query-yaw-noise`: degrees, 0 to 30.
fn parse_query_yaw_noise(s: &str) -> Result<f64, String> {
    use dasgil::synth::cmu::{query_yaw_noise_ok, QUERY_YAW_NOISE};
    super::args::parse_number_where(s.trim(), query_yaw_noise_ok, QUERY_YAW_NOISE)
}

/// `synth cmu --spacing`: metres, more than 0 and at most 1000.
fn parse_spacing(s: &str) -> Result<f64, String> {
    use dasgil::synth::cmu::{spacing_ok, SPACING};
    super::args::parse_number_where(s.trim(), spacing_ok, SPACING)
}
