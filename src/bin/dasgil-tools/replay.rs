//! `dasgil-tools replay`: a sequence's query frames, or a rosbag2 recording's frames
//! (`--bag`), played to a running node, the priors it publishes scored.

use std::path::PathBuf;

use anyhow::Result;

use super::args::*;

#[cfg(feature = "ros")]
/// `--transport`: how frames are published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// sensor_msgs/Image rgb8.
    Raw,
    /// sensor_msgs/CompressedImage, the files' bytes (with --rectify, a frame through a lens as
    /// the PNG of its rectified image).
    Compressed,
}

/// `--stamps`: what a frame's header stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum StampsArg {
    /// The frame's timestamp in the data set (file name, times.txt, the recording's header),
    /// moved so that the first frame is stamped when the replay starts, gaps over an hour
    /// shortened to one, each camera's frames in time order: the node's sequence filter sees
    /// the data's speeds and gaps, whatever --rate frames are sent at.
    Data,
    /// The time of sending, as a camera driver stamps capture.
    Send,
}

#[derive(clap::Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// A recording's frames instead of a sequence's queries, scored against the truth recorded
    /// with them; --camera-ids then names the recording's topics (or their --camera-id).
    #[command(flatten)]
    bag: BagArgs,
    /// The map the node runs (names the map image each prior came from in route.png).
    #[arg(long)]
    map: Option<PathBuf>,
    /// Camera topics, comma-separated or the flag repeated (`--topics /c0/image_raw --topics
    /// /c1/image_raw`), parallel to --camera-ids.
    #[arg(long, value_delimiter = ',', default_value = "/camera/image_raw")]
    topics: Vec<String>,
    /// The query camera played on each topic, comma-separated or the flag repeated, parallel to
    /// --topics.
    #[arg(long, value_delimiter = ',', default_value = "c0")]
    camera_ids: Vec<String>,
    /// Frames per second and camera (default 10; with --bag, the recording's rate: the median
    /// interval between a camera's frames).
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// What the frames' header stamps say (default: data when every frame played has a
    /// timestamp in the data set, else send). The cameras of one capture share a timestamp:
    /// a stamp already given moves on by whole nanoseconds (the second camera's is 1 ns later),
    /// so that each prior names its frame.
    #[arg(long, value_enum)]
    stamps: Option<StampsArg>,
    /// raw (sensor_msgs/Image rgb8) or compressed (sensor_msgs/CompressedImage, the files'
    /// bytes; with --rectify, a frame through a lens as the PNG of its rectified image).
    #[arg(long, value_enum, default_value_t = Transport::Raw)]
    transport: Transport,
    /// Publish each frame through a lens rectified with its camera's intrinsics and lens
    /// (undistorted to an ideal pinhole with the same K: what build-map --rectify and evaluate
    /// encode; image_proc's image_rect maps to the calibration's P instead), for a node running
    /// a map built with --rectify (name the node's topics image_rect...). A frame without a
    /// lens (an image_rect topic of a recording, a pinhole data set) is sent as it is.
    #[arg(long)]
    rectify: bool,
    /// The node's output, where its pose priors come back (the node publishes `pose_prior`
    /// in its namespace); not the node's `prior_topic` parameter, which is an input (a GNSS
    /// or odometry position that gates its search). `--prior-topic` is the old name.
    #[arg(
        long = "pose-prior-topic",
        alias = "prior-topic",
        default_value = "/pose_prior"
    )]
    prior_topic: String,
    /// The node's diagnostics, where replay reads what the node did with the frames it did
    /// not answer (withheld, skipped, rejected, outside the gate) and its filter's counts.
    #[arg(long, default_value = "/diagnostics")]
    diagnostics_topic: String,
    /// The frame_id the priors must carry.
    #[arg(long, default_value = "map")]
    frame_id: String,
    /// Seconds to wait for the node to subscribe.
    #[arg(long, default_value_t = 120.0)]
    wait: f64,
    /// At most this many frames per camera.
    #[arg(long)]
    limit: Option<usize>,
    /// Play for this many seconds, cycling through the frames (for load tests).
    #[arg(long)]
    duration: Option<f64>,
    /// Output folder: priors.csv, summary.json, route.png.
    #[arg(long)]
    out: PathBuf,
}

#[cfg(feature = "ros")]
pub(crate) fn run_replay(a: ReplayArgs) -> Result<()> {
    use dasgil::eval::online;
    if std::env::args_os()
        .any(|x| x == "--prior-topic" || x.as_encoded_bytes().starts_with(b"--prior-topic="))
    {
        tracing::warn!(
            "--prior-topic is the old name of --pose-prior-topic (the node's output, its \
             pose_prior); the node's prior_topic parameter is an input"
        );
    }
    if a.topics.len() != a.camera_ids.len() {
        anyhow::bail!(
            "--topics and --camera-ids: expected one camera per topic, found {} topics and {} camera ids",
            a.topics.len(),
            a.camera_ids.len()
        );
    }
    if !(a.wait.is_finite() && a.wait > 0.0 && a.wait <= 86400.0) {
        anyhow::bail!("--wait: expected seconds in (0, 86400], found {}", a.wait);
    }
    if a.out.is_file() {
        anyhow::bail!("--out {}: is a file; expected a folder", a.out.display());
    }
    if a.limit == Some(0) {
        anyhow::bail!("--limit: expected at least 1 frame per camera, found 0");
    }
    if let Some(m) = &a.map {
        crate::args::map_flag(m)?;
    }
    let src = match a.bag.options() {
        Some(o) => {
            let mut s = open_bag(&o?)?;
            s.queries = std::mem::take(&mut s.database);
            s
        }
        None => a.source.open()?,
    };
    dasgil::eval::refuse_out_in_source(&src, &a.out)?;
    let rate = match (a.rate, a.bag.bag.is_some()) {
        (Some(r), _) => r,
        (None, true) => recorded_rate(&src.queries)?,
        (None, false) => 10.0,
    };
    if !src.queries.iter().any(|q| q.world_from_cam.is_some()) {
        anyhow::bail!(
            "{}: no query images with ground truth to replay and score: the {} data set has {} \
             query images, 0 with a pose; replay plays query images with ground truth: the \
             synthetic Extended CMU-Seasons slices (--sequence cmu_slice, cmu_mini; real \
             slices publish no query poses) or a recording's frames (--bag with --pose-topic)",
            src.source.root,
            src.source.format,
            src.queries.len()
        );
    }
    let map = a.map.as_deref().map(crate::args::open_map).transpose()?;
    // Rectifying changes only frames through a lens (not an image_rect topic's, not a pinhole
    // data set's).
    let lens = src
        .queries
        .iter()
        .filter(|q| a.camera_ids.contains(&q.camera))
        .any(|q| dasgil::map::views::lens_of(q.distortion.as_ref()).is_some());
    let intrinsics = src
        .queries
        .iter()
        .filter(|q| a.camera_ids.contains(&q.camera))
        .all(|q| q.intrinsics.is_some());
    // (Without intrinsics, the player refuses --rectify itself, saying why.)
    if a.rectify && !lens && intrinsics {
        eprintln!(
            "replay: --rectify: no frame to play has a lens (intrinsics without distortion, or \
             an image_rect topic): the frames are sent as they are"
        );
    }
    if let (Some(m), Some(path)) = (&map, &a.map) {
        // The node encodes frames as they arrive: they must be what the map's images were.
        let (built, given) = (m.meta.encoder.rectified, a.rectify);
        if built != given && lens {
            eprintln!(
                "replay: warning: map {} was built {} --rectify and the frames are played {}: \
                 the node encodes them as they arrive, so its priors will not be what evaluate \
                 --map scores ({})",
                path.display(),
                if built { "with" } else { "without" },
                if given { "rectified" } else { "as recorded" },
                if built {
                    "give --rectify"
                } else {
                    "leave out --rectify"
                }
            );
        }
    }
    let labels = dasgil::eval::offline::condition_labels(&src);
    use dasgil::node::frame_player::Stamps;
    let stamps = a.stamps.map(|s| match s {
        StampsArg::Data => Stamps::Data,
        StampsArg::Send => Stamps::Send,
    });
    let played = dasgil::node::frame_player::replay(
        &src,
        &dasgil::node::frame_player::ReplayOptions {
            topics: a.topics.clone(),
            cameras: a.camera_ids.clone(),
            rate,
            stamps,
            compressed: a.transport == Transport::Compressed,
            rectify: a.rectify,
            prior_topic: a.prior_topic.clone(),
            diagnostics_topic: a.diagnostics_topic.clone(),
            wait: std::time::Duration::from_secs_f64(a.wait),
            limit: a.limit,
            duration: a
                .duration
                .map(|d| {
                    if d.is_finite() && d > 0.0 && d <= 86400.0 {
                        Ok(std::time::Duration::from_secs_f64(d))
                    } else {
                        Err(anyhow::anyhow!(
                            "--duration: expected seconds in (0, 86400], found {d}"
                        ))
                    }
                })
                .transpose()?,
        },
    )?;
    let (sent, received) = (&played.sent, &played.received);
    let mut summary = online::score(&src, &labels, map.as_ref(), sent, received, &a.frame_id);
    summary.node_filter = played.node_filter.clone();
    summary.node_outcomes = played.node_outcomes;
    summary.interrupted = played.interrupted;
    summary.node_crossed = played.node_crossed.clone();
    summary.stamps = Some(
        match played.stamps {
            Stamps::Data => "data",
            Stamps::Send => "send",
        }
        .into(),
    );
    let png = online::write_outputs(&a.out, &summary, &src, received)?;
    print!("{}", online::summary_text(&summary));
    println!(
        "stamps: {}",
        match played.stamps {
            Stamps::Data => "the data's own (--stamps data; gaps over an hour shortened to one)",
            Stamps::Send => "the time of sending (--stamps send)",
        }
    );
    println!(
        "wrote {}: priors.csv, summary.json; picture: {}",
        a.out.display(),
        png.display()
    );
    if played.interrupted {
        anyhow::bail!(
            "interrupted after {} frames: the results above and in {} cover those",
            summary.frames_sent,
            a.out.display()
        );
    }
    if summary.frames_without_prior == summary.frames_sent {
        let mut why = Vec::new();
        if summary.unknown_stamps > 0 {
            why.push(format!(
                "{} message(s) on {} carried the stamp of no frame sent: is it the node's \
                 output (`pose_prior`, or where it is remapped)? The node's `prior_topic` is an \
                 input (a GNSS or odometry position), not its priors",
                summary.unknown_stamps, a.prior_topic
            ));
        }
        if let Some(o) = summary.node_outcomes {
            if o.no_candidates > 0 {
                why.push(format!(
                    "the node found no map image in the gate of its prior_topic position for \
                     {} frame(s) (/diagnostics prior_gate_m; is that position in the map's \
                     frame and near the route?)",
                    o.no_candidates
                ));
            }
            if o.withheld + o.skipped + o.rejected > 0 {
                why.push(format!(
                    "the node withheld {} frame(s) ({} off the map), skipped {} as stale and \
                     rejected {} (/diagnostics)",
                    o.withheld, o.off_the_map, o.skipped, o.rejected
                ));
            }
        }
        anyhow::bail!(
            "no pose prior came back from the node for {} frames{}",
            summary.frames_sent,
            why.iter().map(|w| format!("; {w}")).collect::<String>()
        );
    }
    Ok(())
}

/// A recording's frame rate per camera: one over the median interval between consecutive
/// frames of a camera (gaps between separate drives do not move a median).
#[cfg(feature = "ros")]
fn recorded_rate(frames: &[dasgil::data::PosedImage]) -> Result<f64> {
    let mut by_camera: std::collections::BTreeMap<&str, Vec<i64>> = Default::default();
    for f in frames {
        if let Some(t) = f.timestamp_us {
            by_camera.entry(&f.camera).or_default().push(t);
        }
    }
    let mut gaps: Vec<i64> = Vec::new();
    for stamps in by_camera.values_mut() {
        stamps.sort_unstable();
        gaps.extend(stamps.windows(2).map(|w| w[1] - w[0]).filter(|&g| g > 0));
    }
    if gaps.is_empty() {
        anyhow::bail!("--bag: fewer than two frames of one camera: give --rate");
    }
    gaps.sort_unstable();
    let rate = 1e6 / gaps[gaps.len() / 2] as f64;
    parse_rate(&rate.to_string())
        .map_err(|e| anyhow::anyhow!("the recording's rate: {e}; give --rate"))
}

/// Frames per second and camera: 0.001 to 1000.
fn parse_rate(s: &str) -> Result<f64, String> {
    let ok = |r: f64| (0.001..=1000.0).contains(&r);
    parse_number_where(s, ok, "frames per second from 0.001 to 1000")
}
