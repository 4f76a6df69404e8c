//! Evaluation: offline (`offline`: queries with ground truth through the Localizer, recall and
//! the Extended CMU-Seasons accuracies, the benchmark submission, report and plots) and online
//! (`online`: scoring the priors a running node published for replayed frames).

pub mod offline;
pub mod online;

use std::path::Path;

use crate::data::preprocess::Photometric;
use crate::data::sources::SourceImages;
use crate::error::PipelineError;
use crate::extract::choice::{make_encoder, ModelChoice};
use crate::localize::Localizer;
use crate::map::file::MapFile;
use crate::map::BuildOptions;
use crate::model::DescriptorSpec;
use crate::retrieval::Metric;
use offline::Report;

/// The first query without a timestamp.
fn first_unstamped(src: &SourceImages) -> Option<&crate::data::sequence::PosedImage> {
    src.queries.iter().find(|q| q.timestamp_us.is_none())
}

/// `centring: auto` in evaluate: each camera's queries are centred in their time order, so a
/// set with a query that has no timestamp is searched as encoded, with a note naming it (the
/// default's fallback, here so that every caller of [`run`] and [`run_on_map`] gets it;
/// `running` refuses such queries). Returns the options to search with and the note.
pub fn centring_for_queries(
    src: &SourceImages,
    options: &crate::localize::Options,
) -> (crate::localize::Options, Option<String>) {
    use crate::localize::centring::Centring;
    if options.centring != Centring::Auto {
        return (options.clone(), None);
    }
    match first_unstamped(src) {
        Some(q) => (
            crate::localize::Options {
                centring: Centring::None,
                ..options.clone()
            },
            Some(format!(
                "descriptors not centred (--centring auto): query {} has no timestamp, and \
                 centring would follow each camera's queries in time order (docs/pose-prior.md, \
                 \"Descriptor centring\"); --centring none turns this note off",
                q.path.display()
            )),
        ),
        None => (options.clone(), None),
    }
}

/// evaluate: builds the map(s) in `out` and scores the queries through the Localizer; both ways (with and without
/// map-time adaptation) for a network, with `metric` (None: the encoder's default, the one its
/// checkpoint records, else L1). Returns the reports, primary first.
#[allow(clippy::too_many_arguments)] // the command's options, one each
pub fn run(
    choice: &ModelChoice,
    layers: Option<DescriptorSpec>,
    device: tch::Device,
    src: &SourceImages,
    out: &Path,
    metric: Option<Metric>,
    per_camera: bool,
    adapt_first: bool,
    photometric: Option<Photometric>,
    rectify: bool,
    yaw_views: Option<&[f64]>,
    options: &crate::localize::Options,
    gate: Option<offline::GateSettings>,
) -> Result<Vec<Report>, PipelineError> {
    let before = OutState::of(out);
    prepare_out(src, out)?;
    let result = Staged::new(out).and_then(|staged| {
        let reports = run_in(
            choice,
            layers,
            device,
            src,
            &staged.dir,
            out,
            metric,
            per_camera,
            adapt_first,
            photometric,
            rectify,
            yaw_views,
            options,
            gate,
        )?;
        staged.finish(out)?;
        Ok(reports)
    });
    before.clean_up_after(out, result, &[])
}

/// A run's outputs are written into a hidden folder inside --out (`.evaluate.partial-PID`)
/// and moved into --out together when every one is written (one step for Ctrl-C's handler):
/// a run stopped or failing before then leaves what --out held as it was, and Ctrl-C
/// removes the hidden folder (a killed run's is removed by the next run into --out).
struct Staged {
    dir: std::path::PathBuf,
    _listed: crate::atomic::Unfinished,
}

impl Staged {
    fn new(out: &Path) -> Result<Self, PipelineError> {
        let dir = out.join(format!(".evaluate.partial-{}", std::process::id()));
        let listed = crate::atomic::Unfinished::new(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)
            .map_err(|e| crate::atomic::PathIoError::new("cannot create folder", &dir, e))?;
        Ok(Self {
            dir,
            _listed: listed,
        })
    }

    /// Moves every output into `out` (replacing an earlier run's of the same name).
    fn finish(&self, out: &Path) -> Result<(), PipelineError> {
        let moves: Vec<(std::path::PathBuf, std::path::PathBuf)> = std::fs::read_dir(&self.dir)
            .map_err(|e| crate::atomic::PathIoError::new("cannot list", &self.dir, e))?
            .flatten()
            .map(|e| (e.path(), out.join(e.file_name())))
            .collect();
        // An earlier run's outputs of the same names are replaced: said (others stay).
        let mut replaced: Vec<String> = moves
            .iter()
            .filter(|(_, to)| to.exists())
            .filter_map(|(_, to)| Some(to.file_name()?.to_string_lossy().into_owned()))
            .collect();
        replaced.sort();
        crate::atomic::rename_all_into_place(&moves)?;
        if !replaced.is_empty() {
            tracing::info!(
                "replaced an earlier run's {} in {}",
                replaced.join(", "),
                out.display()
            );
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Empty after `finish`; what a failed run wrote otherwise.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What --out held before a run: a failed run removes what it added (the maps it built, a
/// half-written report), and the folder itself when it made it; what was there stays. A run
/// that succeeds removes what an earlier run into the same folder wrote under evaluate's own
/// names and this run did not write again (candidates of an adaptation not run this time,
/// a camera's trajectories, the plots of a run with ground truth after one without), so the
/// folder of a run that succeeded holds that run only; an input (`--map`) stays. (A run that
/// fails removes what it added and leaves the earlier run's files.)
struct OutState {
    existed: bool,
    entries: std::collections::BTreeSet<std::path::PathBuf>,
    /// evaluate's outputs already there: path, inode and modification time (a file this run
    /// writes is replaced by a rename: another inode).
    outputs: Vec<(std::path::PathBuf, Option<(u64, std::time::SystemTime)>)>,
}

/// Whether `name` is one of the files evaluate writes into --out.
fn is_evaluate_output(name: &str) -> bool {
    let between = |prefix: &str, suffix: &str| {
        name.len() > prefix.len() + suffix.len()
            && name.starts_with(prefix)
            && name.ends_with(suffix)
    };
    matches!(
        name,
        "report.json"
            | "report.md"
            | "submission.txt"
            | "recall_curves.png"
            | "matches.png"
            | "map-none.safetensors"
            | "map-adabn.safetensors"
    ) || between("candidates-", ".jsonl")
        || between("priors-", ".tum")
        || between("truth-", ".tum")
}

fn file_identity(path: &Path) -> Option<(u64, std::time::SystemTime)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((m.ino(), m.modified().ok()?))
}

impl OutState {
    fn of(out: &Path) -> Self {
        let entries: std::collections::BTreeSet<std::path::PathBuf> = std::fs::read_dir(out)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        let outputs = entries
            .iter()
            .filter(|p| {
                p.is_file()
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(is_evaluate_output)
            })
            .map(|p| (p.clone(), file_identity(p)))
            .collect();
        Self {
            existed: out.exists(),
            entries,
            outputs,
        }
    }

    /// After a run that succeeded: removes the earlier run's outputs this run did not write
    /// again (`inputs` stay) and says which.
    fn remove_stale(&self, inputs: &[&Path]) {
        let inputs: Vec<std::path::PathBuf> = inputs
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .collect();
        let mut removed = Vec::new();
        for (path, before) in &self.outputs {
            let rewritten = file_identity(path) != *before;
            let input = path.canonicalize().is_ok_and(|c| inputs.contains(&c));
            if !rewritten && !input {
                match std::fs::remove_file(path) {
                    Ok(()) => removed.push(path.file_name().unwrap_or_default().to_string_lossy()),
                    Err(e) => tracing::warn!(
                        "{}: an earlier run's output this run did not write again could not be \
                         removed ({e}); it is not this run's",
                        path.display()
                    ),
                }
            }
        }
        if !removed.is_empty() {
            tracing::warn!(
                "removed what an earlier run wrote into this folder and this one did not: {}",
                removed.join(", ")
            );
        }
    }

    fn clean_up_after<T>(
        &self,
        out: &Path,
        result: Result<T, PipelineError>,
        inputs: &[&Path],
    ) -> Result<T, PipelineError> {
        if result.is_ok() {
            self.remove_stale(inputs);
        }
        if result.is_err() && out.is_dir() {
            if !self.existed {
                let _ = std::fs::remove_dir_all(out);
            } else {
                for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
                    if !self.entries.contains(&e.path()) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        }
        result
    }
}

#[allow(clippy::too_many_arguments)] // run's options, one each
fn run_in(
    choice: &ModelChoice,
    layers: Option<DescriptorSpec>,
    device: tch::Device,
    src: &SourceImages,
    out: &Path,
    // Where the outputs go when the run is done (`out` is its staging folder): the maps are
    // named by it.
    final_out: &Path,
    metric: Option<Metric>,
    per_camera: bool,
    adapt_first: bool,
    photometric: Option<Photometric>,
    rectify: bool,
    yaw_views: Option<&[f64]>,
    options: &crate::localize::Options,
    gate: Option<offline::GateSettings>,
) -> Result<Vec<Report>, PipelineError> {
    let labels = offline::condition_labels(src);
    let (options, centring_note) = centring_for_queries(src, options);
    if let Some(note) = &centring_note {
        tracing::warn!("{note}");
    }
    let options = &options;
    let mut reports = Vec::new();
    // Raw pixels have no statistics to adapt; a network is evaluated both ways.
    let ways: Vec<bool> = match choice {
        ModelChoice::RawPixels => vec![false],
        _ => vec![adapt_first, !adapt_first],
    };
    let mut submission = None;
    let mut warnings: Vec<String> = Vec::new();
    warnings.extend(centring_note);
    for adapt in ways {
        // The progress bars that follow (the map, then the queries) are this adaptation's.
        tracing::info!(
            "adaptation {}: building the map, then localizing the queries",
            if adapt { "adabn" } else { "none" }
        );
        let (mut enc, name) = make_encoder(choice, layers.clone(), device)?;
        let metric = metric.unwrap_or(enc.default_metric());
        // None: the checkpoint's own (what it was trained with), none for the baselines.
        if let Some(p) = photometric {
            // Said once, with the first of the two ways.
            if let Some(warning) = enc
                .photometric_departure(p)
                .filter(|_| adapt == adapt_first)
            {
                tracing::warn!("{warning}");
            }
            enc.set_photometric(p);
        }
        enc.set_rectified(rectify);
        // Centring's needs are refused before the map is encoded (Localizer::new and the
        // evaluation would refuse them after).
        if options.centring == crate::localize::centring::Centring::Running {
            if metric != Metric::Cosine {
                return Err(PipelineError::Centring {
                    path: final_out.join("map-*.safetensors"),
                    why: format!(
                        "it would be searched with the {} metric, and centred descriptors are \
                         compared by their directions: give --metric cosine",
                        metric.name()
                    ),
                });
            }
            if let Some(q) = first_unstamped(src) {
                return Err(PipelineError::CentringTimestamp {
                    path: q.path.clone(),
                });
            }
        }
        let map_path = out.join(format!(
            "map-{}.safetensors",
            if adapt { "adabn" } else { "none" }
        ));
        // `yaw_views` None: the default views, where every map image has intrinsics.
        let opts = BuildOptions {
            adapt,
            f16: false,
            metric,
            compress: None,
            yaw_views: yaw_views.map_or_else(crate::map::views::default_yaw_views, <[f64]>::to_vec),
            yaw_views_by_default: yaw_views.is_none(),
        };
        let built = crate::map::build_map(&mut enc, src, &map_path, &opts)?;
        if let Some(note) = built.note {
            if !warnings.contains(&note) {
                tracing::warn!("{note}");
                warnings.push(note);
            }
        }
        // Queries go through the same Localizer as localize and the node: the map, as
        // opened, with the node's defaults (named by the path it will have).
        let mut opened = MapFile::open(&map_path)?;
        if let Some(name) = map_path.file_name() {
            opened.path = final_out.join(name);
        }
        let map = std::sync::Arc::new(opened);
        let loc = Localizer::new(
            enc,
            map,
            crate::localize::Options {
                metric: Some(metric),
                ..options.clone()
            },
        )?;
        for w in &loc.warnings {
            if !warnings.contains(w) {
                warnings.push(w.clone());
            }
        }
        let (report, sub, said) = offline::evaluate(&loc, src, &labels, per_camera, &name, gate)?;
        for w in said {
            if !warnings.contains(&w) {
                warnings.push(w);
            }
        }
        if submission.is_none() {
            submission = Some(sub);
        }
        let scored = report.all.queries;
        reports.push(report);
        if scored == 0 {
            break; // no ground truth: one submission, nothing to compare
        }
    }
    write_outputs(out, src, &warnings, reports, submission)
}

/// evaluate --map: scores the queries against a prebuilt map (the deployed f16 or compressed
/// one, say) through the Localizer, encoding with the map's own checkpoint (or `checkpoint`)
/// and adaptation, at the map's metric. One report.
#[allow(clippy::too_many_arguments)] // run's options, one each
pub fn run_on_map(
    map: &Path,
    checkpoint: Option<&Path>,
    device: tch::Device,
    src: &SourceImages,
    out: &Path,
    per_camera: bool,
    options: &crate::localize::Options,
    gate: Option<offline::GateSettings>,
) -> Result<Vec<Report>, PipelineError> {
    // The map is opened (and checked) before the output folder is made.
    let (options, centring_note) = centring_for_queries(src, options);
    if let Some(note) = &centring_note {
        tracing::warn!("{note}");
    }
    let (loc, used) = Localizer::load(map, checkpoint, device, options)?;
    let name = match loc.map.meta.encoder.kind {
        crate::map::file::EncoderKind::RawPixels => "raw-pixels".to_string(),
        crate::map::file::EncoderKind::Dasgil => used
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let before = OutState::of(out);
    prepare_out(src, out)?;
    let labels = offline::condition_labels(src);
    let mut warnings = loc.warnings.clone();
    if let Some(note) = centring_note {
        warnings.insert(0, note);
    }
    let result = offline::evaluate(&loc, src, &labels, per_camera, &name, gate).and_then(
        |(report, sub, said)| {
            warnings.extend(said);
            let staged = Staged::new(out)?;
            let reports = write_outputs(&staged.dir, src, &warnings, vec![report], Some(sub))?;
            staged.finish(out)?;
            Ok(reports)
        },
    );
    before.clean_up_after(out, result, &[map])
}

/// `path` made absolute, its links resolved as far as it exists and `.`/`..` taken component
/// by component after them (`x/..` is the parent of where `x` leads, as the file system reads
/// it), so a folder not made yet compares with canonical paths.
fn absolute_through_links(path: &Path) -> std::path::PathBuf {
    use std::path::Component;
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let mut out = std::path::PathBuf::new();
    for part in abs.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
        if let Ok(real) = out.canonicalize() {
            out = real;
        }
    }
    out
}

/// The checks both ways of evaluate make before any work.
fn prepare_out(src: &SourceImages, out: &Path) -> Result<(), PipelineError> {
    if src.queries.is_empty() {
        return Err(PipelineError::NoQueries {
            root: src.source.root.clone(),
        });
    }
    refuse_out_in_source(src, out)?;
    std::fs::create_dir_all(out)
        .map_err(|e| crate::atomic::PathIoError::new("cannot create folder", out, e))?;
    remove_abandoned_staging(out);
    Ok(())
}

/// The staging folders (`.evaluate.partial-PID`, [`Staged`]) of runs into `out` that were
/// killed (no Ctrl-C handler ran: SIGKILL, out of memory): removed, and said.
fn remove_abandoned_staging(out: &Path) {
    for e in std::fs::read_dir(out).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(".evaluate.partial-")
            .and_then(|pid| pid.parse::<libc::pid_t>().ok())
            .filter(|&p| p > 0)
        else {
            continue;
        };
        // Folders only (a link of that name is not ours); gone as synth's staging folders are
        // (no lock file here: its process no longer runs).
        let folder = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_dir());
        if folder
            && crate::synth::output::abandoned(&e.path(), pid)
            && std::fs::remove_dir_all(e.path()).is_ok()
        {
            tracing::info!(
                "removed {}: what a run that was killed (process {pid}) had written",
                e.path().display()
            );
        }
    }
}

/// The folders `images` lie in, each once, links resolved (those that exist).
pub fn image_folders<'a>(
    images: impl IntoIterator<Item = &'a crate::data::PosedImage>,
) -> Vec<std::path::PathBuf> {
    let folders: std::collections::BTreeSet<&Path> =
        images.into_iter().filter_map(|i| i.path.parent()).collect();
    folders
        .into_iter()
        .filter_map(|f| f.canonicalize().ok())
        .collect()
}

/// An output folder (`evaluate --out`, `replay --out`) that is a file, inside the recording or
/// the data set the images come from (an image folder, the folder holding one, or a folder
/// holding the image folders): refused, so reports never mix with the input's files or are
/// read back as part of it.
pub fn refuse_out_in_source(src: &SourceImages, out: &Path) -> Result<(), PipelineError> {
    if out.is_file() {
        return Err(PipelineError::OutIsFile {
            path: out.to_path_buf(),
        });
    }
    let out_abs = absolute_through_links(out);
    // A recording's folder (its frames are extracted elsewhere, so the check below does not
    // see it).
    if let Some(bag) = src
        .source
        .bag
        .as_ref()
        .and_then(|b| Path::new(&b.path).canonicalize().ok())
        .filter(|b| b.is_dir())
    {
        if out_abs.starts_with(&bag) {
            return Err(PipelineError::OutInsideRecording {
                out: out.to_path_buf(),
                bag,
            });
        }
    }
    // The data set's own folder (its root, a slice's folder): not a place for reports either.
    let root = Path::new(&src.source.root).canonicalize().ok();
    let beside = |r: &Path| {
        let name = r.file_name().map(|n| n.to_string_lossy().into_owned());
        r.with_file_name(format!(
            "{}-evaluation",
            name.unwrap_or_else(|| "data".into())
        ))
    };
    let folders = image_folders(src.database.iter().chain(&src.queries));
    // The most telling refusal first: inside an image folder, whichever folder comes first.
    if let Some(images) = folders.iter().find(|i| out_abs.starts_with(i)) {
        return Err(PipelineError::OutInsideImages {
            out: out.to_path_buf(),
            images: images.clone(),
        });
    }
    for images in folders {
        if let Some(r) = root
            .as_ref()
            .filter(|r| out_abs.starts_with(r) && images.starts_with(&out_abs))
        {
            return Err(PipelineError::OutInDataSet {
                out: out.to_path_buf(),
                folder: out_abs,
                images,
                beside: beside(r),
            });
        }
        // Inside the folder that holds an image folder (a slice's folder, whose camera-poses/
        // the reader reads every file of; a KITTI sequence's folder).
        if let (Some(r), Some(folder)) = (root.as_ref(), images.parent()) {
            if folder.starts_with(r) && out_abs.starts_with(folder) {
                return Err(PipelineError::OutInsideDataSetFolder {
                    out: out.to_path_buf(),
                    folder: folder.to_path_buf(),
                    images: images.clone(),
                    beside: beside(r),
                });
            }
        }
    }
    // Anywhere else inside the data set's folder (a RobotCar traversal's gps/ or vo/, a KITTI
    // root's poses/): its reader reads files there too.
    if let Some(r) = root
        .as_ref()
        .filter(|r| r.is_dir() && out_abs.starts_with(r))
    {
        return Err(PipelineError::OutInsideDataSetRoot {
            out: out.to_path_buf(),
            root: r.clone(),
            beside: beside(r),
        });
    }
    Ok(())
}

/// submission.txt's entries: per query its cam_from_world (the benchmark's convention,
/// `name qw qx qy qz tx ty tz` with t = -R C), the inverse of the prior's world_from_cam.
fn submission_entries(sub: &[offline::Localized]) -> Vec<(String, crate::geom::Pose)> {
    sub.iter()
        .map(|l| (l.name.clone(), l.world_from_cam.inverse()))
        .collect()
}

/// submission.txt (from the first report's way), report.json, report.md and the plots.
fn write_outputs(
    out: &Path,
    src: &SourceImages,
    warnings: &[String],
    reports: Vec<Report>,
    submission: Option<Vec<offline::Localized>>,
) -> Result<Vec<Report>, PipelineError> {
    if let Some(sub) = submission {
        crate::data::cmu_seasons::write_submission(
            &out.join("submission.txt"),
            &submission_entries(&sub),
        )?;
        write_tum(out, &sub)?;
    }
    let refs: Vec<&Report> = reports.iter().collect();
    // What was scored (the sequence, format, root and slice), what the data set and the scoring
    // said about it (`notes`: images left out, a RobotCar traversal without vo/vo.csv, ...),
    // and what the Localizer warned about (a metric the covariance was not fitted for), then
    // the reports.
    let notes: Vec<&String> = src.notes.iter().chain(warnings).collect();
    let write_json = || {
        crate::atomic::write_atomic(
            &out.join("report.json"),
            serde_json::to_string_pretty(
                &serde_json::json!({ "source": src.source, "notes": notes, "reports": reports }),
            )
            .unwrap_or_default()
            .as_bytes(),
        )
    };
    if reports.iter().all(|r| r.all.queries == 0) {
        // No ground truth (a benchmark's test slice): the submission is the result.
        write_json()?;
        crate::atomic::write_atomic(
            &out.join("report.md"),
            offline::markdown(&refs, &notes).as_bytes(),
        )?;
        return Ok(reports);
    }
    write_json()?;
    crate::atomic::write_atomic(
        &out.join("report.md"),
        offline::markdown(&refs, &notes).as_bytes(),
    )?;
    for r in &reports {
        let mut lines = String::new();
        for c in &r.candidates {
            lines.push_str(&c.to_string());
            lines.push('\n');
        }
        crate::atomic::write_atomic(
            &out.join(format!("candidates-{}.jsonl", r.adaptation)),
            lines.as_bytes(),
        )?;
    }
    offline::recall_curves(&out.join("recall_curves.png"), &refs)?;
    offline::match_sheet(&out.join("matches.png"), &reports[0], src)?;
    Ok(reports)
}

/// Per camera, the published priors and the truth as TUM trajectories (`priors-<camera>.tum`,
/// `truth-<camera>.tum`; queries with a timestamp), for evo and other trajectory tools.
fn write_tum(out: &Path, localized: &[offline::Localized]) -> Result<(), PipelineError> {
    type Rows = Vec<(i64, crate::geom::Pose)>;
    let mut cameras: std::collections::BTreeMap<&str, (Rows, Rows)> = Default::default();
    for l in localized {
        let Some(us) = l.timestamp_us else { continue };
        let (priors, truth) = cameras.entry(&l.camera).or_default();
        if l.published {
            priors.push((us, l.world_from_cam));
        }
        if let Some(t) = l.truth {
            truth.push((us, t));
        }
    }
    for (camera, (priors, truth)) in cameras {
        let part = crate::bag::file_part(camera);
        crate::atomic::write_atomic(
            &out.join(format!("priors-{part}.tum")),
            offline::tum(&priors).as_bytes(),
        )?;
        if !truth.is_empty() {
            crate::atomic::write_atomic(
                &out.join(format!("truth-{part}.tum")),
                offline::tum(&truth).as_bytes(),
            )?;
        }
    }
    Ok(())
}

/// A recording's frames (`bag::frames::open`), or one drive's images (a RobotCar traversal, a
/// KITTI sequence, Virtual KITTI 2: a data set's `database`), as the queries of `evaluate
/// --map MAP`: their recorded poses are the truth. The map's images are the database (for matches.png): a
/// recording's extracted frames, or a folder data set's images, found by its reader (the map
/// names them by file name); a note says when they are not there.
pub fn map_queries(mut src: SourceImages, map: &Path) -> Result<SourceImages, PipelineError> {
    src.queries = std::mem::take(&mut src.database);
    let m = MapFile::open(map)?;
    // Truth and map must be in one frame: a map from a recording says which.
    if let (Some(mb), Some(qb)) = (&m.meta.source.bag, &src.source.bag) {
        if mb.world_frame != qb.world_frame {
            return Err(PipelineError::Bag(Box::new(crate::bag::BagError::Option {
                field: "--truth-frame".into(),
                expected: format!(
                    "the map's world frame `{}` ({} was built in it)",
                    mb.world_frame,
                    map.display()
                ),
                found: format!("`{}`", qb.world_frame),
            })));
        }
    }
    {
        let s = &m.meta.source;
        let root = std::path::PathBuf::from(&s.root);
        // A folder data set's images by (camera, file name), where its reader finds them.
        let by_name: std::collections::HashMap<(String, String), std::path::PathBuf> = if s
            .bag
            .is_none()
            && root.is_dir()
        {
            crate::data::sources::source(None, None, Some(&s.format), Some(&root), s.slice, None)
                .map(|d| {
                    d.database
                        .into_iter()
                        .filter_map(|p| {
                            let name = p.path.file_name()?.to_string_lossy().into_owned();
                            Some(((p.camera, name), p.path))
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Default::default()
        };
        src.database = (0..m.len())
            .map(|i| {
                let (name, camera) = (&m.meta.names[i], &m.meta.cameras[i]);
                let direct = root.join(name);
                let path = if direct.is_file() {
                    direct
                } else {
                    by_name
                        .get(&(camera.clone(), name.clone()))
                        .cloned()
                        .unwrap_or(direct)
                };
                crate::data::PosedImage {
                    path,
                    camera: camera.clone(),
                    timestamp_us: m.timestamp_us(i),
                    world_from_cam: Some(m.pose(i)),
                    intrinsics: None,
                    distortion: None,
                }
            })
            .filter(|p| p.path.is_file())
            .collect();
        if src.database.is_empty() && !m.is_empty() {
            src.notes.push(format!(
                "matches.png shows no map images: {} names images of {} that are not there",
                map.display(),
                root.display()
            ));
        }
        // The map's own images as queries (the drive the map was built from): each finds
        // itself, so the scores say nothing of localizing another drive.
        let own: std::collections::HashSet<std::path::PathBuf> = src
            .database
            .iter()
            .filter_map(|p| p.path.canonicalize().ok())
            .collect();
        let same = src
            .queries
            .iter()
            .filter(|q| q.path.canonicalize().is_ok_and(|c| own.contains(&c)))
            .count();
        if same > 0 {
            src.notes.push(format!(
                "{same} of the {} queries are images of {} itself (it was built from {}): they \
                 find themselves, so their scores are the map checked against its own images, \
                 not localization; evaluate another drive of the same place (another RobotCar \
                 traversal, another recording) against it",
                src.queries.len(),
                map.display(),
                s.root
            ));
        }
        // KITTI's odometry sequences are separate drives, each in its own frame (its first
        // pose at the origin): one sequence's poses mean nothing in another's map.
        if s.format == "kitti"
            && src.source.format == "kitti"
            && s.slice.is_some()
            && src.source.slice.is_some()
            && s.slice != src.source.slice
        {
            src.notes.push(format!(
                "the map is of KITTI sequence {:02} and the queries are sequence {:02}: each \
                 KITTI odometry sequence is another drive in its own frame (its first pose at \
                 the origin), so the errors compare positions in two unrelated frames",
                s.slice.unwrap_or_default(),
                src.source.slice.unwrap_or_default()
            ));
        }
    }
    Ok(src)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nalgebra::{Quaternion, Translation3, UnitQuaternion, Vector3};

    /// The --out guard's path: links resolved where the path exists, `..` after a folder not
    /// made yet still climbs out of it.
    #[test]
    fn an_out_path_is_compared_as_the_file_system_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().canonicalize().unwrap();
        std::fs::create_dir_all(real.join("data/query")).unwrap();
        std::os::unix::fs::symlink(real.join("data"), real.join("link")).unwrap();
        for (given, want) in [
            ("data/query/tmp/../report", "data/query/report"),
            ("link/query/tmp/../report", "data/query/report"),
            ("link/query/./new", "data/query/new"),
            ("link/..", ""),
            ("data/query/../../elsewhere", "elsewhere"),
        ] {
            let got = absolute_through_links(&real.join(given));
            let want = if want.is_empty() {
                real.clone()
            } else {
                real.join(want)
            };
            assert_eq!(got, want, "{given}");
        }
    }

    /// Every submission line, read back, gives C = -R^T t at the prior's camera centre and R^T
    /// as the prior's world_from_cam rotation (a line holding world_from_cam itself fails).
    #[test]
    fn submission_lines_hold_cam_from_world_whose_centre_is_the_prior() {
        let centre = Vector3::new(12.5, -40.25, 3.0);
        let rot = UnitQuaternion::from_euler_angles(0.3, -0.2, 1.1);
        let world_from_cam = crate::geom::Pose::from_parts(Translation3::from(centre), rot);
        let sub = vec![offline::Localized {
            name: "img_00001_c0_1000us.jpg".into(),
            camera: "c0".into(),
            timestamp_us: Some(1000),
            world_from_cam,
            published: true,
            truth: None,
        }];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("submission.txt");
        crate::data::cmu_seasons::write_submission(&path, &submission_entries(&sub)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let f: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(f.len(), 8, "one line of 8 fields: {text}");
        assert_eq!(f[0], "img_00001_c0_1000us.jpg");
        let v: Vec<f64> = f[1..].iter().map(|x| x.parse().unwrap()).collect();
        let r = UnitQuaternion::from_quaternion(Quaternion::new(v[0], v[1], v[2], v[3]));
        let t = Vector3::new(v[4], v[5], v[6]);
        let c = -(r.inverse() * t);
        assert!(
            (c - centre).norm() < 1e-9,
            "C = -R^T t of the line is {c:?}, the prior's centre is {centre:?}"
        );
        assert!(
            r.inverse().angle_to(&rot) < 1e-9,
            "R^T of the line differs from the prior's rotation by {} rad",
            r.inverse().angle_to(&rot)
        );
    }
}
