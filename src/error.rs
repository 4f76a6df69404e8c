//! The error of the localization pipeline (sources, extraction, maps, retrieval, localization,
//! evaluation): the steps' own errors, and one named variant per other way a request fails,
//! each saying what was expected and what was found.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Encode(#[from] crate::extract::EncodeError),
    #[error(transparent)]
    Map(#[from] crate::map::file::MapError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Bag(Box<crate::bag::BagError>),
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    #[error(transparent)]
    Io(#[from] crate::atomic::PathIoError),
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    #[error(transparent)]
    SameFile(#[from] crate::atomic::SameFileError),
    /// A sequences file that is not valid YAML of the expected shape.
    #[error("{origin}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    SequencesFile {
        origin: String,
        line: Option<usize>,
        message: String,
    },
    /// A `generate:` recipe that cannot be rendered (nothing is written).
    #[error("sequence {sequence}: its `generate:` recipe cannot render {}: {message}", root.display())]
    GenerateRecipe {
        sequence: String,
        root: PathBuf,
        message: String,
    },
    /// A rendered sequence whose recipe has changed since it was rendered.
    #[error(
        "sequence {sequence}: {} was rendered from another `generate:` recipe than the sequences \
         file gives now (its {} records the one it was made with); remove that folder to render \
         it again, or give the sequence another `root:`",
        root.display(),
        crate::synth::output::MARKER
    )]
    StaleRender { sequence: String, root: PathBuf },
    #[error("--sequence {name}: no such sequence; known: {known}")]
    UnknownSequence { name: String, known: String },
    #[error("give either --sequence NAME or --format with --root, not both")]
    BothSources,
    #[error("which images? give --sequence NAME (e.g. cmu_slice), --format cmu|robotcar|kitti|vkitti2 with --root DIR, or a recording: --bag REC with --image-topic TOPIC")]
    NoSource,
    #[error("--format: expected cmu, kitti, vkitti2 or robotcar, found `{0}`")]
    UnknownFormat(String),
    #[error("format cmu needs a slice (--slice N)")]
    MissingSlice,
    /// KITTI odometry without `--slice` where the data set has several sequences.
    #[error("format kitti reads one odometry sequence per map: give --slice N ({} has {have})", root.display())]
    KittiSequence { root: PathBuf, have: String },
    /// `--cameras` (or a sequence's `cameras`) that the data set cannot give.
    #[error("cameras {given}: {message}")]
    Cameras { given: String, message: String },
    #[error("{root}: no database images to build a map from")]
    NoDatabase { root: String },
    #[error("--compress {dims}: expected fewer projected values than the descriptor has ({dim}); codes as wide as the descriptor only make the map larger (use the exact map, or --compress {} or less)", dim / 4)]
    CompressWide { dims: usize, dim: usize },
    #[error("images without a pose cannot be map entries: {examples}{hint}")]
    Unposed { examples: String, hint: String },
    #[error("{option} {purpose}, which needs the camera's intrinsics; {what} ({doing} without {option}; {hint})")]
    NoIntrinsics {
        /// What to do without the option: `build the map`, `replay`.
        doing: &'static str,
        /// The option that needs them (`--yaw-views`, `--rectify`).
        option: &'static str,
        /// What it does with them.
        purpose: &'static str,
        /// Which images have none: a recording's topics with the reason, or example paths.
        what: String,
        /// Where intrinsics come from.
        hint: String,
    },
    #[error("{}: listed twice with different poses ({first}; then {second}): one image is one place; fix the pose list", path.display())]
    DuplicateEntry {
        path: PathBuf,
        first: String,
        second: String,
    },
    #[error("{root}: no query images to evaluate (evaluate needs a data set with queries, such as an Extended CMU-Seasons slice, and scores need their poses; a RobotCar traversal, a KITTI sequence or Virtual KITTI 2 is one drive: build a map of another drive of the place with build-map and score this one against it with --map MAP)")]
    NoQueries { root: String },
    #[error("{}: no timestamp: the sequence filter orders queries by time (use --filter none, or a data set whose query names or lists give timestamps)", path.display())]
    NoTimestamp { path: PathBuf },
    #[error("{}: no timestamp: --gate-drift draws each query's gate error from the one before it in time (leave out --gate-drift, or use a data set whose query names or lists give timestamps)", path.display())]
    GateDriftTimestamp { path: PathBuf },
    #[error("--out {}: is a file; expected a folder for the report", path.display())]
    OutIsFile { path: PathBuf },
    #[error("--out {}: is inside {}, a folder of the data set's images; expected a folder outside its image folders, so reports never mix with the images", out.display(), images.display())]
    OutInsideImages { out: PathBuf, images: PathBuf },
    #[error("--out {}: is inside the recording {} (--bag); expected a folder outside it, so reports never mix with the recording's files", out.display(), bag.display())]
    OutInsideRecording { out: PathBuf, bag: PathBuf },
    #[error("--out {}: is the data set's folder {}, which holds its image folder {}; expected a folder that holds none of the data set's image folders, best outside the data set (e.g. {}), so reports never mix with its files", out.display(), folder.display(), images.display(), beside.display())]
    OutInDataSet {
        out: PathBuf,
        folder: PathBuf,
        images: PathBuf,
        /// A suggestion: a folder beside the data set's root.
        beside: PathBuf,
    },
    #[error("--out {}: is inside {}, the data set's folder, whose files its reader reads (gps/, vo/, camera-poses/, poses/ ...); expected a folder outside it (e.g. {}), so reports never mix with the data set's files", out.display(), root.display(), beside.display())]
    OutInsideDataSetRoot {
        out: PathBuf,
        root: PathBuf,
        /// A suggestion: a folder beside the data set's root.
        beside: PathBuf,
    },
    #[error("--out {}: is inside {}, the data set's folder of its image folder {}, whose files its reader reads (a report there, e.g. submission.txt under camera-poses/, would be read back as the data set's own); expected a folder outside it (e.g. {})", out.display(), folder.display(), images.display(), beside.display())]
    OutInsideDataSetFolder {
        out: PathBuf,
        folder: PathBuf,
        images: PathBuf,
        /// A suggestion: a folder beside the data set's root.
        beside: PathBuf,
    },
    #[error("query {} is from camera `{camera}`, which the map does not have (cameras: {have})", path.display())]
    QueryCamera {
        path: PathBuf,
        camera: String,
        have: String,
    },
    #[error("query {}: no prior: {why}", path.display())]
    NoPrior { path: PathBuf, why: String },
    #[error("{}: metric: {message}", path.display())]
    MapMetric { path: PathBuf, message: String },
    #[error("map {}: cannot centre its descriptors (centring: running): {why}; or search it as encoded with --centring none (the node: `centring: none`)", path.display())]
    Centring { path: PathBuf, why: String },
    #[error("{}: no timestamp: centring (--centring running) follows each camera's frames in time order (use --centring none, or a data set whose query names or lists give timestamps; --centring auto searches such queries uncentred)", path.display())]
    CentringTimestamp { path: PathBuf },
    #[error("top_k: expected 1 to 1000, found {0}")]
    TopK(usize),
    #[error("no --checkpoint given and the shipped model {} was not found (looked in: {tried}); pass --checkpoint FILE or set DASGIL_MODEL", crate::extract::choice::SHIPPED_MODEL)]
    NoShippedModel { tried: String },
}

impl From<crate::bag::BagError> for PipelineError {
    fn from(e: crate::bag::BagError) -> Self {
        PipelineError::Bag(Box::new(e))
    }
}

/// An I/O error in the words of the rest of the project's errors: "no such file or folder"
/// rather than std's "No such file or directory (os error 2)"; a kind without words of its own
/// keeps the system's message, less the "(os error N)" code.
pub fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    // std's read_to_string on bytes that are not text.
    if e.kind() == K::InvalidData && e.to_string().contains("valid UTF-8") {
        return "not text (UTF-8); expected a text file".into();
    }
    // An error made with words of its own (ours or a library's) keeps them.
    if e.raw_os_error().is_none() {
        return e.to_string();
    }
    match e.kind() {
        K::NotFound => "no such file or folder".into(),
        K::PermissionDenied => "permission denied".into(),
        K::IsADirectory => "is a folder, not a file".into(),
        K::NotADirectory => "the path or a folder in it is a file, not a folder".into(),
        K::AlreadyExists => "already exists".into(),
        K::StorageFull => "no space left on the disk".into(),
        K::ReadOnlyFilesystem => "the file system is read-only".into(),
        _ => {
            let text = e.to_string();
            match text.rfind(" (os error ") {
                Some(at) if text.ends_with(')') => text[..at].to_string(),
                _ => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::io_words;
    use std::io::Error;

    #[test]
    fn io_errors_are_worded_without_the_os_code() {
        let missing = std::fs::read("/nonexistent/dasgil/file").unwrap_err();
        assert_eq!(io_words(&missing), "no such file or folder");
        let folder = std::fs::read(std::env::temp_dir()).unwrap_err();
        assert_eq!(io_words(&folder), "is a folder, not a file");
        let busy = Error::from_raw_os_error(16);
        assert!(!io_words(&busy).contains("os error"), "{}", io_words(&busy));
        assert!(!io_words(&busy).is_empty());
        let path = std::env::temp_dir().join(format!("dasgil-binary-{}", std::process::id()));
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        let binary = std::fs::read_to_string(&path).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(io_words(&binary), "not text (UTF-8); expected a text file");
        let custom = Error::other("disk on fire");
        assert_eq!(io_words(&custom), "disk on fire");
        let ours = Error::new(std::io::ErrorKind::NotFound, "the folder does not exist");
        assert_eq!(io_words(&ours), "the folder does not exist");
    }
}
