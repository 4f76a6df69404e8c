//! rosbag2 storage: a recording folder (`metadata.yaml` plus its files) or one file, MCAP (the
//! default storage since Iron, read with the `mcap` crate) or sqlite3 (`.db3`, read with
//! `rusqlite`), as its topics and the serialized (CDR) messages of chosen topics, in file order.
//!
//! Formats: rosbag2's `metadata.yaml` (`rosbag2_bagfile_information`: `storage_identifier`,
//! `relative_file_paths`, `topics_with_message_count`, `compression_format`/`_mode`); the
//! sqlite3 plugin's tables `topics(id, name, type, serialization_format, ...)` and
//! `messages(id, topic_id, timestamp, data)`; MCAP channels with `ros2msg` schemas named like
//! `sensor_msgs/msg/Image` and `cdr` message encoding. Compression: zstd per message
//! (`compression_mode: MESSAGE`; also recognised by the zstd frame magic in a file read
//! without its metadata.yaml) or per file (`FILE`: `NAME.mcap.zstd`, decompressed into a
//! temporary folder on first read). Metadata versions 1-3 (Dashing, Eloquent) list the files
//! with the recording folder's name in front; later versions relative to it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::BagError;

/// The storage plugin of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    Mcap,
    Sqlite3,
}

impl Storage {
    pub fn name(self) -> &'static str {
        match self {
            Storage::Mcap => "mcap",
            Storage::Sqlite3 => "sqlite3",
        }
    }

    fn of_file(p: &Path) -> Option<Self> {
        match p.extension().and_then(|e| e.to_str()) {
            Some("mcap") => Some(Storage::Mcap),
            Some("db3") => Some(Storage::Sqlite3),
            _ => None,
        }
    }
}

/// The zstd frame magic number (RFC 8878, 3.1.1), little-endian: what a compressed message or
/// file starts with. CDR data starts with its encapsulation header, whose first byte is 0.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];

/// The most a compressed message may decompress to (1 GiB: an 8K 16-bit RGBA frame is 265 MB).
const MAX_MESSAGE_BYTES: u64 = 1 << 30;

/// A recording compressed per file: its files decompressed into a temporary folder (removed
/// when the last clone of the `Bag` is dropped).
#[derive(Debug)]
struct Decompressed {
    // Declared first, so it is dropped first: unlisted before the folder goes.
    _listed: crate::atomic::Unfinished,
    _dir: tempfile::TempDir,
    files: Vec<PathBuf>,
    /// Said of the files while decompressing them (one cut short).
    notes: Vec<String>,
}

/// The temporary folders of decompressed copies: `dasgil-bag-<pid>-<random>` in TMPDIR.
const COPY_PREFIX: &str = "dasgil-bag-";

/// One zstd-compressed message into `out`, refusing one that decompresses to more than `cap`
/// bytes (no message of a camera comes near [`MAX_MESSAGE_BYTES`]; a corrupt or hostile one
/// could otherwise take all memory).
fn unzstd_message(data: &[u8], cap: u64, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    let decoder = zstd::stream::read::Decoder::new(data).map_err(|e| e.to_string())?;
    std::io::Read::read_to_end(&mut std::io::Read::take(decoder, cap + 1), out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > cap {
        return Err(format!(
            "decompresses to more than {cap} bytes ({} MiB): expected one message",
            cap >> 20
        ));
    }
    Ok(())
}

/// A zstd-compressed file into `to`: the bytes written, and the error that stopped it when
/// its data ends inside a frame after some output (a file cut short keeps what it holds
/// before the cut; the storage reader then reads its whole messages). An error before any
/// output is returned.
fn unzstd_file(
    from: impl std::io::Read,
    to: &mut impl std::io::Write,
) -> std::io::Result<(u64, Option<std::io::Error>)> {
    let mut decoder = zstd::stream::read::Decoder::new(from)?;
    let mut buf = vec![0u8; 32 << 10];
    let mut n = 0u64;
    loop {
        match std::io::Read::read(&mut decoder, &mut buf) {
            Ok(0) => return Ok((n, None)),
            Ok(k) => {
                to.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if n > 0 => return Ok((n, Some(e))),
            Err(e) => return Err(e),
        }
    }
}

/// Removes the decompressed copies of runs that ended without removing them (Ctrl-C, a kill):
/// the folders of [`COPY_PREFIX`] whose process is no longer running. Best effort.
fn remove_stale_copies() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(COPY_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        if pid <= 0 || pid == std::process::id() as libc::pid_t {
            continue;
        }
        // SAFETY: signal 0 sends nothing; it only asks whether the process exists.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A topic of the recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub name: String,
    /// `package/msg/Type`.
    pub ty: String,
    /// `cdr` for every ROS 2 recording.
    pub serialization: String,
    /// Messages recorded, when the bag says.
    pub count: Option<u64>,
}

/// One serialized message.
pub struct Record<'a> {
    pub topic: &'a str,
    /// The message's number among its topic's messages, in file order (the same on every read).
    pub index: u64,
    /// When it was recorded, nanoseconds since the UNIX epoch.
    pub log_time_ns: i64,
    /// The CDR bytes, encapsulation header first.
    pub data: &'a [u8],
}

/// An opened recording.
#[derive(Debug, Clone)]
pub struct Bag {
    /// As the user gave it.
    pub path: PathBuf,
    pub storage: Storage,
    pub files: Vec<PathBuf>,
    pub topics: Vec<Topic>,
    /// Said of the recording while opening (a missing metadata.yaml).
    pub notes: Vec<String>,
    /// Per-message zstd compression (`compression_mode: MESSAGE`).
    message_zstd: bool,
    /// Compressed per file (`compression_mode: FILE`): `files` are the `.zstd` files, read
    /// through their decompressed copies (made on first read).
    file_zstd: bool,
    decompressed: std::sync::Arc<std::sync::OnceLock<Result<Decompressed, String>>>,
}

#[derive(Deserialize)]
struct MetadataFile {
    rosbag2_bagfile_information: Metadata,
}

#[derive(Deserialize)]
struct Metadata {
    /// 1-3 list `relative_file_paths` with the folder's name in front (rosbag2 before Foxy).
    #[serde(default)]
    version: u32,
    storage_identifier: String,
    #[serde(default)]
    relative_file_paths: Vec<String>,
    #[serde(default)]
    topics_with_message_count: Vec<TopicCount>,
    #[serde(default)]
    compression_format: String,
    #[serde(default)]
    compression_mode: String,
}

#[derive(Deserialize)]
struct TopicCount {
    topic_metadata: TopicMetadata,
    #[serde(default)]
    message_count: u64,
}

#[derive(Deserialize)]
struct TopicMetadata {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "cdr")]
    serialization_format: String,
}

fn cdr() -> String {
    "cdr".into()
}

fn io(path: &Path, e: impl std::fmt::Display) -> BagError {
    BagError::Open {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

impl Bag {
    /// Opens a recording folder or a single `.mcap`/`.db3` file.
    pub fn open(path: &Path) -> Result<Bag, BagError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            io(
                path,
                format!(
                    "{}; --bag expects a rosbag2 recording: a folder with metadata.yaml, or one \
                     .mcap or .db3 file",
                    crate::error::io_words(&e)
                ),
            )
        })?;
        let mut notes = Vec::new();
        let (storage, files, listed, (message_zstd, file_zstd)) = if meta.is_dir() {
            let yaml = path.join("metadata.yaml");
            if yaml.is_file() {
                let text = std::fs::read_to_string(&yaml).map_err(|e| io(&yaml, e))?;
                let m: MetadataFile =
                    serde_yaml::from_str(&text).map_err(|e| BagError::Metadata {
                        path: yaml.clone(),
                        line: crate::yaml::error_line(&e),
                        message: crate::yaml::explain(&e),
                    })?;
                let m = m.rosbag2_bagfile_information;
                let storage = match m.storage_identifier.as_str() {
                    "mcap" => Storage::Mcap,
                    "sqlite3" => Storage::Sqlite3,
                    other => {
                        return Err(BagError::Storage {
                            path: yaml,
                            found: other.to_string(),
                        })
                    }
                };
                let zstd = match (
                    m.compression_format.as_str(),
                    m.compression_mode.to_ascii_uppercase().as_str(),
                ) {
                    ("", _) | (_, "NONE") | (_, "") => (false, false),
                    ("zstd", "MESSAGE") => (true, false),
                    ("zstd", "FILE") => (false, true),
                    (format, mode) => {
                        return Err(BagError::Compressed {
                            path: yaml,
                            format: format.to_string(),
                            mode: mode.to_string(),
                        })
                    }
                };
                let files: Vec<PathBuf> = m
                    .relative_file_paths
                    .iter()
                    .map(|f| {
                        // Versions 1-3 wrote `<folder>/<file>`: the file is in this folder
                        // (whatever it is called now).
                        match Path::new(f).file_name() {
                            Some(name) if (1..=3).contains(&m.version) => path.join(name),
                            _ => path.join(f),
                        }
                    })
                    .collect();
                if files.is_empty() {
                    return Err(BagError::Metadata {
                        path: yaml,
                        line: None,
                        message: "relative_file_paths is empty: the recording has no files".into(),
                    });
                }
                for f in &files {
                    if !f.is_file() {
                        return Err(io(
                            f,
                            "listed in metadata.yaml (relative_file_paths) but missing",
                        ));
                    }
                }
                let listed: Vec<Topic> = m
                    .topics_with_message_count
                    .into_iter()
                    .map(|t| Topic {
                        name: t.topic_metadata.name,
                        ty: t.topic_metadata.ty,
                        serialization: t.topic_metadata.serialization_format,
                        count: Some(t.message_count),
                    })
                    .collect();
                (storage, files, Some(listed), zstd)
            } else {
                // A recording that was not closed (the recorder killed) has no metadata.yaml:
                // its data files are read directly.
                let all: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| io(path, e))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                // Files compressed per file need metadata.yaml to be read with the rest (a
                // recorder killed while compressing per file leaves its closed splits so).
                let zstd: Vec<String> = all
                    .iter()
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy())
                            .unwrap_or_default();
                        n.ends_with(".mcap.zstd") || n.ends_with(".db3.zstd")
                    })
                    .map(|p| p.display().to_string())
                    .collect();
                if !zstd.is_empty() {
                    return Err(io(
                        path,
                        format!(
                            "no metadata.yaml, and zstd-compressed files ({}): decompress them \
                             in place (zstd -d --rm) so that every file of the recording is read",
                            zstd.join(", ")
                        ),
                    ));
                }
                let mut files: Vec<PathBuf> = all
                    .into_iter()
                    .filter(|p| Storage::of_file(p).is_some())
                    .collect();
                files.sort();
                let Some(first) = files.first() else {
                    return Err(io(
                        path,
                        "not a rosbag2 recording: no metadata.yaml and no .mcap or .db3 file",
                    ));
                };
                let storage = Storage::of_file(first).expect("filtered");
                if files.iter().any(|f| Storage::of_file(f) != Some(storage)) {
                    return Err(io(
                        path,
                        "holds both .mcap and .db3 files and no metadata.yaml: which recording?",
                    ));
                }
                notes.push(format!(
                    "{}: no metadata.yaml (a recording that was not closed?); read its {} file{} directly",
                    path.display(),
                    files.len(),
                    if files.len() == 1 { "" } else { "s" }
                ));
                (storage, files, None, (false, false))
            }
        } else {
            let storage = Storage::of_file(path).ok_or_else(|| {
                let zstd = path.extension().is_some_and(|e| e == "zstd");
                let yaml = path.file_name().is_some_and(|n| n == "metadata.yaml");
                io(
                    path,
                    format!(
                        "not a rosbag2 recording: expected a recording folder (with \
                         metadata.yaml), a .mcap or a .db3 file{}",
                        if zstd {
                            "; a file of a recording compressed per file is read through its \
                             folder (whose metadata.yaml says so), or decompress it (zstd -d)"
                        } else if yaml {
                            "; give the folder that holds this metadata.yaml"
                        } else {
                            ""
                        }
                    ),
                )
            })?;
            (storage, vec![path.to_path_buf()], None, (false, false))
        };
        let mut bag = Bag {
            path: path.to_path_buf(),
            storage,
            files,
            topics: Vec::new(),
            notes,
            message_zstd,
            file_zstd,
            decompressed: Default::default(),
        };
        bag.topics = match listed {
            Some(t) if !t.is_empty() => t,
            _ => bag.read_topics()?,
        };
        Ok(bag)
    }

    /// `name (type), ...` of the topics whose type `keep` accepts, or `none`: the candidates
    /// an error about a topic option names.
    pub fn topic_list(&self, keep: &dyn Fn(&str) -> bool) -> String {
        let v: Vec<String> = self
            .topics
            .iter()
            .filter(|t| keep(&t.ty))
            .map(|t| format!("{} ({})", t.name, t.ty))
            .collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Topic> {
        self.topics.iter().find(|t| t.name == name)
    }

    /// The files to read: `files`, or for a recording compressed per file their decompressed
    /// copies (decompressed on the first call, into a temporary folder under `TMPDIR`).
    fn data_files(&self) -> Result<Vec<(PathBuf, PathBuf)>, BagError> {
        if !self.file_zstd {
            return Ok(self.files.iter().map(|f| (f.clone(), f.clone())).collect());
        }
        let made = self.decompressed.get_or_init(|| {
            remove_stale_copies();
            // Listed as it is made: Ctrl-C's handler removes it while files are decompressed.
            let (dir, listed) = crate::atomic::Unfinished::made(|| {
                let dir = tempfile::Builder::new()
                    .prefix(&format!("{COPY_PREFIX}{}-", std::process::id()))
                    .tempdir()?;
                let path = dir.path().to_path_buf();
                Ok((dir, path))
            })
            .map_err(|e| format!("cannot make a temporary folder to decompress into: {e}"))?;
            let mut files = Vec::new();
            let mut notes = Vec::new();
            for f in &self.files {
                let name = f
                    .file_name()
                    .map(|n| n.to_string_lossy().trim_end_matches(".zstd").to_string())
                    .unwrap_or_default();
                let out = dir.path().join(&name);
                let mut decode = || -> std::io::Result<u64> {
                    let mut from = std::fs::File::open(f)?;
                    let mut magic = [0u8; 4];
                    std::io::Read::read_exact(&mut from, &mut magic)?;
                    if magic != ZSTD_MAGIC {
                        return Err(std::io::Error::other(
                            "not zstd-compressed (metadata.yaml says compression_mode FILE)",
                        ));
                    }
                    std::io::Seek::rewind(&mut from)?;
                    let mut to = std::io::BufWriter::new(std::fs::File::create(&out)?);
                    let (n, cut) = unzstd_file(from, &mut to)?;
                    if let Some(e) = cut {
                        notes.push(format!(
                            "{}: its zstd data ends after {n} bytes decompressed ({e}; a file \
                             cut short?): what it holds before is read",
                            f.display()
                        ));
                    }
                    std::io::Write::flush(&mut to)?;
                    Ok(n)
                };
                decode().map_err(|e| {
                    format!(
                        "{}: cannot decompress it into {}: {e} (a recording compressed per \
                         file is decompressed before reading; TMPDIR chooses where)",
                        f.display(),
                        out.display()
                    )
                })?;
                files.push(out);
            }
            Ok(Decompressed {
                _listed: listed,
                _dir: dir,
                files,
                notes,
            })
        });
        match made {
            // Each read from its copy, named as the recording's file in what is said.
            Ok(d) => Ok(d
                .files
                .iter()
                .cloned()
                .zip(self.files.iter().cloned())
                .collect()),
            Err(why) => Err(io(&self.path, why)),
        }
    }

    /// The topics the files declare (MCAP channels, sqlite3 `topics` rows).
    fn read_topics(&self) -> Result<Vec<Topic>, BagError> {
        let mut out: BTreeMap<String, Topic> = BTreeMap::new();
        for (f, _) in &self.data_files()? {
            match self.storage {
                Storage::Sqlite3 => {
                    let db = open_sqlite(f)?;
                    let mut st = db
                        .prepare("SELECT name, type, serialization_format FROM topics")
                        .map_err(|e| sqlite(f, e))?;
                    let rows = st
                        .query_map([], |r| {
                            Ok(Topic {
                                name: r.get(0)?,
                                ty: r.get(1)?,
                                serialization: r.get(2)?,
                                count: None,
                            })
                        })
                        .map_err(|e| sqlite(f, e))?;
                    for t in rows {
                        let t = t.map_err(|e| sqlite(f, e))?;
                        out.entry(t.name.clone()).or_insert(t);
                    }
                }
                Storage::Mcap => {
                    let map = map_file(f)?;
                    let summary = mcap::Summary::read(&map).ok().flatten();
                    let channels: Vec<(String, String, String)> = match summary {
                        Some(s) if !s.channels.is_empty() => {
                            s.channels.values().map(|c| channel_topic(c)).collect()
                        }
                        // No summary (a truncated recording): the channels met on a linear read.
                        _ => {
                            let mut seen = HashMap::new();
                            let stream = mcap::MessageStream::new_with_options(
                                &map,
                                mcap::read::Options::IgnoreEndMagic.into(),
                            )
                            .map_err(|e| mcap_error(f, e))?;
                            for m in stream {
                                let m = match m {
                                    Ok(m) => m,
                                    // Nothing readable at all: not an MCAP file (an empty or
                                    // corrupt one), which is no recording without topics.
                                    Err(e) if seen.is_empty() => return Err(mcap_error(f, e)),
                                    // A recording cut short: the channels before the cut.
                                    Err(_) => break,
                                };
                                seen.entry(m.channel.id)
                                    .or_insert_with(|| channel_topic(&m.channel));
                            }
                            seen.into_values().collect()
                        }
                    };
                    for (name, ty, ser) in channels {
                        out.entry(name.clone()).or_insert(Topic {
                            name,
                            ty,
                            serialization: ser,
                            count: None,
                        });
                    }
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// Calls `f` with every message of `topics`, in file order (sqlite3: by recording time).
    /// A file that ends mid-record (a recording cut short) is read up to its last whole message
    /// and said in the returned notes.
    pub fn read(
        &self,
        topics: &[&str],
        mut f: impl FnMut(Record<'_>) -> Result<(), BagError>,
    ) -> Result<Vec<String>, BagError> {
        let mut notes = Vec::new();
        let mut counters: HashMap<String, u64> = HashMap::new();
        for t in topics {
            if let Some(topic) = self.topic(t) {
                if topic.serialization != "cdr" {
                    return Err(BagError::Serialization {
                        path: self.path.clone(),
                        topic: t.to_string(),
                        found: topic.serialization.clone(),
                    });
                }
            }
        }
        let mut scratch = Vec::new();
        let mut deliver = |topic: &str, log_time_ns: i64, data: &[u8], file: &Path| {
            let counter = counters.entry(topic.to_string()).or_insert(0);
            let index = *counter;
            *counter += 1;
            // Compressed per message: said by metadata.yaml, or (a file read without it) by
            // the zstd magic, which no CDR message starts with.
            let data = if self.message_zstd || data.starts_with(&ZSTD_MAGIC) {
                unzstd_message(data, MAX_MESSAGE_BYTES, &mut scratch).map_err(|why| {
                    BagError::Open {
                        path: file.to_path_buf(),
                        why: format!("topic {topic}, message {index}: zstd: {why}"),
                    }
                })?;
                &scratch[..]
            } else {
                data
            };
            f(Record {
                topic,
                index,
                log_time_ns,
                data,
            })
        };
        let files = self.data_files()?;
        if let Some(Ok(d)) = self.decompressed.get() {
            notes.extend(d.notes.iter().cloned());
        }
        for (file, said) in &files {
            match self.storage {
                Storage::Sqlite3 => {
                    // Named as the recording's file (not a decompressed copy) when unreadable.
                    let db = open_sqlite(file).map_err(|e| match e {
                        BagError::Sqlite { message, .. } => BagError::Sqlite {
                            path: said.clone(),
                            message,
                        },
                        other => other,
                    })?;
                    let mut ids: HashMap<i64, String> = HashMap::new();
                    {
                        let mut st = db
                            .prepare("SELECT id, name FROM topics")
                            .map_err(|e| sqlite(said, e))?;
                        let rows = st
                            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
                            .map_err(|e| sqlite(said, e))?;
                        for r in rows {
                            let (id, name) = r.map_err(|e| sqlite(said, e))?;
                            if topics.contains(&name.as_str()) {
                                ids.insert(id, name);
                            }
                        }
                    }
                    if ids.is_empty() {
                        continue;
                    }
                    let list = ids
                        .keys()
                        .map(|i| i.to_string())
                        .collect::<Vec<_>>()
                        .join(",");
                    let mut st = db
                        .prepare(&format!(
                            "SELECT topic_id, timestamp, data FROM messages \
                             WHERE topic_id IN ({list}) ORDER BY timestamp, id"
                        ))
                        .map_err(|e| sqlite(said, e))?;
                    let mut rows = st.query([]).map_err(|e| sqlite(said, e))?;
                    while let Some(r) = rows.next().map_err(|e| sqlite(said, e))? {
                        let id: i64 = r.get(0).map_err(|e| sqlite(said, e))?;
                        let stamp: i64 = r.get(1).map_err(|e| sqlite(said, e))?;
                        let data = r.get_ref(2).map_err(|e| sqlite(said, e))?;
                        let data = data.as_blob().map_err(|e| sqlite(said, e.into()))?;
                        deliver(&ids[&id], stamp, data, said)?;
                    }
                }
                Storage::Mcap => {
                    let map = map_file(file)?;
                    let stream = mcap::MessageStream::new_with_options(
                        &map,
                        mcap::read::Options::IgnoreEndMagic.into(),
                    )
                    .map_err(|e| mcap_error(said, e))?;
                    let mut read = 0usize;
                    let mut ended_inside = false;
                    for m in stream {
                        let m = match m {
                            Ok(m) => m,
                            Err(e) => {
                                if read == 0 {
                                    return Err(mcap_error(said, e));
                                }
                                notes.push(format!(
                                    "{}: the file ends inside a record after {read} messages \
                                     (a recording cut short?): {e}; the messages before it are used",
                                    said.display()
                                ));
                                ended_inside = true;
                                break;
                            }
                        };
                        read += 1;
                        if m.channel.message_encoding != "cdr" {
                            if topics.contains(&m.channel.topic.as_str()) {
                                return Err(BagError::Serialization {
                                    path: said.clone(),
                                    topic: m.channel.topic.clone(),
                                    found: m.channel.message_encoding.clone(),
                                });
                            }
                            continue;
                        }
                        if !topics.contains(&m.channel.topic.as_str()) {
                            continue;
                        }
                        let t = i64::try_from(m.log_time).unwrap_or(i64::MAX);
                        deliver(&m.channel.topic, t, &m.data, said)?;
                    }
                    // Cut between records: every record read whole, but no footer (MCAP ends
                    // with the magic after its footer).
                    if !ended_inside && !map.ends_with(MCAP_MAGIC) {
                        notes.push(format!(
                            "{}: the file has no MCAP footer at its end (a recording cut short: \
                             `ros2 bag record` killed, or the file copied while it recorded); its \
                             {read} messages up to the end are used",
                            said.display()
                        ));
                    }
                }
            }
        }
        Ok(notes)
    }
}

fn channel_topic(c: &mcap::Channel<'_>) -> (String, String, String) {
    (
        c.topic.clone(),
        c.schema
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default(),
        c.message_encoding.clone(),
    )
}

/// The bytes an MCAP file starts and ends with.
const MCAP_MAGIC: &[u8] = b"\x89MCAP0\r\n";

/// An MCAP file mapped into memory; one that does not start with the MCAP magic (an empty
/// file, another format named .mcap, a zstd-compressed one) is refused, naming what it found.
fn map_file(f: &Path) -> Result<memmap2::Mmap, BagError> {
    let file = std::fs::File::open(f).map_err(|e| io(f, e))?;
    // SAFETY: the recording is only read; a writer truncating it meanwhile is the one case a
    // map can fault on, as with any reader of a file being rewritten.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io(f, e))?;
    if !map.starts_with(MCAP_MAGIC) {
        let found = if map.is_empty() {
            "an empty file".to_string()
        } else if map.starts_with(&ZSTD_MAGIC) {
            "a zstd-compressed file (decompress it with `zstd -d`, or read its recording's \
             folder, whose metadata.yaml says compression_mode FILE)"
                .to_string()
        } else {
            let head: Vec<String> = map.iter().take(8).map(|b| format!("{b:02x}")).collect();
            if map.len() < MCAP_MAGIC.len() {
                format!("a file of only {} bytes, {}", map.len(), head.join(" "))
            } else {
                format!("bytes {}", head.join(" "))
            }
        };
        return Err(BagError::Mcap {
            path: f.to_path_buf(),
            message: format!(
                "expected the MCAP magic `89 4d 43 41 50 30 0d 0a` first, found {found}"
            ),
        });
    }
    Ok(map)
}

fn open_sqlite(f: &Path) -> Result<rusqlite::Connection, BagError> {
    let db = rusqlite::Connection::open_with_flags(
        f,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| sqlite(f, e))?;
    // A file that is not a database is only found out at the first query.
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .and_then(|mut st| {
            st.query_map([], |r| r.get::<_, String>(0))?
                .collect::<Result<_, _>>()
        })
        .map_err(|e| sqlite(f, e))?;
    // rosbag2's sqlite3 storage keeps its topics and messages in these two tables.
    let missing: Vec<&str> = ["topics", "messages"]
        .into_iter()
        .filter(|t| !tables.iter().any(|n| n == t))
        .collect();
    if !missing.is_empty() {
        let found = if tables.is_empty() {
            match std::fs::metadata(f).map(|m| m.len()) {
                Ok(0) => "an empty file (0 bytes: a recording that was never written to, or a \
                          copy that failed)"
                    .to_string(),
                _ => "a database without tables".to_string(),
            }
        } else {
            format!("a database of tables {}", tables.join(", "))
        };
        return Err(BagError::Sqlite {
            path: f.to_path_buf(),
            message: format!(
                "expected rosbag2's tables `topics` and `messages`, found {found} (no table {})",
                missing
                    .iter()
                    .map(|t| format!("`{t}`"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        });
    }
    Ok(db)
}

fn sqlite(f: &Path, e: rusqlite::Error) -> BagError {
    // SQLite's words for a file that ends early or was damaged: what the user may have done.
    let cut = "a recording cut short, e.g. copied before `ros2 bag record` stopped, or \
               damaged; a sqlite3 file cannot be read in part: record again, or try `sqlite3 \
               FILE .recover | sqlite3 NEW.db3`";
    BagError::Sqlite {
        path: f.to_path_buf(),
        message: match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseCorrupt) => format!("{e} ({cut})"),
            Some(rusqlite::ErrorCode::NotADatabase) => {
                format!("{e} (another kind of file named .db3, or {cut})")
            }
            _ => e.to_string(),
        },
    }
}

fn mcap_error(f: &Path, e: mcap::McapError) -> BagError {
    BagError::Mcap {
        path: f.to_path_buf(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{remove_stale_copies, unzstd_file, unzstd_message, COPY_PREFIX};

    #[test]
    fn a_file_cut_short_keeps_what_precedes_the_cut() {
        // 600 KB that compress (several 128 KiB blocks), cut at 90% of the compressed bytes.
        let data: Vec<u8> = (0..600_000u32)
            .map(|i| ((i / 7) % 251) as u8 ^ (i >> 12) as u8)
            .collect();
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        let (n, cut) = unzstd_file(&z[..], &mut out).unwrap();
        assert!(cut.is_none() && n == 600_000 && out == data);
        let mut out = Vec::new();
        let (n, cut) = unzstd_file(&z[..z.len() * 9 / 10], &mut out).unwrap();
        assert!(cut.is_some(), "a cut file said nothing");
        assert!(n >= 128 << 10 && n < 600_000, "{n} bytes kept");
        assert_eq!(out, data[..n as usize]);
    }

    #[test]
    fn a_message_is_decompressed_up_to_its_cap() {
        let data = vec![7u8; 5000];
        let z = zstd::encode_all(&data[..], 3).unwrap();
        let mut out = Vec::new();
        unzstd_message(&z, 5000, &mut out).unwrap();
        assert_eq!(out, data);
        let e = unzstd_message(&z, 4999, &mut out).unwrap_err();
        assert!(e.contains("decompresses to more than 4999 bytes"), "{e}");
        assert!(unzstd_message(&z[..z.len() / 2], 5000, &mut out).is_err());
    }

    #[test]
    fn copies_of_runs_that_ended_are_removed_and_running_ones_kept() {
        // A process that has ended: its pid names a stale copy.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let tmp = std::env::temp_dir();
        let stale = tmp.join(format!("{COPY_PREFIX}{dead}-test{}", std::process::id()));
        let ours = tmp.join(format!("{COPY_PREFIX}{}-test", std::process::id()));
        let parent = tmp.join(format!("{COPY_PREFIX}1-test{}", std::process::id()));
        for d in [&stale, &ours, &parent] {
            std::fs::create_dir_all(d.join("inner")).unwrap();
        }
        remove_stale_copies();
        assert!(!stale.exists(), "{}", stale.display());
        assert!(ours.exists() && parent.exists());
        for d in [&ours, &parent] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}
