//! `dasgil-tools localize`: image files through the one Localizer, reported per image.

use std::path::PathBuf;

use anyhow::Result;

use super::args::*;
use super::args::{parse_point, parse_radius};
use dasgil::data::cmu_seasons::ImageName;
use dasgil::localize::{Frame, Localizer, Outcome, Query};

#[derive(clap::Args)]
pub(crate) struct LocalizeArgs {
    /// The map to search (build-map's output). Queries are encoded the way it was built: its
    /// model, layers, input size, adaptation and photometric mode (said on stderr).
    #[arg(long)]
    map: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    /// Candidates to report and to compute the prior from (1 to 1000; default the node's).
    #[arg(long, default_value_t = dasgil::localize::Options::default().top_k, value_parser = parse_top_k)]
    top_k: usize,
    /// l1, l2 or cosine (default: the map's).
    #[arg(long)]
    metric: Option<dasgil::retrieval::Metric>,
    /// Search every camera's entries (default: only the query's camera, as the reference).
    #[arg(long)]
    shared: bool,
    /// Camera of the images when their names do not say (CMU names do; one that says another
    /// camera the map has is refused). Needed on a map of several cameras, unless --shared.
    /// Not with --shared, which searches every camera's entries.
    #[arg(long, conflicts_with = "shared")]
    camera: Option<String>,
    /// Geo-gating: only entries within --radius metres of this X,Y,Z (map frame).
    #[arg(long, requires = "radius", allow_hyphen_values = true, value_parser = parse_point)]
    near: Option<[f64; 3]>,
    /// Metres (> 0); only with --near.
    #[arg(long, requires = "near", allow_hyphen_values = true, value_parser = parse_radius)]
    radius: Option<f64>,
    /// Matches with confidence (1 - d1/d_alt, docs/pose-prior.md) below this are reported as `ambiguous` (the node
    /// would not publish them); 0 to 1, default the node's.
    #[arg(long, default_value_t = dasgil::localize::Options::default().min_confidence, value_parser = parse_unit)]
    min_confidence: f64,
    /// One JSON object per line instead of text (with `metric`, the one its distances are in).
    #[arg(long)]
    json: bool,
    /// Images to localize.
    #[arg(required = true)]
    images: Vec<PathBuf>,
}

pub(crate) fn run_localize(a: LocalizeArgs) -> Result<()> {
    let near = a
        .near
        .zip(a.radius)
        .map(|(c, r)| dasgil::localize::gate::Gate::sphere(c, r));
    let map = crate::args::open_map(&a.map)?;
    // Queries are encoded with the map's layers; another --layers could never match it.
    if let Some(given) = &a.model.layers {
        if !map.meta.encoder.layers.is_empty() && *given != map.meta.encoder.descriptor_spec() {
            anyhow::bail!(
                "--layers {given}: {} was built with descriptor layers {} and queries are encoded \
                 as the map's images were; leave out --layers, or build a map with --layers {given}",
                a.map.display(),
                map.meta.encoder.layers_name()
            );
        }
    }
    // The frame every pose below is in (world_from_cam: the camera optical frame, REP 103's
    // x right, y down, z forward, in the map's world frame).
    let world = match &map.meta.source.bag {
        Some(b) => format!("`{}`", b.world_frame),
        None => format!("the {} data set's world frame", map.meta.source.format),
    };
    eprintln!(
        "map {}: {} images, encoder {} (layers {}, {} values, metric {}; adaptation {}, \
         photometric {}{}, yaw views {}); queries are encoded the same way{}; poses below are \
         world_from_cam (camera optical frame: x right, y down, z forward) in {world}, metres; \
         sd: the prior's standard deviations (--json: its covariance, row-major 6x6 over x y z \
         roll pitch yaw, m^2 and rad^2)",
        a.map.display(),
        map.len(),
        map.meta.encoder.kind,
        map.meta.encoder.layers_name(),
        map.dim(),
        a.metric
            .map_or(map.meta.metric.clone(), |m| m.name().to_string()),
        map.meta.encoder.adaptation,
        map.meta.encoder.photometric_name(),
        if map.meta.encoder.rectified {
            ", rectified"
        } else {
            ""
        },
        dasgil::map::views::describe(&map.meta.yaw_views_deg),
        if map.meta.encoder.rectified {
            ", except rectification: give rectified images (localize encodes them as they are)"
        } else {
            ""
        }
    );
    // --camera picks the map images to search (not with --shared, which searches all).
    if let (Some(c), false) = (&a.camera, a.shared) {
        if !map.meta.cameras.contains(c) {
            let mut have = map.meta.cameras.clone();
            have.sort();
            have.dedup();
            anyhow::bail!(
                "--camera {c}: the map {} has no images of this camera (it has: {})",
                a.map.display(),
                have.join(", ")
            );
        }
    }
    let choice = match (&a.model.baseline, &a.model.checkpoint) {
        (Some(_), _) | (None, Some(_)) => a.model.choice()?,
        (None, None) if map.meta.encoder.kind == dasgil::map::file::EncoderKind::RawPixels => {
            dasgil::extract::choice::ModelChoice::RawPixels
        }
        (None, None) => dasgil::extract::choice::ModelChoice::Checkpoint(
            map.meta
                .encoder
                .checkpoint
                .as_ref()
                .map(PathBuf::from)
                .filter(|p| p.is_file()),
        ),
    };
    let layers = a.model.layers.clone().or_else(|| {
        (!map.meta.encoder.layers.is_empty()).then(|| map.meta.encoder.descriptor_spec())
    });
    let (enc, _) = dasgil::extract::choice::make_encoder(&choice, layers, a.model.device()?)?;
    let loc = dasgil::localize::Localizer::new(
        enc,
        std::sync::Arc::new(map),
        dasgil::localize::Options {
            metric: a.metric,
            top_k: a.top_k,
            min_confidence: a.min_confidence,
            // Single images have no camera's recent frames to be centred by.
            centring: dasgil::localize::centring::Centring::None,
            ..Default::default()
        },
    )?;
    let results = localize(
        &loc,
        &a.images,
        &LocalizeOptions {
            shared: a.shared,
            camera: a.camera.clone(),
            near,
        },
    );
    let mut failed = 0;
    for r in &results {
        if matches!(r.status, "rejected" | "no_candidates") {
            failed += 1;
        }
        if a.json {
            // The metric the distances are in, on every line (a line is read on its own).
            let mut v = serde_json::to_value(r)?;
            v["metric"] = loc.metric.name().into();
            println!("{}", serde_json::to_string(&v)?);
            continue;
        }
        // The status first, as --json gives it: localized, ambiguous, rejected, no_candidates.
        println!("{}: {}", r.image, r.status);
        for c in &r.candidates {
            println!(
                "  {:>2}. {} ({}) distance {:.5}  t [{:.2}, {:.2}, {:.2}]  q_wxyz [{:.4}, {:.4}, {:.4}, {:.4}]",
                c.rank, c.name, c.camera, c.distance, c.t[0], c.t[1], c.t[2], c.q_wxyz[0], c.q_wxyz[1], c.q_wxyz[2], c.q_wxyz[3]
            );
        }
        if let Some(p) = &r.prior {
            // Standard deviations for people: metres, and degrees for the rotation (the
            // covariance itself, in --json and on the topic, is in radians as ROS has it).
            let sd = |i: usize| p.covariance[i * 7].sqrt();
            let metres: Vec<String> = (0..3).map(|i| format!("{:.2}", sd(i))).collect();
            let degrees: Vec<String> = (3..6)
                .map(|i| format!("{:.1}", sd(i).to_degrees()))
                .collect();
            // Which yaw view of the first candidate's image matched, when one did.
            let view = p
                .view_yaw_deg
                .map(|y| format!("  (its image's view turned {y:+} deg)"))
                .unwrap_or_default();
            println!(
                "  prior: t [{:.2}, {:.2}, {:.2}]  q_wxyz [{:.4}, {:.4}, {:.4}, {:.4}]  sd x y z [{}] m, roll pitch yaw [{}] deg  confidence {:.3}{view}",
                p.t[0], p.t[1], p.t[2], p.q_wxyz[0], p.q_wxyz[1], p.q_wxyz[2], p.q_wxyz[3], metres.join(", "), degrees.join(", "), p.confidence
            );
        }
        if let Some(why) = &r.reason {
            println!("  {}: {why}", r.status);
        }
    }
    if failed > 0 {
        anyhow::bail!(
            "{failed} of {} image(s) could not be localized (each is reported above, with the reason)",
            results.len()
        );
    }
    Ok(())
}

/// One image's answer of `localize`.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Localized {
    pub(crate) image: String,
    /// `localized` (the node would publish it), `ambiguous` (below --min-confidence: the node
    /// would not), `rejected` (the file cannot be a query for this map) or `no_candidates`.
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The camera whose map images were searched (the image's, from its name or --camera, or
    /// the map's one camera); null with --shared (every camera's) or for a rejected image.
    pub(crate) camera: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) candidates: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) prior: Option<Prior>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Candidate {
    pub(crate) rank: usize,
    pub(crate) name: String,
    pub(crate) camera: String,
    pub(crate) distance: f32,
    pub(crate) t: [f64; 3],
    pub(crate) q_wxyz: [f64; 4],
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct Prior {
    pub(crate) t: [f64; 3],
    pub(crate) q_wxyz: [f64; 4],
    pub(crate) covariance: Vec<f64>,
    pub(crate) confidence: f64,
    /// On a map with yaw views: the angle (degrees, positive turned left) of the first
    /// candidate's view that matched better than its image, whose orientation the prior took;
    /// null when the image itself matched best or the map has no views.
    pub(crate) view_yaw_deg: Option<f64>,
}

/// Where `localize` searches (the Localizer's own settings are in its `Options`).
pub(crate) struct LocalizeOptions {
    /// Search all cameras' entries, not only the query's camera.
    pub(crate) shared: bool,
    /// The camera of the images when their names do not say (CMU names do).
    pub(crate) camera: Option<String>,
    pub(crate) near: Option<dasgil::localize::gate::Gate>,
}

fn pose_parts(p: &dasgil::geom::Pose) -> ([f64; 3], [f64; 4]) {
    let t = p.translation.vector;
    ([t.x, t.y, t.z], dasgil::geom::wxyz(&p.rotation))
}

/// Localizes each image against the Localizer's map; an image that fails is reported in its
/// place (the others are still localized).
pub(crate) fn localize(
    loc: &Localizer,
    images: &[PathBuf],
    opts: &LocalizeOptions,
) -> Vec<Localized> {
    let map = &loc.map;
    // The map's cameras, for the reasons below.
    let have = loc.cameras().join(", ");
    images
        .iter()
        .map(|path| {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let said = ImageName::parse(&name).map(|n| n.camera);
            let reject = |reason: String| Localized {
                image: path.display().to_string(),
                status: "rejected",
                reason: Some(reason),
                camera: None,
                candidates: Vec::new(),
                prior: None,
            };
            // --camera is for images whose names do not say, or say a camera the map lacks
            // (another rig's names): then it says which of the map's cameras took the image. A
            // --camera that contradicts a name whose camera the map has is a mistake in one of
            // the two. And per camera (the default), a map of several cameras needs to know the
            // image's: searching them all unasked would answer another question than the one
            // asked.
            let mut problem = None;
            if let (Some(given), Some(s)) = (&opts.camera, &said) {
                if given != s && loc.index.by_camera.contains_key(s) {
                    problem = Some(format!(
                        "its name says camera `{s}` and --camera says `{given}`; drop --camera \
                         (names that say their camera need none) or rename the file"
                    ));
                }
            }
            let named = opts.camera.clone().or(said);
            if named.is_none() && !opts.shared && loc.index.by_camera.len() > 1 {
                problem = Some(format!(
                    "its name does not say which camera took it (Extended CMU-Seasons names \
                     such as img_00001_c0_1303398475046031us.jpg do) and the map has images of \
                     several cameras ({have}): give --camera to say which, or --shared to \
                     search every camera's images"
                ));
            }
            // Either is said once the file is read (a file that cannot be is said so first, by
            // the localization below), without encoding it.
            if let Some(why) = problem {
                if dasgil::localize::decode_frame(&Frame::File(path), map.meta.image_decoding())
                    .is_ok()
                {
                    return reject(why);
                }
            }
            // Per camera (the default), the image's camera must be one the map has, as
            // `evaluate` and the node require (a --camera the map lacks was refused before).
            if let Some(c) = named
                .as_ref()
                .filter(|c| !opts.shared && !loc.index.by_camera.contains_key(*c))
            {
                return reject(format!(
                    "its name says camera `{c}`, which the map does not have (cameras: {have}); \
                     give --camera to say which of the map's cameras took it, or --shared to \
                     search every camera's images"
                ));
            }
            // A map of one camera: that camera's images are every image searched.
            let camera = named.filter(|_| !opts.shared).or_else(|| {
                (!opts.shared && loc.index.by_camera.len() == 1)
                    .then(|| loc.index.by_camera.keys().next().cloned())
                    .flatten()
            });
            let outcome = loc.localize(
                &Frame::File(path),
                &Query {
                    camera: camera.as_deref(),
                    near: opts.near,
                    ..Default::default()
                },
            );
            // The camera searched: none for an image rejected before a search.
            let searched = camera.filter(|_| !matches!(outcome, Outcome::Rejected(_)));
            let (status, reason) = match &outcome {
                Outcome::Prior(_) => ("localized", None),
                Outcome::Ambiguous(a) => (
                    "ambiguous",
                    Some(format!(
                        "confidence {:.3} is below --min-confidence {}",
                        a.prior.confidence, loc.options.min_confidence
                    )),
                ),
                Outcome::Rejected(e) => ("rejected", Some(e.clone())),
                Outcome::NoCandidates(e) => ("no_candidates", Some(e.clone())),
            };
            let answer = outcome.answer();
            Localized {
                image: path.display().to_string(),
                status,
                reason,
                camera: searched,
                candidates: answer
                    .map(|a| {
                        a.hits
                            .iter()
                            .take(loc.options.top_k)
                            .enumerate()
                            .map(|(r, h)| {
                                let (t, q) = pose_parts(&map.pose(h.index));
                                Candidate {
                                    rank: r + 1,
                                    name: map.meta.names[h.index].clone(),
                                    camera: map.meta.cameras[h.index].clone(),
                                    distance: h.distance,
                                    t,
                                    q_wxyz: q,
                                }
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                prior: answer.map(|a| {
                    let (t, q) = pose_parts(&a.prior.pose);
                    Prior {
                        t,
                        q_wxyz: q,
                        covariance: a.prior.covariance.to_vec(),
                        confidence: a.prior.confidence,
                        view_yaw_deg: a.view_yaw_deg,
                    }
                }),
            }
        })
        .collect()
}
