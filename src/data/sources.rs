//! Geotagged image sources: the named sequences of config/sequences.yaml (rendering the
//! synthetic ones on first use) and ad hoc data sets (`--format`, `--root`), opened through the
//! format's reader into database and query images with the decoding recipe of their files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{cmu_seasons::CmuSlice, Decode, PosedImage};
use crate::error::PipelineError;
use crate::map::file::SourceMeta;

pub const SEQUENCES_YAML: &str = include_str!("../../config/sequences.yaml");

/// How a missing synthetic sequence is rendered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Generate {
    pub seed: u64,
    #[serde(deserialize_with = "places_at_least_one")]
    pub places: usize,
    #[serde(deserialize_with = "spacing_in_range")]
    pub spacing: f64,
    #[serde(deserialize_with = "known_conditions")]
    pub conditions: Vec<String>,
    #[serde(deserialize_with = "width_in_range")]
    pub width: u32,
    #[serde(deserialize_with = "height_in_range")]
    pub height: u32,
    /// A reserved style (`synth cmu --style`), for validation worlds, or the test style.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "known_style"
    )]
    pub style: Option<String>,
    /// `synth cmu --query-lateral` (metres, -5 to 5; 0: none).
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "query_lateral_in_range"
    )]
    pub query_lateral: f64,
    /// `synth cmu --query-yaw-noise` (degrees, 0 to 30; 0: none).
    #[serde(
        default,
        skip_serializing_if = "is_zero",
        deserialize_with = "query_yaw_noise_in_range"
    )]
    pub query_yaw_noise: f64,
    /// `synth cmu --lens` (pinhole or cmu; default pinhole).
    #[serde(default, skip_serializing_if = "crate::synth::cmu::Lens::is_pinhole")]
    pub lens: crate::synth::cmu::Lens,
}

/// A recipe's value read as `T` and refused there (with its line) unless `ok`: "field `F`:
/// expected E, found V", as the command line refuses the same value.
fn checked<'de, D, T>(
    d: D,
    field: &str,
    ok: impl Fn(&T) -> bool,
    expected: &str,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + std::fmt::Display,
{
    let v = T::deserialize(d)?;
    if ok(&v) {
        Ok(v)
    } else {
        Err(serde::de::Error::custom(format!(
            "field `{field}`: expected {expected}, found {v}"
        )))
    }
}

/// What a recipe's `places` takes, as `synth cmu --places`.
fn places_expected() -> String {
    format!("1 to {}", crate::synth::MAX_COUNT)
}

/// What a recipe's field (`NAME.generate.FIELD`, as serde names it) takes where its range check
/// says it, so that a value of the wrong type ("places: -3", "spacing: far") is told the same
/// range as one out of it, not its Rust type's.
fn recipe_expected(field: &str) -> Option<String> {
    use crate::synth::cmu::{QUERY_LATERAL, QUERY_YAW_NOISE, SPACING};
    let (_, name) = field.rsplit_once(".generate.")?;
    Some(match name {
        "places" => places_expected(),
        "width" | "height" => side_expected(),
        "spacing" => SPACING.into(),
        "query_lateral" => QUERY_LATERAL.into(),
        "query_yaw_noise" => QUERY_YAW_NOISE.into(),
        _ => return None,
    })
}

/// `generate: places:` refused there outside 1 to [`crate::synth::MAX_COUNT`], as `synth cmu
/// --places` is.
fn places_at_least_one<'de, D: serde::Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    let ok = |&v: &usize| (1..=crate::synth::MAX_COUNT).contains(&(v as u64));
    checked(d, "places", ok, &places_expected())
}

/// The most query traversals a recipe's `conditions` renders.
const MAX_CONDITIONS: usize = 16;

/// What a recipe's `width` and `height` take, as `synth cmu --width/--height`.
fn side_expected() -> String {
    format!("16 to {} pixels", crate::synth::MAX_SIDE)
}

fn side_ok(v: &u32) -> bool {
    (16..=crate::synth::MAX_SIDE).contains(v)
}

/// `generate: width:` refused there (with its line) outside [`side_expected`].
fn width_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    checked(d, "width", side_ok, &side_expected())
}

/// `generate: height:` refused there (with its line) outside [`side_expected`].
fn height_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    checked(d, "height", side_ok, &side_expected())
}

/// `generate: spacing:` refused there outside what `synth cmu --spacing` takes.
fn spacing_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use crate::synth::cmu::{spacing_ok, SPACING};
    checked(d, "spacing", |&v| spacing_ok(v), SPACING)
}

/// `generate: conditions:` refused there (with its line) when one is not a condition `synth
/// cmu --conditions` knows: before anything is rendered.
fn known_conditions<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    use crate::synth::condition::Condition;
    let v = Vec::<String>::deserialize(d)?;
    if !(1..=MAX_CONDITIONS).contains(&v.len()) {
        return Err(serde::de::Error::custom(format!(
            "field `conditions`: expected 1 to {MAX_CONDITIONS} conditions, found {}",
            v.len()
        )));
    }
    if let Some(c) = v.iter().find(|c| Condition::season(c).is_none()) {
        return Err(serde::de::Error::custom(format!(
            "field `conditions`: expected conditions among {}, found `{c}`",
            Condition::SEASONS.join(", ")
        )));
    }
    // A condition twice would render the same traversal twice and count its queries twice.
    match v.iter().enumerate().find(|(i, c)| v[..*i].contains(c)) {
        Some((_, c)) => Err(serde::de::Error::custom(format!(
            "field `conditions`: expected each condition once, found `{c}` twice"
        ))),
        None => Ok(v),
    }
}

/// `generate: style:` refused there (with its line) when it is not a reserved style.
fn known_style<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use crate::synth::style::{Style, NAMED};
    let v = Option::<String>::deserialize(d)?;
    match &v {
        Some(name) if Style::reserved(name).is_none() => Err(serde::de::Error::custom(format!(
            "field `style`: expected one of {}, found `{name}`",
            NAMED.join(", ")
        ))),
        _ => Ok(v),
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// `generate: query_lateral:` refused there outside -5 to 5 metres, as the command line's
/// `--query-lateral` is.
fn query_lateral_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use crate::synth::cmu::{query_lateral_ok, QUERY_LATERAL};
    checked(d, "query_lateral", |&v| query_lateral_ok(v), QUERY_LATERAL)
}

/// `generate: query_yaw_noise:` refused there outside 0 to 30 degrees.
fn query_yaw_noise_in_range<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    use crate::synth::cmu::{query_yaw_noise_ok, QUERY_YAW_NOISE};
    checked(
        d,
        "query_yaw_noise",
        |&v| query_yaw_noise_ok(v),
        QUERY_YAW_NOISE,
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sequence {
    #[serde(deserialize_with = "known_format")]
    pub format: String,
    pub root: PathBuf,
    #[serde(default)]
    pub slice: Option<u32>,
    #[serde(default)]
    pub cameras: Option<Vec<String>>,
    #[serde(default)]
    pub generate: Option<Generate>,
}

/// The data set layouts a sequence may have.
pub const FORMATS: [&str; 4] = ["cmu", "kitti", "vkitti2", "robotcar"];

/// A sequences file's `format:`, refused there (with its line) when it is none of [`FORMATS`].
fn known_format<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let f = String::deserialize(d)?;
    if FORMATS.contains(&f.as_str()) {
        Ok(f)
    } else {
        Err(serde::de::Error::custom(format!(
            "field `format`: expected cmu, kitti, vkitti2 or robotcar, found `{f}`"
        )))
    }
}

/// The data folder relative sequence roots live under.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DASGIL_DATA") {
        return d.into();
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| ".".into());
    home.join(".cache/dasgil")
}

/// Named sequences from `file` (default: the built-in config/sequences.yaml).
pub fn sequences(file: Option<&Path>) -> Result<BTreeMap<String, Sequence>, PipelineError> {
    let (text, origin) = match file {
        Some(p) => (
            std::fs::read_to_string(p).map_err(|e| {
                crate::atomic::PathIoError::new(
                    "cannot read the sequences file (--sequences)",
                    p,
                    e,
                )
            })?,
            p.display().to_string(),
        ),
        None => (
            SEQUENCES_YAML.to_string(),
            "config/sequences.yaml".to_string(),
        ),
    };
    let parsed: BTreeMap<String, Sequence> = serde_yaml::from_str(&text).map_err(|e| {
        let message = one_path_style(&crate::yaml::explain_in(&text, &e, recipe_expected));
        PipelineError::SequencesFile {
            origin: origin.clone(),
            line: crate::yaml::error_line(&e).map(|l| field_line(&text, l, &message).unwrap_or(l)),
            message,
        }
    })?;
    // serde keeps the last of two sequences of one name without a word: refused, at the second.
    if let Some((name, line)) = twice_defined(&text) {
        return Err(PipelineError::SequencesFile {
            origin,
            line: Some(line),
            message: format!("sequence `{name}` is defined twice; expected each name once"),
        });
    }
    // A camera a generated world will not have: said at the file's `cameras:` line (the flag's
    // `--cameras` is checked when the sequence is resolved).
    for (name, seq) in &parsed {
        let (Some(_), "cmu", Some(given)) = (&seq.generate, seq.format.as_str(), &seq.cameras)
        else {
            continue;
        };
        if let Some((missing, rendered)) = unrendered_camera(given) {
            let message = format!(
                "{name}: field `cameras`: expected cameras among {rendered} (what its \
                 `generate:` recipe renders), found `{missing}`"
            );
            // The field's line among the keys under the sequence's own (top-level) line.
            let start = top_level_keys(&text)
                .find(|(k, _)| k == name)
                .map(|(_, line)| line + 1);
            return Err(PipelineError::SequencesFile {
                origin,
                line: start.and_then(|l| field_line(&text, l, &message)),
                message,
            });
        }
    }
    Ok(parsed)
}

/// The first of `given` that a generated world (`synth cmu`) does not render, with the cameras
/// it does ("c0, c1"): a sequences file's `cameras:` and a `--cameras` flag are told alike.
fn unrendered_camera(given: &[String]) -> Option<(&str, String)> {
    let rendered: Vec<&str> = crate::synth::cmu::CAMERAS.iter().map(|c| c.0).collect();
    let missing = given.iter().find(|c| !rendered.contains(&c.as_str()))?;
    Some((missing.as_str(), rendered.join(", ")))
}

/// The top-level keys of a YAML file's text (unquoted), each with its line (1-based).
fn top_level_keys(text: &str) -> impl Iterator<Item = (String, usize)> + '_ {
    text.lines().enumerate().filter_map(|(i, l)| {
        if l.starts_with([' ', '\t', '#', '-']) || l.starts_with("...") {
            return None;
        }
        let (key, _) = l.split_once(':')?;
        let key = key.trim().trim_matches(['"', '\'']).to_string();
        (!key.is_empty()).then_some((key, i + 1))
    })
}

/// The first top-level key of a YAML file's text written a second time, with that line.
fn twice_defined(text: &str) -> Option<(String, usize)> {
    let mut seen = std::collections::BTreeSet::new();
    top_level_keys(text).find(|(key, _)| !seen.insert(key.clone()))
}

/// "field `a.generate.places`: ..." (serde's path, for a type error) said as the range checks
/// say theirs: "a.generate: field `places`: ...".
fn one_path_style(message: &str) -> String {
    let Some(rest) = message.strip_prefix("field `") else {
        return message.to_string();
    };
    let Some((path, tail)) = rest.split_once('`') else {
        return message.to_string();
    };
    match path.rsplit_once('.') {
        Some((parent, field)) => format!("{parent}: field `{field}`{tail}"),
        None => message.to_string(),
    }
}

/// The line of the field an error names ("... field `places`: ..."), among the keys of the
/// mapping whose first key serde reports (`line`): a check of a recipe's value (a range, a
/// known name) is told where its mapping starts, not where the field is. Comments and blank
/// lines are passed over; the mapping ends at a line indented less than its keys. None when
/// the field is not found there (the reported line is kept).
fn field_line(text: &str, line: usize, message: &str) -> Option<usize> {
    let field = message.split("field `").nth(1)?.split('`').next()?;
    let key = format!("{}:", field.rsplit('.').next()?);
    // A field written twice is at its second line.
    let nth = usize::from(message.contains("duplicate field `"));
    let start = line.checked_sub(1)?;
    let indent = |l: &str| l.len() - l.trim_start().len();
    let base = indent(text.lines().nth(start)?);
    text.lines()
        .enumerate()
        .skip(start)
        .filter(|(_, l)| !(l.trim().is_empty() || l.trim_start().starts_with('#')))
        .take_while(|(_, l)| indent(l) >= base)
        .filter(|(_, l)| indent(l) == base && l.trim_start().starts_with(&key))
        .nth(nth)
        .map(|(i, _)| i + 1)
}

/// The images of a data set: database (the map) and queries with ground truth where known.
pub struct SourceImages {
    pub source: SourceMeta,
    pub database: Vec<PosedImage>,
    pub queries: Vec<PosedImage>,
    pub decode: Decode,
    /// What was left out while opening, and why (said with the command's summary).
    pub notes: Vec<String>,
    /// A recording's odometry (`evaluate --odometry-topic`), for the sequence filter.
    pub odometry: Option<crate::localize::odometry::RecordedOdometry>,
}

/// The images of the chosen cameras (all when none are chosen); a chosen camera with no image
/// in `images` is refused, naming the cameras there are.
fn keep_cameras(
    images: Vec<PosedImage>,
    cameras: &Option<Vec<String>>,
    root: &Path,
) -> Result<Vec<PosedImage>, PipelineError> {
    let Some(c) = cameras else {
        return Ok(images);
    };
    let mut present: Vec<&str> = images.iter().map(|i| i.camera.as_str()).collect();
    present.sort_unstable();
    present.dedup();
    if let Some(missing) = c.iter().find(|c| !present.contains(&c.as_str())) {
        return Err(PipelineError::Cameras {
            given: c.join(","),
            message: format!(
                "no image of camera `{missing}` in {}; its cameras: {}",
                root.display(),
                if present.is_empty() {
                    "none".to_string()
                } else {
                    present.join(", ")
                }
            ),
        });
    }
    Ok(images
        .into_iter()
        .filter(|i| c.contains(&i.camera))
        .collect())
}

/// The one camera folder a single-camera layout reads (KITTI, RobotCar): the chosen one, or
/// `default`.
fn one_camera(
    format: &str,
    cameras: &Option<Vec<String>>,
    known: &[&str],
    default: &str,
) -> Result<String, PipelineError> {
    let Some(c) = cameras else {
        return Ok(default.to_string());
    };
    let refuse = |message: String| PipelineError::Cameras {
        given: c.join(","),
        message,
    };
    match c.as_slice() {
        [one] if known.contains(&one.as_str()) => Ok(one.clone()),
        [one] => Err(refuse(format!(
            "format {format} has no camera `{one}`; expected one of {}",
            known.join(", ")
        ))),
        _ => Err(refuse(format!(
            "format {format} reads one camera per map, found {}; build one map per camera",
            c.len()
        ))),
    }
}

/// KITTI odometry's camera folders.
const KITTI_CAMERAS: [&str; 4] = ["image_0", "image_1", "image_2", "image_3"];

/// The odometry sequences (`sequences/NN` folders) of a KITTI root, in order. A root without a
/// `sequences` folder is refused, pointing at the folder that has one when the root is one
/// level too high (`.../dataset` inside it) or too low (the `sequences` folder itself).
fn kitti_sequences(root: &Path) -> Result<Vec<u32>, PipelineError> {
    let dir = root.join("sequences");
    if !dir.is_dir() {
        let hint = if root.join("dataset").join("sequences").is_dir() {
            format!("; give --root {}", root.join("dataset").display())
        } else if root.file_name().is_some_and(|n| n == "sequences") {
            root.parent()
                .map(|p| format!("; give --root {} (the folder that holds it)", p.display()))
                .unwrap_or_default()
        } else if let Some((seq, above)) = root
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .zip(root.parent())
            .filter(|(_, p)| p.file_name().is_some_and(|n| n == "sequences"))
            .and_then(|(n, p)| Some((n.parse::<u32>().ok()?, p.parent()?)))
        {
            // One sequence's folder (sequences/00): the root is two levels up.
            format!(
                "; {} is one sequence's folder: give --root {} --slice {seq}",
                root.display(),
                if above.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    above
                }
                .display()
            )
        } else {
            String::new()
        };
        return Err(crate::data::DataError::missing(
            &dir,
            format!("the sequences folder of a KITTI odometry data set root{hint}"),
        )
        .into());
    }
    let mut found: Vec<u32> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            // Digits only (parse alone would take `+1`); an empty name does not parse.
            let name = e.file_name().into_string().ok()?;
            name.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| name.parse().ok())
                .flatten()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

fn two_digits(seqs: &[u32]) -> String {
    seqs.iter()
        .map(|s| format!("{s:02}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The odometry sequence a KITTI root without `--slice` means: its only one, or 0 when it has
/// none (the reader then names the missing folder); several are refused, naming them, rather
/// than one chosen silently.
fn kitti_only_sequence(root: &Path, have: &[u32]) -> Result<u32, PipelineError> {
    match have {
        [] => Ok(0),
        [one] => Ok(*one),
        many => Err(PipelineError::KittiSequence {
            root: root.join("sequences"),
            have: two_digits(many),
        }),
    }
}

impl Sequence {
    /// The sequence's root (relative roots under [`data_dir`]), rendered first when missing and
    /// a `generate` recipe is given.
    pub fn resolve(&self, name: &str) -> Result<PathBuf, PipelineError> {
        let root = if self.root.is_absolute() {
            self.root.clone()
        } else {
            data_dir().join(&self.root)
        };
        if let (Some(g), "cmu") = (&self.generate, self.format.as_str()) {
            let slice = self.slice.unwrap_or(2);
            // A recipe that cannot be rendered is refused as such, whether or not an older
            // render is there (which it would otherwise be compared with, and found edited).
            check_recipe(&root, slice, g).map_err(|e| recipe_error(name, &root, e))?;
            // A camera the render will not have is refused before minutes of rendering.
            let given = self.cameras.as_deref().unwrap_or_default();
            if let Some((missing, rendered)) = unrendered_camera(given) {
                return Err(PipelineError::Cameras {
                    given: given.join(","),
                    message: format!(
                        "sequence {name} renders cameras {rendered} (its `generate:` recipe), \
                         not `{missing}`"
                    ),
                });
            }
            if !root.exists() {
                tracing::info!(sequence = name, root = %root.display(), "rendering the synthetic sequence (first use)");
                render_cmu(&root, slice, g).map_err(|e| recipe_error(name, &root, e))?;
            }
            // Also after rendering: another command may have put its render there first. A
            // recipe edited after its first use would otherwise score the old render.
            if let Some((had, had_slice)) = rendered_recipe(&root) {
                if !same_recipe(&had, g) || had_slice.is_some_and(|s| s != slice) {
                    return Err(PipelineError::StaleRender {
                        sequence: name.to_string(),
                        root: root.clone(),
                    });
                }
            }
        }
        Ok(root)
    }

    /// Opens the sequence's images.
    pub fn open(&self, name: Option<&str>, root: &Path) -> Result<SourceImages, PipelineError> {
        let mut source = SourceMeta {
            format: self.format.clone(),
            root: root.display().to_string(),
            slice: self.slice,
            sequence: name.map(str::to_string),
            bag: None,
        };
        match self.format.as_str() {
            "cmu" => {
                let slice = self.slice.ok_or(PipelineError::MissingSlice)?;
                let s = CmuSlice::open(root, slice)?;
                Ok(SourceImages {
                    database: keep_cameras(s.database_images(), &self.cameras, root)?,
                    // A camera the database has may have no queries (a database-only rig).
                    queries: s
                        .query_images()
                        .into_iter()
                        .filter(|i| self.cameras.as_ref().is_none_or(|c| c.contains(&i.camera)))
                        .collect(),
                    source,
                    decode: Decode::Rgb,
                    notes: Vec::new(),
                    odometry: None,
                })
            }
            "kitti" => {
                // The flags first (a camera KITTI does not have), then the folders.
                let cam = one_camera("kitti", &self.cameras, &KITTI_CAMERAS, "image_2")?;
                let have = kitti_sequences(root)?;
                let slice = match self.slice {
                    Some(s) => s,
                    None => kitti_only_sequence(root, &have)?,
                };
                if !have.is_empty() && !have.contains(&slice) {
                    return Err(crate::data::DataError::missing(
                        &root.join("sequences").join(format!("{slice:02}")),
                        format!(
                            "odometry sequence {slice:02} (--slice {slice}); the root has {}",
                            two_digits(&have)
                        ),
                    )
                    .into());
                }
                let seq = format!("{slice:02}");
                let s = crate::data::kitti::OdometrySequence::open(root, &seq, &cam)?;
                source.slice = Some(slice);
                // Said, so that what needs stamps (centring, the sequence filter) can be traced
                // to the file.
                let times = root.join("sequences").join(&seq).join("times.txt");
                let mut notes: Vec<String> = if times.exists() {
                    Vec::new()
                } else {
                    vec![format!(
                        "{}: missing: the images of odometry sequence {seq} have no timestamps \
                         (descriptor centring and --filter sequence follow frames in time order)",
                        times.display()
                    )]
                };
                // poses/NN.txt is cam0's: another camera's images are posed by its offset
                // from calib.txt, which is then needed.
                let calib = root.join("sequences").join(&seq).join("calib.txt");
                if cam != "image_0"
                    && !calib.exists()
                    && s.images.iter().any(|p| p.world_from_cam.is_some())
                {
                    // The offsets in KITTI's published calibrations.
                    let offset = match cam.as_str() {
                        "image_1" => "54 cm",
                        "image_2" => "6 cm",
                        _ => "48 cm",
                    };
                    notes.push(format!(
                        "{}: missing: {cam}'s images are posed as cam0's (poses/{seq}.txt), \
                         without the camera's offset from cam0 that its P{} line gives (about \
                         {offset} in KITTI's calibrations), and have no intrinsics (no yaw views)",
                        calib.display(),
                        cam.trim_start_matches("image_")
                    ));
                }
                for note in &notes {
                    tracing::info!("{note}");
                }
                Ok(SourceImages {
                    database: s.images,
                    queries: Vec::new(),
                    source,
                    decode: Decode::Rgb,
                    notes,
                    odometry: None,
                })
            }
            "vkitti2" => {
                let ds = crate::data::vkitti2::Vkitti2::open(
                    &crate::data::vkitti2::Vkitti2Roots::official(root),
                )?;
                Ok(SourceImages {
                    database: keep_cameras(ds.posed_images(), &self.cameras, root)?,
                    queries: Vec::new(),
                    source,
                    decode: Decode::Rgb,
                    notes: Vec::new(),
                    odometry: None,
                })
            }
            "robotcar" => {
                let cam = one_camera(
                    "robotcar",
                    &self.cameras,
                    &crate::data::robotcar::CAMERAS,
                    "stereo/centre",
                )?;
                let t = crate::data::robotcar::Traversal::open(root, &cam)?;
                let decode = t.decode();
                // Every real traversal has frames before the first or after the last INS row:
                // they are skipped and counted, never given an extrapolated pose.
                let listed = t.images.len();
                let (before, after) = t.images.iter().filter(|p| p.world_from_cam.is_none()).fold(
                    (0, 0),
                    |(b, a), p| match p.timestamp_us {
                        Some(ts) if ts < t.ins_span.0 => (b + 1, a),
                        _ => (b, a + 1),
                    },
                );
                let mut notes = Vec::new();
                if before + after > 0 {
                    notes.push(format!(
                        "skipped {} of {listed} images outside the INS span {}..{} µs of {} \
                         ({before} before its first row, {after} after its last): a pose is \
                         never extrapolated",
                        before + after,
                        t.ins_span.0,
                        t.ins_span.1,
                        root.join("gps/ins.csv").display(),
                    ));
                    tracing::warn!("{}", notes[0]);
                }
                if cam.starts_with("mono_") {
                    // The SDK undistorts these with its camera models (models/, a download of
                    // its own); the map takes the frames as recorded.
                    let note = format!(
                        "{cam}: the images are used as recorded (demosaiced, not undistorted: \
                         the RobotCar SDK's camera models are not read), so the map's images are \
                         the raw fisheye views; give the node the same camera's raw frames, \
                         not rectified ones"
                    );
                    tracing::info!("{note}");
                    notes.push(note);
                }
                if t.unlisted > 0 {
                    let base = cam.split('/').next().unwrap_or(&cam);
                    let note = format!(
                        "{} PNG file(s) in {} are not listed in {} and are not read (only the \
                         images the timestamps file lists are; a line deleted by hand?)",
                        t.unlisted,
                        root.join(&cam).display(),
                        root.join(format!("{base}.timestamps")).display()
                    );
                    tracing::warn!("{note}");
                    notes.push(note);
                }
                Ok(SourceImages {
                    database: t
                        .images
                        .into_iter()
                        .filter(|p| p.world_from_cam.is_some())
                        .collect(),
                    queries: Vec::new(),
                    source,
                    decode,
                    notes,
                    odometry: None,
                })
            }
            other => Err(PipelineError::UnknownFormat(other.to_string())),
        }
    }
}

/// The `generate` recipe a rendered sequence's marker records, and its slice (markers before
/// 2026-12-03 have none). None: no recipe, or one this version cannot read (a folder `synth
/// cmu` wrote by hand, a marker with fields unknown here): not checked.
fn rendered_recipe(root: &Path) -> Option<(Generate, Option<u32>)> {
    let marker = crate::synth::output::read_marker(root)?;
    let recipe = serde_json::from_value(marker.get("generate")?.clone()).ok()?;
    let slice = marker
        .get("slice")
        .and_then(|s| s.as_u64())
        .and_then(|s| u32::try_from(s).ok());
    Some((recipe, slice))
}

/// The same recipe, numbers compared to 1e-9 (relative): the marker's JSON numbers may read
/// back one unit in the last place away from what was written. A number that is not finite
/// is the same only as itself (an infinity is not "close" to every number).
fn same_recipe(a: &Generate, b: &Generate) -> bool {
    let close = |x: f64, y: f64| {
        if x.is_finite() && y.is_finite() {
            (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(1e-300)
        } else {
            x == y
        }
    };
    a.seed == b.seed
        && a.places == b.places
        && close(a.spacing, b.spacing)
        && a.conditions == b.conditions
        && a.width == b.width
        && a.height == b.height
        && a.style == b.style
        && close(a.query_lateral, b.query_lateral)
        && close(a.query_yaw_noise, b.query_yaw_noise)
        && a.lens == b.lens
}

/// A recipe that cannot be rendered, named by its sequence.
fn recipe_error(name: &str, root: &Path, e: PipelineError) -> PipelineError {
    match e {
        PipelineError::Synth(crate::synth::SynthError::Options(message)) => {
            PipelineError::GenerateRecipe {
                sequence: name.to_string(),
                root: root.to_path_buf(),
                message,
            }
        }
        other => other,
    }
}

/// The `synth cmu` options a recipe renders with, into `out`.
fn recipe_options(out: PathBuf, slice: u32, g: &Generate) -> crate::synth::cmu::Options {
    crate::synth::cmu::Options {
        out,
        seed: g.seed,
        slice,
        places: g.places,
        spacing: g.spacing,
        conditions: g.conditions.clone(),
        width: g.width,
        height: g.height,
        style: g.style.clone(),
        query_lateral: g.query_lateral,
        query_yaw_noise: g.query_yaw_noise,
        lens: g.lens,
    }
}

/// Whether a recipe can be rendered: `synth cmu`'s option checks and the slice number.
fn check_recipe(root: &Path, slice: u32, g: &Generate) -> Result<(), PipelineError> {
    crate::synth::cmu::check(&recipe_options(root.to_path_buf(), slice, g))?;
    if slice > 1000 {
        return Err(crate::synth::SynthError::Options(format!(
            "slice: expected 0 to 1000, found {slice}"
        ))
        .into());
    }
    Ok(())
}

/// Renders a synthetic CMU slice into `root` (staged beside it, moved into place when done;
/// the options are checked before the staging folder is made, and a failed render removes it).
fn render_cmu(root: &Path, slice: u32, g: &Generate) -> Result<(), PipelineError> {
    check_recipe(root, slice, g)?;
    // The command line's limits on sizes and counts, and disk and memory for the render.
    crate::synth::check_plan(
        &crate::synth::Plan {
            images: (g.places as u64).saturating_mul(2 * (1 + g.conditions.len() as u64)),
            width: g.width,
            height: g.height,
            counts: &[
                ("places", g.places as u64, crate::synth::MAX_COUNT),
                (
                    "conditions (count)",
                    g.conditions.len() as u64,
                    MAX_CONDITIONS as u64,
                ),
            ],
        },
        root,
    )?;
    // Listed for Ctrl-C's handler while it lives.
    let (staging, _listed) = match crate::synth::output::staging(root, false) {
        Ok(s) => s,
        // Another command finished rendering it since `resolve` looked: use that one.
        Err(_) if crate::synth::output::is_complete(root) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    // Whatever fails from here on, the staging folder (ours) goes.
    let rendered = crate::synth::cmu::generate(&recipe_options(staging.clone(), slice, g))
        .and_then(|_| {
            crate::synth::output::finish_unless_present(
                &staging,
                root,
                serde_json::json!({"dataset": "cmu", "generate": g, "slice": slice}),
            )
        });
    if rendered.is_err() && staging.exists() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    rendered?;
    Ok(())
}

/// A named sequence, or an ad hoc one from --format/--root.
pub fn source(
    name: Option<&str>,
    sequences_file: Option<&Path>,
    format: Option<&str>,
    root: Option<&Path>,
    slice: Option<u32>,
    cameras: Option<Vec<String>>,
) -> Result<SourceImages, PipelineError> {
    match (name, format, root) {
        (Some(n), None, None) => {
            let all = sequences(sequences_file)?;
            let seq = all.get(n).ok_or_else(|| PipelineError::UnknownSequence {
                name: n.to_string(),
                known: all.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            let mut seq = seq.clone();
            if let Some(c) = cameras {
                seq.cameras = Some(c);
            }
            let root = seq.resolve(n)?;
            seq.open(Some(n), &root)
        }
        (None, Some(f), Some(r)) => {
            // The root itself first: a root that is not there is said to be so, not through
            // the first file the format reads in it.
            let what = match f {
                "cmu" => Some("an Extended CMU-Seasons data set root (intrinsics.txt, sliceN/)"),
                "kitti" => Some("a KITTI odometry data set root (sequences/, poses/)"),
                "robotcar" => {
                    Some("one RobotCar traversal's folder (stereo.timestamps, gps/, stereo/)")
                }
                "vkitti2" => Some("a Virtual KITTI 2 RGB root (SceneXX folders)"),
                _ => None,
            };
            if let Some(what) = what {
                match std::fs::metadata(r) {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(crate::data::DataError::missing(
                            r,
                            format!("the --root folder, {what}"),
                        )
                        .into());
                    }
                    // Not readable (permissions, a broken mount): said as the system says it.
                    Err(e) => {
                        return Err(crate::data::DataError::layout(
                            r,
                            format!("cannot read the --root folder ({e}); expected {what}"),
                        )
                        .into());
                    }
                    Ok(m) if !m.is_dir() => {
                        return Err(crate::data::DataError::layout(
                            r,
                            format!("is a file; expected the --root folder, {what}"),
                        )
                        .into());
                    }
                    Ok(_) => {}
                }
            }
            let seq = Sequence {
                format: f.to_string(),
                root: r.to_path_buf(),
                slice,
                cameras,
                generate: None,
            };
            seq.open(None, r)
        }
        (Some(_), _, _) => Err(PipelineError::BothSources),
        _ => Err(PipelineError::NoSource),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recipe_error_points_at_its_fields_line_within_its_mapping() {
        let text = "a:\n  format: cmu\n  generate:\n    seed: 1\n# a comment\n\n    places: 0\n\
                    b: {format: png, root: x}\nc:\n  format: cmu\n";
        let says = |f: &str| format!("a.generate: field `{f}`: expected 1 to 100000, found 0");
        // From the mapping's first key, past a comment and a blank line.
        assert_eq!(field_line(text, 4, &says("places")), Some(7));
        // Not another mapping's key of the same name (c's format), nor a deeper one.
        assert_eq!(field_line(text, 8, "b: field `format`: expected cmu"), None);
        assert_eq!(field_line(text, 2, "a: field `seed`: expected"), None);
        assert_eq!(field_line(text, 2, "a: field `format`: expected"), Some(2));
        assert_eq!(field_line(text, 0, &says("places")), None);
        // A field written twice: its second line.
        let twice = "a:\n  format: cmu\n  root: x\n  format: kitti\n";
        assert_eq!(field_line(twice, 2, "a: duplicate field `format`"), Some(4));
    }

    #[test]
    fn a_sequence_defined_twice_is_found_at_its_second_definition() {
        let text = "# a: in a comment\na:\n  root: a\nb: {format: cmu}\n\n'a':\n  root: b\n";
        assert_eq!(twice_defined(text), Some(("a".into(), 6)));
        assert_eq!(twice_defined("a:\n  a: 1\nb:\n  a: 2\n"), None);
        let path = std::env::temp_dir().join(format!("dasgil-twice-{}.yaml", std::process::id()));
        std::fs::write(
            &path,
            "x:\n  format: cmu\n  root: one\nx:\n  format: cmu\n  root: two\n",
        )
        .unwrap();
        let e = sequences(Some(&path)).unwrap_err().to_string();
        std::fs::remove_file(&path).unwrap();
        assert!(
            e.ends_with(":4: sequence `x` is defined twice; expected each name once"),
            "{e}"
        );
    }

    #[test]
    fn a_type_error_names_its_field_as_a_range_check_does() {
        assert_eq!(
            one_path_style("field `a.generate.places`: expected 1 to 100000, found -3"),
            "a.generate: field `places`: expected 1 to 100000, found -3"
        );
        assert_eq!(
            one_path_style("field `batch`: expected"),
            "field `batch`: expected"
        );
        assert_eq!(one_path_style("unknown field `x`"), "unknown field `x`");
    }
}
