//! `dasgil-tools evaluate`: a model or a baseline scored on queries with ground truth.

use std::path::PathBuf;

use anyhow::Result;

use super::args::*;

#[derive(clap::Args)]
pub(crate) struct EvaluateArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// With --map: the recording's frames are the queries, scored against the truth recorded
    /// with them (TF from --truth-frame to each image's frame, or --truth-topic).
    #[command(flatten)]
    bag: BagArgs,
    #[command(flatten)]
    model: ModelArgs,
    /// Score this prebuilt map (e.g. the deployed --f16 or --compress one) instead of building
    /// maps from the sequence's database: encoded with the map's checkpoint (or --checkpoint),
    /// adaptation and metric (--metric searches it with another, as localize --metric); one
    /// report. Not with --baseline, --layers, --adapt, --photometric or --yaw-views: the map
    /// fixed them when it was built.
    #[arg(long, conflicts_with_all = ["baseline", "layers", "adapt", "photometric", "yaw_views"])]
    map: Option<PathBuf>,
    /// Output folder: report.json, report.md, submission.txt, candidates-{none,adabn}.jsonl (each query's first 20 candidates and true position, for fitting the prior: tools/python/fit_prior.py), recall_curves.png, matches.png.
    #[arg(long)]
    out: PathBuf,
    /// The descriptor metric: l1 (the reference's), l2 or cosine. Default: the one the
    /// checkpoint records (the shipped model's: cosine, chosen on validation), else l1; l1 for
    /// the baselines. With --map: the map's own, unless given (warned about when it is not the
    /// one the map's checkpoint records).
    #[arg(long)]
    metric: Option<dasgil::retrieval::Metric>,
    /// Search every camera's entries (default: per camera, as the reference).
    #[arg(long)]
    shared: bool,
    /// Report the adapted map first (both are always reported for a network; the first one is
    /// also written as submission.txt).
    #[arg(long)]
    adapt: bool,
    /// Per-image photometric normalisation of map and query images before encoding (as
    /// build-map --photometric; default: what the checkpoint was trained with, else none).
    /// Not with --map: queries follow the map's mode.
    #[arg(long, value_parser = photometric_parser())]
    photometric: Option<dasgil::data::preprocess::Photometric>,
    /// Rectify map and query images with their intrinsics and lens before encoding (as
    /// build-map --rectify). Not with --map: queries follow the map.
    #[arg(long)]
    rectify: bool,
    /// Yaw views of every map image (as build-map --yaw-views: 3,6 by default where every map
    /// image has intrinsics; none: the reference's map). Not with --map: a map's views are
    /// fixed when it is built, and its queries search them.
    #[arg(long, value_name = "DEGREES|none", value_parser = parse_yaw_views, allow_negative_numbers = true)]
    yaw_views: Option<YawViews>,
    /// The node's `min_confidence` to report what it would publish at (0 to 1; default the
    /// node's): withheld frames are counted in the report's `published` block.
    #[arg(long, default_value_t = dasgil::localize::Options::default().min_confidence, value_parser = parse_unit)]
    min_confidence: f64,
    /// none: each query on its own (the reference's retrieval); sequence: the queries in time
    /// order (every camera's) through the Bayes filter over the map's places that the node's
    /// `filter: sequence` runs (docs/sequence-filter.md). Needs query timestamps.
    #[arg(long, default_value = "none")]
    filter: dasgil::localize::Filter,
    /// running: the map's rows minus the map's mean, each query minus the mean of its
    /// camera's last 30 frames (the map's mean standing in at the start), which takes away what
    /// a whole condition shares (docs/pose-prior.md, "Descriptor centring"); needs the cosine
    /// metric, a map not built with --compress and query timestamps, and refuses without
    /// them. auto (default): running where those hold, else none (said in the log and the
    /// report). none: descriptors compared as encoded (the reference's retrieval).
    #[arg(long, default_value = "auto")]
    centring: dasgil::localize::centring::Centring,
    /// With --filter sequence, the node's `off_map_threshold`: a query whose probability of
    /// being off the map is at least this is withheld (0 to 1; 1: never; default the node's,
    /// 0.5).
    #[arg(long, value_parser = parse_unit, allow_hyphen_values = true)]
    off_map_threshold: Option<f64>,
    /// With --bag and --filter sequence: the recording's nav_msgs/Odometry topic (e.g. /odom),
    /// the node's `odometry_topic`: the distance travelled between frames, and the velocity's
    /// direction, move the filter's belief as in the node (docs/sequence-filter.md).
    #[arg(long, value_name = "TOPIC")]
    odometry_topic: Option<String>,
    /// With --filter sequence on a RobotCar traversal scored against --map: leave its visual
    /// odometry (vo/vo.csv, read by default) unread, so the filter moves by its speed bounds
    /// alone, as without odometry. Not with --odometry-topic, which reads a recording's.
    #[arg(long, conflicts_with = "odometry_topic")]
    no_odometry: bool,
    /// Search each query only among the map images within this many metres (> 0, at most 1e6;
    /// a distance in 3-D, as the node's `gate_radius`; widened across by --gate-sigmas) of a gating
    /// position, its true position moved by --gate-error: what the node does with a position
    /// prior on its `prior_topic`, e.g. a GNSS fix. A query whose gate holds no map image gets no prior (counted; its
    /// submission line comes from a single-frame search of the whole map). Queries without
    /// ground truth are searched ungated (said).
    #[arg(long, value_name = "METRES", value_parser = parse_gate_radius, allow_hyphen_values = true)]
    gate_radius: Option<f64>,
    /// With --gate-radius: the gating position's error, metres (>= 0), the standard deviation
    /// of each horizontal axis (the map's ground plane), drawn for each query independently
    /// unless --gate-drift is given.
    #[arg(long, value_name = "METRES", requires = "gate_radius", default_value_t = 0.0, value_parser = parse_gate_error, allow_hyphen_values = true)]
    gate_error: f64,
    /// With --gate-radius: the seed of the gating positions' errors.
    #[arg(
        long,
        requires = "gate_radius",
        default_value_t = 0,
        allow_hyphen_values = true,
        value_parser = parse_seed
    )]
    gate_seed: u64,
    /// With --gate-radius: the gate adds this many standard deviations of --gate-error to
    /// --gate-radius in quadrature across (sqrt(R^2 + (K S)^2); along up R), as the node's
    /// gate adds `gate_sigmas` of a prior's covariance to `gate_radius` (default the node's,
    /// 4; 0: the sphere of --gate-radius, as a node given priors without a covariance).
    #[arg(
        long,
        value_name = "K",
        requires = "gate_radius",
        default_value_t = dasgil::localize::gate::GATE_SIGMAS,
        value_parser = parse_gate_sigmas,
        allow_hyphen_values = true
    )]
    gate_sigmas: f64,
    /// With --gate-radius: the gating position's error drifts, with this correlation time in
    /// seconds (> 0), as a GNSS error does: each query's error is drawn from the one before it
    /// in time (the queries' timestamps), the cameras of one capture sharing it. Left out: drawn
    /// for each query independently.
    #[arg(
        long,
        value_name = "SECONDS",
        requires = "gate_radius",
        value_parser = parse_gate_drift,
        allow_hyphen_values = true
    )]
    gate_drift: Option<f64>,
    /// Not an evaluate option (build-map's): named here so a user who gives it learns how to
    /// score a compressed map, instead of clap's nearest spelling (`--cameras`).
    #[arg(long, hide = true, num_args = 0..=1, default_missing_value = "")]
    compress: Option<String>,
}

pub(crate) fn run_evaluate(a: EvaluateArgs) -> Result<()> {
    use dasgil::eval::offline::threshold_name;
    if a.map.is_some() && a.rectify {
        // A usage error (exit 2) like clap's conflicts, saying why.
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--rectify is fixed when a map is built: evaluate --map encodes its queries as the \
             map's images were (rectified if the map was built with build-map --rectify, as \
             the summary line and report.json say): leave out --rectify\n",
        )
        .exit();
    }
    if let Some(m) = &a.map {
        crate::args::map_flag(m)?;
    }
    if a.compress.is_some() {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            "--compress is build-map's: evaluate builds exact maps. To score a compressed map, \
             build it with `build-map --compress DIMS` and give it to `evaluate --map FILE`\n",
        )
        .exit();
    }
    if a.off_map_threshold.is_some() && a.filter != dasgil::localize::Filter::Sequence {
        // A usage error (exit 2) like clap's own: the flag would be ignored.
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--off-map-threshold applies to --filter sequence only (given --filter {}): add \
                 --filter sequence, or drop --off-map-threshold\n",
                a.filter.name()
            ),
        )
        .exit();
    }
    if a.odometry_topic.is_some() && a.bag.path().is_none() {
        clap::Error::raw(
            clap::error::ErrorKind::MissingRequiredArgument,
            "--odometry-topic reads a recording's odometry: give the recording with --bag REC \
             --image-topic TOPIC --map MAP (a folder data set has no odometry)\n",
        )
        .exit();
    }
    if a.no_odometry && a.filter != dasgil::localize::Filter::Sequence {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--no-odometry applies to --filter sequence only (the filter here: {}): add \
                 --filter sequence, or drop --no-odometry\n",
                a.filter.name()
            ),
        )
        .exit();
    }
    if a.odometry_topic.is_some() && a.filter != dasgil::localize::Filter::Sequence {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--odometry-topic moves the sequence filter's belief (given --filter {}): add \
                 --filter sequence, or drop --odometry-topic\n",
                a.filter.name()
            ),
        )
        .exit();
    }
    // The odometry topic first: a wrong one fails before the recording's frames are extracted.
    let odometry = match (&a.odometry_topic, a.bag.path()) {
        (Some(topic), Some(bag)) => Some(read_odometry(bag, topic)?),
        _ => None,
    };
    let mut src = match a.bag.options() {
        Some(o) => {
            let Some(map) = &a.map else {
                anyhow::bail!(
                    "evaluate --bag scores a recording against a map: give --map (built with \
                     build-map, e.g. from another recording of the site)"
                );
            };
            dasgil::eval::map_queries(open_bag(&o?)?, map).map_err(map_flag_error)?
        }
        None => a.source.open()?,
    };
    src.odometry = odometry;
    let one_drive = matches!(src.source.format.as_str(), "robotcar" | "kitti" | "vkitti2");
    if a.no_odometry && (a.bag.path().is_some() || src.source.format != "robotcar") {
        clap::Error::raw(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "--no-odometry leaves a RobotCar traversal's vo/vo.csv unread (evaluate --format \
                 robotcar --root TRAVERSAL --map MAP --filter sequence); this {} source has no \
                 odometry to leave out: drop it\n",
                if a.bag.path().is_some() {
                    "recording"
                } else {
                    src.source.format.as_str()
                }
            ),
        )
        .exit();
    }
    let notes_before = src.notes.len();
    let drive_map = a
        .map
        .as_ref()
        .filter(|_| one_drive && src.queries.is_empty() && !src.database.is_empty());
    if let Some(map) = drive_map {
        // One drive (a RobotCar traversal, a KITTI sequence, Virtual KITTI 2) has no queries of
        // its own: scored against another drive's map, its images are the queries.
        eprintln!(
            "evaluate: the {} images of {}{} are the queries (a {} data set has no queries of \
             its own; the map is the database)",
            src.database.len(),
            src.source.root,
            match (src.source.format.as_str(), src.source.slice) {
                ("kitti", Some(n)) => format!(" (odometry sequence {n:02})"),
                _ => String::new(),
            },
            src.source.format
        );
        src = dasgil::eval::map_queries(src, map).map_err(map_flag_error)?;
        if src.source.format == "robotcar"
            && a.filter == dasgil::localize::Filter::Sequence
            && !a.no_odometry
        {
            let root = std::path::Path::new(&src.source.root);
            src.odometry = dasgil::data::robotcar::traversal_odometry(root)?;
            if src.odometry.is_none() {
                src.notes.push(format!(
                    "no {}: the sequence filter moves by its speed bounds alone (RobotCar's \
                     visual odometry is a download of its own: put its vo.csv there; \
                     --no-odometry turns this note off)",
                    root.join(dasgil::data::robotcar::VO_FILE).display()
                ));
            }
        }
    }
    // What scoring against the map added (the data set's own notes are said when it opens).
    for note in &src.notes[notes_before..] {
        eprintln!("evaluate: {note}");
    }
    let options = dasgil::localize::Options {
        min_confidence: a.min_confidence,
        filter: a.filter,
        // `auto` leaves queries without stamps uncentred (eval::centring_for_queries).
        centring: a.centring,
        off_map_threshold: a
            .off_map_threshold
            .unwrap_or(dasgil::localize::Options::default().off_map_threshold),
        // A prebuilt map is searched with its own metric unless --metric asks for another;
        // without --map the metric reaches `eval::run` below.
        metric: a.map.as_ref().and(a.metric),
        ..Default::default()
    };
    let gate = a
        .gate_radius
        .map(|radius| dasgil::eval::offline::GateSettings {
            radius,
            error: a.gate_error,
            seed: a.gate_seed,
            sigmas: a.gate_sigmas,
            drift: a.gate_drift.unwrap_or(0.0),
        });
    if let Some(g) = &gate {
        let across = g.searched_radius();
        if across > dasgil::localize::gate::MAX_GATE_RADIUS {
            anyhow::bail!(
                "--gate-radius {} with --gate-error {} and --gate-sigmas {}: a gate reaching \
                 {across:.3} m horizontally, expected at most 1e6 m (a prior that far off gates nothing: leave out \
                 --gate-radius to search the whole map)",
                g.radius,
                g.error,
                g.sigmas
            );
        }
    }
    let reports = if let Some(map) = &a.map {
        dasgil::eval::run_on_map(
            map,
            a.model.checkpoint.as_deref(),
            a.model.device()?,
            &src,
            &a.out,
            !a.shared,
            &options,
            gate,
        )
        .map_err(map_flag_error)?
    } else {
        dasgil::eval::run(
            &a.model.choice()?,
            a.model.layers.clone(),
            a.model.device()?,
            &src,
            &a.out,
            a.metric,
            !a.shared,
            a.adapt,
            a.photometric,
            a.rectify,
            a.yaw_views.as_ref().map(|v| &v.0[..]),
            &options,
            gate,
        )?
    };
    if reports.iter().all(|r| r.all.queries == 0) {
        let n = reports.first().map_or(0, |r| r.unscored);
        println!(
            "no ground truth for any of the {n} listed queries: scores not computed; wrote {}: \
             submission.txt ({n} poses, the benchmark's format), report.json, report.md",
            a.out.display()
        );
        return Ok(());
    }
    if let [first, second] = &reports[..] {
        println!(
            "two reports, one per map-time adaptation: {} first (written as submission.txt), then \
             {}; the node localizes as the report of the adaptation its map was built with \
             (build-map: none unless --adapt)",
            first.adaptation, second.adaptation
        );
    }
    for r in &reports {
        let acc = |t| 100.0 * r.all.accuracy[&threshold_name(t)];
        if r.unscored > 0 {
            println!(
                "{} of {} listed queries have no ground truth: in submission.txt, not scored",
                r.unscored,
                r.unscored + r.all.queries
            );
        }
        println!(
            "{} (layers {}, metric {}, adaptation {}, photometric {}, centring {}{}{}): {} queries, {} map images; (0.25 m, 2 deg) {:.1}%, (0.5 m, 5 deg) {:.1}%, (5 m, 10 deg) {:.1}%; recall@1 (25 m) {:.1}%; median error {:.1} m",
            r.model, r.layers, r.metric, r.adaptation, r.photometric,
            r.centring,
            if r.rectified { ", rectified" } else { "" },
            if r.yaw_views == "none" { String::new() } else { format!(", yaw views {}", r.yaw_views) },
            r.all.queries, r.map_entries,
            acc((0.25, 2.0)), acc((0.5, 5.0)), acc((5.0, 10.0)),
            100.0 * r.all.recall_at_n[&1], r.all.median_position_error
        );
        if let Some(p) = &r.published {
            let t = &p.outcomes;
            let of_those = p
                .scores
                .as_ref()
                .map(|s| {
                    format!(
                        "(5 m, 10 deg) of those {:.1}%, median error {:.1} m, truth inside the 95% ellipsoid {:.1}%, median 95% radius {:.1} m, orientation inside its 95% bound {:.1}%",
                        100.0 * s.accuracy[&threshold_name((5.0, 10.0))],
                        s.median_position_error,
                        100.0 * s.inside_95_ellipsoid,
                        s.median_radius_95,
                        100.0 * s.rotation_inside_95
                    )
                })
                .unwrap_or_else(|| "nothing published".into());
            let gated_out = if r.gate.is_some() {
                format!("; {} with no map image in their gate", t.no_candidates)
            } else {
                String::new()
            };
            println!(
                "    published by the node at min_confidence {}{}: {} of {} ({:.1}%; {}{gated_out}); {of_those}; correct priors per query {} of {} ({:.1}%; a query without a prior counts as a miss, as in replay's correct priors per frame sent)",
                p.min_confidence,
                p.off_map_threshold
                    .map(|t| format!(", off_map_threshold {t}"))
                    .unwrap_or_default(),
                t.localized,
                t.total(),
                100.0 * t.localized as f64 / t.total().max(1) as f64,
                dasgil::eval::offline::withheld_words(
                    t.ambiguous,
                    t.off_the_map,
                    r.filter == "sequence"
                ),
                p.correct(),
                t.total(),
                100.0 * p.correct() as f64 / t.total().max(1) as f64
            );
        }
        // Coverage of the published priors (all priors where none are withheld) outside the
        // band a right calibration reads in: said here as well as in report.md.
        let (n, inside) = match r.published.as_ref().and_then(|p| p.scores.as_ref()) {
            Some(s) => (s.queries, s.inside_95_ellipsoid),
            None => (r.all.queries, r.all.inside_95_ellipsoid),
        };
        if let Some(w) = dasgil::eval::offline::coverage_verdict(inside, n) {
            println!("    truth inside the 95% ellipsoid: {w} (report.md)");
        }
        if let Some(g) = &r.gate {
            println!(
                "    gate: {}",
                dasgil::eval::offline::gate_line(g, r.all.queries)
            );
        }
        if let Some(seq) = &r.sequence {
            println!(
                "    filter sequence (queries in time order through the Bayes filter over the map's places): {} relocalization(s), {} reset(s) after a gap{} (docs/sequence-filter.md)",
                seq.relocalizations,
                seq.resets,
                seq.odometry.as_ref().map(dasgil::eval::offline::odometry_line).unwrap_or_default()
            );
        }
        for (cond, s) in &r.by_condition {
            println!(
                "    {cond}: (5 m, 10 deg) {:.1}%, recall@1 {:.1}%, median {:.1} m",
                100.0 * s.accuracy[&threshold_name((5.0, 10.0))],
                100.0 * s.recall_at_n[&1],
                s.median_position_error
            );
        }
    }
    // The maps it built and scored (none with --map, which scores the given one).
    let maps = match (&a.map, &a.model.baseline) {
        (Some(_), _) => "",
        (None, Some(Baseline::RawPixels)) => ", map-none.safetensors (the map scored)",
        (None, _) => {
            ", map-none.safetensors and map-adabn.safetensors (the maps scored, without and with \
             adaptation; `evaluate --map FILE` scores one again)"
        }
    };
    let camera = src
        .queries
        .first()
        .map_or("c0".to_string(), |q| dasgil::bag::file_part(&q.camera));
    println!(
        "wrote {}: report.json, report.md, submission.txt, candidates-*.jsonl, priors-CAMERA.tum and truth-CAMERA.tum (evo_ape tum truth-{camera}.tum priors-{camera}.tum), recall_curves.png, matches.png{maps}",
        a.out.display()
    );
    Ok(())
}

/// A map that cannot be used, named as the flag that gave it; a file that is no map at all also
/// says what `--map` expects (the other errors as they are).
fn map_flag_error(e: dasgil::error::PipelineError) -> anyhow::Error {
    match e {
        // The error names the file already.
        dasgil::error::PipelineError::Map(m @ dasgil::map::file::MapError::Format { .. }) => {
            anyhow::anyhow!("--map: {m}; {}", crate::args::MAP_EXPECTED)
        }
        dasgil::error::PipelineError::Map(m) => anyhow::anyhow!("--map: {m}"),
        other => other.into(),
    }
}
