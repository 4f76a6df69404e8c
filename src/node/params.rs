//! The node's parameters: declared through r2r's `RosParams` derive, so `ros2 param list`, `get`
//! and `describe` (with the descriptions below) see them; read once at start-up and validated;
//! read-only while the node runs (`ros2 param set` is refused with the reason).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use r2r::indexmap::IndexMap;
use r2r::{Parameter, ParameterValue, RosParams};

/// A string-array parameter (r2r's derive has no array support of its own).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StringList(pub Vec<String>);

/// A floating-point parameter that also accepts an integer (`diagnostics_period: 1`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Number(pub f64);

fn wrong_type(name: &str, expected: &'static str) -> r2r::Error {
    r2r::Error::InvalidParameterType {
        name: name.to_string(),
        ty: expected,
    }
}

/// Applies a value given on the command line or in a params file, then (re)inserts the
/// parameter with its description and current value, as r2r does for its own leaf types.
fn register_leaf(
    me: &mut dyn RosParams,
    prefix: &str,
    param: Option<Parameter>,
    params: &mut IndexMap<String, Parameter>,
) -> r2r::Result<()> {
    if let Some(given) = params.get(prefix) {
        let v = given.value.clone();
        me.set_parameter("", &v)
            .map_err(|e| e.update_param_name(prefix))?;
        params.shift_remove(prefix);
    }
    let mut param = param.unwrap_or_else(|| Parameter::new(ParameterValue::NotSet));
    param.value = me.get_parameter("")?;
    params.insert(prefix.to_owned(), param);
    Ok(())
}

impl RosParams for StringList {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<Parameter>,
        params: &mut IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        register_leaf(self, prefix, param, params)
    }
    fn get_parameter(&mut self, _name: &str) -> r2r::Result<ParameterValue> {
        Ok(ParameterValue::StringArray(self.0.clone()))
    }
    fn set_parameter(&mut self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        self.check_parameter(name, value)?;
        self.0 = match value {
            ParameterValue::StringArray(v) => v.clone(),
            // `[]` in YAML arrives as not set (an empty array has no type).
            _ => Vec::new(),
        };
        Ok(())
    }
    fn check_parameter(&self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        match value {
            ParameterValue::StringArray(_) | ParameterValue::NotSet => Ok(()),
            // `camera_ids: []` in YAML arrives as an empty array of no declared type.
            ParameterValue::ByteArray(v) if v.is_empty() => Ok(()),
            ParameterValue::BoolArray(v) if v.is_empty() => Ok(()),
            ParameterValue::IntegerArray(v) if v.is_empty() => Ok(()),
            ParameterValue::DoubleArray(v) if v.is_empty() => Ok(()),
            _ => Err(wrong_type(name, "a list of strings")),
        }
    }
}

impl RosParams for Number {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<Parameter>,
        params: &mut IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        register_leaf(self, prefix, param, params)
    }
    fn get_parameter(&mut self, _name: &str) -> r2r::Result<ParameterValue> {
        Ok(ParameterValue::Double(self.0))
    }
    fn set_parameter(&mut self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        self.check_parameter(name, value)?;
        self.0 = match *value {
            ParameterValue::Double(v) => v,
            ParameterValue::Integer(v) => v as f64,
            _ => self.0, // NotSet: the default stays
        };
        Ok(())
    }
    fn check_parameter(&self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        match value {
            ParameterValue::Double(_) | ParameterValue::Integer(_) | ParameterValue::NotSet => {
                Ok(())
            }
            _ => Err(wrong_type(name, "a number")),
        }
    }
}

/// Node parameters (`ros__parameters` in config/localize.yaml); the doc comments are what
/// `ros2 param describe /dasgil_localizer NAME` prints.
#[derive(Debug, Clone, PartialEq, r2r::RosParams)]
pub struct NodeParams {
    /// Descriptor map file made by `dasgil-tools build-map` (required)
    pub map: String,
    /// Generator checkpoint (.safetensors); empty: the map's own, else the shipped model
    pub checkpoint: String,
    /// Camera topics, one per camera (sensor_msgs/Image, or CompressedImage with transport compressed)
    pub image_topics: StringList,
    /// Map camera of each topic, parallel to image_topics (e.g. [c0, c1]); empty: all map images
    pub camera_ids: StringList,
    /// raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage, jpeg or png)
    pub transport: String,
    /// Descriptor distance: l1, l2 or cosine; empty: the map's
    pub metric: String,
    /// Map images retrieved per frame (1..1000), published best first on pose_candidates
    pub top_k: i64,
    /// frame_id of pose_prior and pose_candidates (the map's world frame)
    pub frame_id: String,
    /// Optional geometry_msgs/PoseWithCovarianceStamped input; when set, only map images in the gate around its latest position are searched (gate_radius, gate_sigmas)
    pub prior_topic: String,
    /// Search radius around the latest prior_topic position (m) for a prior without a covariance; with one, each axis of the gate is sqrt(gate_radius^2 + (gate_sigmas sigma)^2), sigma the prior's standard deviation along it
    pub gate_radius: Number,
    /// Standard deviations of the prior_topic message's position covariance the gate adds to gate_radius in quadrature per axis (4 holds 99.9% of a Gaussian error); 0: the sphere of gate_radius; a covariance of zeros or -1 first is no estimate (the sphere); an infinite variance (e.g. a GNSS fix's unknown height) opens the gate along its axis (cut at 1e6 m), along every axis it gates nothing
    pub gate_sigmas: Number,
    /// Seconds since the last prior_topic message was received (wall clock; its header stamp is not used) after which it no longer gates and the whole map is searched until a new one arrives; 0: it gates until replaced
    pub prior_timeout: Number,
    /// Optional base_link-from-camera extrinsic per camera, parallel to image_topics, each "x y z qx qy qz qw" (quaternion w last): the pose of the camera's OPTICAL frame (x right, y down, z forward; the *_optical_frame of REP 103) in base_link, not the camera body frame (x forward); when set, the published pose is base_link's, otherwise the camera's
    pub base_from_camera: StringList,
    /// Most frames localized per second and camera (Hz); 0: as many as the model keeps up with
    pub max_rate: Number,
    /// Matches below this confidence (with filter sequence, the default: the posterior mass within 10 m of the published place; with filter none: 1 - d1/d_alt, d_alt the best match over 7.5 m away; 0..1) publish no prior and are counted as ambiguous
    pub min_confidence: Number,
    /// cpu, cuda, cuda:N or auto (CUDA when libtorch sees a GPU)
    pub device: String,
    /// Seconds between diagnostic_msgs/DiagnosticArray messages on /diagnostics
    pub diagnostics_period: Number,
    /// Seconds without a frame on a camera topic before /diagnostics and the log warn (with the likely causes); 0: never
    pub frame_timeout: Number,
    /// sequence (default): every camera's frames, in the order they arrive and timed by their stamps, through one Bayes filter over the map's places (consecutive frames single out the place; a kidnapping is found again within a few frames; stamps must follow the vehicle: capture time or a recording's own); none: each frame on its own
    pub filter: String,
    /// With filter sequence: a frame whose probability of being off the map (the filter's; its frames neither follow a path on the map nor stand out from its other places) is at least this publishes no prior and is counted as ambiguous; 1: never withheld for it (0..1)
    pub off_map_threshold: Number,
    /// Optional nav_msgs/Odometry topic (e.g. /odom): with filter sequence, the distance the robot travelled between two frames (from the odometry's positions at the frames' stamps) replaces the 15 m/s speed bound, so a stopped or slow robot keeps its place (the direction comes from the filter's own velocity: odometry's frame is not the map's); stamps must share the cameras' clock; empty: no odometry
    pub odometry_topic: String,
    /// auto (default): running where the map allows it (metric cosine, a map not built with --compress), else none, said in the log at start; running: the map's rows minus the map's mean, each frame minus the mean of its camera's last 30 frames (a frame joins them only when the view has changed, so a stopped robot does not centre its place away), which takes away what a season's or a camera's look shares across places (docs/pose-prior.md, "Descriptor centring"), and a map it cannot centre stops the node; none: descriptors compared as encoded (the paper's retrieval); frame stamps must follow capture order
    pub centring: String,
}

impl Default for NodeParams {
    fn default() -> Self {
        Self {
            map: String::new(),
            checkpoint: String::new(),
            image_topics: StringList(vec!["/camera/image_raw".into()]),
            camera_ids: StringList::default(),
            transport: "raw".into(),
            metric: String::new(),
            top_k: crate::localize::Options::default().top_k as i64,
            frame_id: "map".into(),
            prior_topic: String::new(),
            gate_radius: Number(50.0),
            gate_sigmas: Number(crate::localize::gate::GATE_SIGMAS),
            prior_timeout: Number(5.0),
            base_from_camera: StringList::default(),
            max_rate: Number(0.0),
            min_confidence: Number(crate::localize::Options::default().min_confidence),
            device: "auto".into(),
            diagnostics_period: Number(1.0),
            frame_timeout: Number(10.0),
            // Chosen through the node (docs/sequence-filter.md): more correct priors per frame
            // on every world measured; evaluate keeps the paper's single-frame protocol.
            filter: crate::localize::Filter::Sequence.name().into(),
            off_map_threshold: Number(crate::localize::Options::default().off_map_threshold),
            odometry_topic: String::new(),
            centring: crate::localize::centring::Centring::Auto.name().into(),
        }
    }
}

/// The parameters this node reads (the fields of [`NodeParams`], as r2r declares them, and
/// ROS's own `use_sim_time`); any other name is warned about (a likely misspelling).
pub fn known_params() -> Vec<String> {
    let mut declared = IndexMap::new();
    // Registering the defaults only lists the names; it cannot fail for them.
    let _ = NodeParams::default().register_parameters("", None, &mut declared);
    let mut names: Vec<String> = declared.into_keys().collect();
    names.push("use_sim_time".into());
    names
}

/// The warning for a parameter name this node does not read: the nearest known name when one
/// is a likely misspelling of it (at most two edits, or a third of its length), else the list.
pub fn unknown_param(name: &str, known: &[String]) -> String {
    let nearest = known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .min()
        .filter(|(d, k)| *d <= 2.max(k.len() / 3));
    match nearest {
        Some((_, k)) => format!("unknown parameter `{name}` (did you mean `{k}`?); it is ignored"),
        None => format!(
            "unknown parameter `{name}` (known: {}); it is ignored",
            known.join(", ")
        ),
    }
}

impl NodeParams {
    /// `checkpoint`, None when empty (the map's own, else the shipped model).
    pub fn checkpoint_path(&self) -> Option<std::path::PathBuf> {
        (!self.checkpoint.is_empty()).then(|| self.checkpoint.clone().into())
    }

    /// The Localizer's settings from `metric`, `top_k` and `min_confidence`.
    pub fn localizer_options(&self) -> Result<crate::localize::Options> {
        Ok(crate::localize::Options {
            metric: if self.metric.is_empty() {
                None
            } else {
                Some(
                    self.metric
                        .parse()
                        .map_err(|e| anyhow::anyhow!("parameter `metric`: {e}"))?,
                )
            },
            top_k: self.top_k.clamp(1, 1000) as usize,
            min_confidence: self.min_confidence.0,
            filter: self
                .filter
                .parse()
                .map_err(|e| anyhow::anyhow!("parameter `filter`: {e}"))?,
            off_map_threshold: self.off_map_threshold.0,
            centring: self
                .centring
                .parse()
                .map_err(|e| anyhow::anyhow!("parameter `centring`: {e}"))?,
        })
    }
}

/// The parameters as `ros2 param` sees them: read-only once the node has started (a change
/// would silently not take effect, so it is refused with the reason).
pub struct Served {
    pub params: NodeParams,
    pub frozen: Arc<AtomicBool>,
}

impl RosParams for Served {
    fn register_parameters(
        &mut self,
        prefix: &str,
        param: Option<Parameter>,
        params: &mut IndexMap<String, Parameter>,
    ) -> r2r::Result<()> {
        self.params.register_parameters(prefix, param, params)
    }
    fn get_parameter(&mut self, name: &str) -> r2r::Result<ParameterValue> {
        self.params.get_parameter(name)
    }
    fn set_parameter(&mut self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        self.check_parameter(name, value)?;
        self.params.set_parameter(name, value)
    }
    fn check_parameter(&self, name: &str, value: &ParameterValue) -> r2r::Result<()> {
        if self.frozen.load(Ordering::Relaxed) {
            return Err(r2r::Error::ParameterValueConv {
                name: name.to_string(),
                msg: "read-only while the node runs; change it in the params file or on the \
                      command line and restart the node (a new map: call ~/reload_map)"
                    .into(),
            });
        }
        self.params.check_parameter(name, value)
    }
}

/// A camera's extrinsic "x y z qx qy qz qw" (base_link from camera).
pub fn parse_extrinsic(s: &str) -> Result<crate::geom::Pose, String> {
    crate::geom::parse_xyz_qxyzw(s)
}

impl NodeParams {
    /// Declares the parameters on `node` (values from the command line and params files
    /// applied) and serves them to `ros2 param`; validates them. A value of the wrong type names
    /// the parameter, the expected and the found value. Returns the parameters, the switch that
    /// makes them read-only, and the parameter services' future (spawn it).
    pub fn declare(
        node: &mut r2r::Node,
    ) -> Result<(
        Self,
        Arc<AtomicBool>,
        impl std::future::Future<Output = ()> + Send,
    )> {
        let given: Vec<(String, ParameterValue)> = {
            let params = node.params.lock().unwrap_or_else(|e| e.into_inner());
            params
                .iter()
                .map(|(k, v)| (k.clone(), v.value.clone()))
                .collect()
        };
        let frozen = Arc::new(AtomicBool::new(false));
        let served = Arc::new(std::sync::Mutex::new(Served {
            params: Self::default(),
            frozen: frozen.clone(),
        }));
        let (handler, _events) = match node.make_derived_parameter_handler(served.clone()) {
            Ok(h) => h,
            Err(e) => {
                let name = match &e {
                    r2r::Error::InvalidParameterType { name, .. }
                    | r2r::Error::ParameterValueConv { name, .. }
                    | r2r::Error::InvalidParameterName { name } => name.clone(),
                    _ => String::new(),
                };
                let found = given
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| format!("{v:?}"))
                    .unwrap_or_else(|| "?".into());
                bail!("parameter `{name}`: {e} (found {found})");
            }
        };
        let p = served
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .params
            .clone();
        p.validate()?;
        Ok((p, frozen, handler))
    }

    /// Every value is checked before anything is loaded.
    pub fn validate(&self) -> Result<()> {
        let p = self;
        if p.map.is_empty() {
            bail!(
                "parameter `map` is empty: set it to a map made by `dasgil-tools build-map`, \
                 e.g. `ros2 launch dasgil localize.launch.py map:=/path/to/cmu_slice.map.safetensors`"
            );
        }
        if p.image_topics.0.is_empty() {
            bail!(
                "parameter `image_topics`: expected at least one camera topic, found an empty list"
            );
        }
        if let Some(t) = p.image_topics.0.iter().find(|t| t.trim().is_empty()) {
            bail!("parameter `image_topics`: expected topic names, found `{t}`");
        }
        for (name, list) in [
            ("camera_ids", &p.camera_ids),
            ("base_from_camera", &p.base_from_camera),
        ] {
            if !list.0.is_empty() && list.0.len() != p.image_topics.0.len() {
                bail!(
                    "parameters `{name}` and `image_topics`: expected lists of the same length \
                     (one entry per topic), found {} and {}",
                    list.0.len(),
                    p.image_topics.0.len()
                );
            }
        }
        for (i, e) in p.base_from_camera.0.iter().enumerate() {
            parse_extrinsic(e).map_err(|m| {
                anyhow::anyhow!(
                    "parameter `base_from_camera` entry {i} (topic {}): {m}",
                    p.image_topics.0[i]
                )
            })?;
        }
        if !matches!(p.transport.as_str(), "raw" | "compressed") {
            bail!(
                "parameter `transport`: expected `raw` or `compressed`, found `{}`",
                p.transport
            );
        }
        if !(1..=1000).contains(&p.top_k) {
            bail!("parameter `top_k`: expected 1 to 1000, found {}", p.top_k);
        }
        if p.frame_id.is_empty() {
            bail!(
                "parameter `frame_id`: expected a frame name such as `map`, found an empty string"
            );
        }
        let secs = p.diagnostics_period.0;
        if !(secs.is_finite() && (0.01..=3600.0).contains(&secs)) {
            bail!(
                "parameter `diagnostics_period`: expected seconds from 0.01 to 3600, found {secs}"
            );
        }
        let r = p.gate_radius.0;
        if !(r.is_finite() && r > 0.0 && r <= crate::localize::gate::MAX_GATE_RADIUS) {
            bail!("parameter `gate_radius`: expected metres > 0 and at most 1e6, found {r}");
        }
        let k = p.gate_sigmas.0;
        if !(k.is_finite() && (0.0..=100.0).contains(&k)) {
            bail!(
                "parameter `gate_sigmas`: expected standard deviations from 0 (gate_radius alone) \
                 to 100, found {k}"
            );
        }
        let m = p.max_rate.0;
        if !(m.is_finite() && (0.0..=1000.0).contains(&m)) {
            bail!("parameter `max_rate`: expected 0 (no limit) to 1000 Hz, found {m}");
        }
        let c = p.min_confidence.0;
        if !(c.is_finite() && (0.0..=1.0).contains(&c)) {
            bail!("parameter `min_confidence`: expected 0 to 1, found {c}");
        }
        let o = p.off_map_threshold.0;
        if !(o.is_finite() && (0.0..=1.0).contains(&o)) {
            bail!("parameter `off_map_threshold`: expected 0 to 1 (1: never), found {o}");
        }
        let pt = p.prior_timeout.0;
        if !(pt.is_finite() && (0.0..=86400.0).contains(&pt)) {
            bail!("parameter `prior_timeout`: expected 0 (never expires) to 86400 seconds, found {pt}");
        }
        let t = p.frame_timeout.0;
        if !(t.is_finite() && (0.0..=86400.0).contains(&t)) {
            bail!("parameter `frame_timeout`: expected 0 (never) to 86400 seconds, found {t}");
        }
        Ok(())
    }
}

/// Checks every `--params-file` on the command line before r2r reads it (r2r panics on a
/// missing or malformed file): readable, valid YAML (with the line of a syntax error), the
/// `<node>: ros__parameters:` shape, no empty `image_topics`. Returns warnings for unknown
/// parameter names, each with the name.
pub fn check_params_files(args: &[String]) -> Result<Vec<(String, String)>> {
    let mut warnings = Vec::new();
    let known = known_params();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a != "--params-file" {
            continue;
        }
        let Some(path) = it.next() else {
            bail!("--params-file needs a file name after it");
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--params-file {path}: cannot read it"))?;
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "--params-file {path}{}: not valid YAML: {}",
                crate::yaml::error_line(&e)
                    .map(|l| format!(":{l}"))
                    .unwrap_or_default(),
                crate::yaml::explain(&e)
            )
        })?;
        let Some(nodes) = doc.as_mapping() else {
            bail!("--params-file {path}: expected `dasgil_localizer: {{ros__parameters: {{...}}}}` at the top, found {doc:?}");
        };
        for (node_name, body) in nodes {
            let node_name = node_name.as_str().unwrap_or("?");
            let Some(params) = body.get("ros__parameters").and_then(|p| p.as_mapping()) else {
                bail!("--params-file {path}: node `{node_name}`: expected a `ros__parameters:` mapping");
            };
            let ours = node_name
                .trim_start_matches('/')
                .ends_with("dasgil_localizer")
                || node_name.ends_with("/**")
                || node_name == "**";
            if !ours {
                continue;
            }
            for (k, v) in params {
                let k = k.as_str().unwrap_or("?");
                if !known.iter().any(|n| n == k) && !k.starts_with("qos_overrides") {
                    warnings.push((
                        k.to_string(),
                        format!("--params-file {path}: {}", unknown_param(k, &known)),
                    ));
                }
                if k == "image_topics" && v.as_sequence().is_some_and(|s| s.is_empty()) {
                    bail!(
                        "--params-file {path}: parameter `image_topics`: expected at least one \
                         camera topic, found an empty list"
                    );
                }
            }
        }
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_parameter_names_the_likely_one_or_lists_them() {
        let known = known_params();
        assert_eq!(
            unknown_param("topk", &known),
            "unknown parameter `topk` (did you mean `top_k`?); it is ignored"
        );
        assert!(unknown_param("image_topic", &known).contains("did you mean `image_topics`?"));
        let far = unknown_param("colour_balance", &known);
        assert!(
            far.contains("(known: ") && far.contains("min_confidence"),
            "{far}"
        );
    }

    #[test]
    fn extrinsics_parse_and_refuse() {
        let p = parse_extrinsic("1 2 3 0 0 0 1").unwrap();
        assert_eq!(p.translation.vector.x, 1.0);
        assert!(parse_extrinsic("1 2 3").unwrap_err().contains("expected 7"));
        assert!(parse_extrinsic("1 2 3 0 0 0 5")
            .unwrap_err()
            .contains("norm 1"));
        assert!(parse_extrinsic("1 2 x 0 0 0 1")
            .unwrap_err()
            .contains("`x`"));
    }

    #[test]
    fn known_parameters_are_the_declared_fields_and_the_shipped_file_has_each_once() {
        let known = known_params();
        assert_eq!(known.len(), 23, "{known:?}");
        for name in [
            "map",
            "centring",
            "top_k",
            "min_confidence",
            "diagnostics_period",
            "frame_timeout",
            "prior_timeout",
            "odometry_topic",
            "off_map_threshold",
            "use_sim_time",
        ] {
            assert!(known.iter().any(|k| k == name), "{name}: {known:?}");
        }
        let shipped = include_str!("../../config/localize.yaml");
        for name in known.iter().filter(|n| *n != "use_sim_time") {
            let n = shipped
                .lines()
                .filter(|l| l.trim_start().starts_with(&format!("{name}:")))
                .count();
            assert_eq!(n, 1, "config/localize.yaml has `{name}` {n} times");
        }
        // The node's defaults, and the shipped file's values, are the Localizer's (localize and
        // evaluate use them too).
        let d = NodeParams::default();
        let o = crate::localize::Options::default();
        assert_eq!(
            (d.top_k as usize, d.min_confidence.0),
            (o.top_k, o.min_confidence)
        );
        let yaml: serde_yaml::Value = serde_yaml::from_str(shipped).unwrap();
        let p = &yaml["dasgil_localizer"]["ros__parameters"];
        assert_eq!(p["top_k"].as_u64(), Some(o.top_k as u64));
        assert_eq!(p["min_confidence"].as_f64(), Some(o.min_confidence));
        // The filter is the one default that differs: the node runs the sequence filter,
        // evaluate the paper's single-frame retrieval (docs/sequence-filter.md).
        assert_eq!(d.filter, crate::localize::Filter::Sequence.name());
        assert_eq!(o.filter, crate::localize::Filter::None);
        assert_eq!(p["filter"].as_str(), Some(d.filter.as_str()));
        assert_eq!(d.off_map_threshold.0, o.off_map_threshold);
        assert_eq!(p["off_map_threshold"].as_f64(), Some(o.off_map_threshold));
        // The shipped file's gate_sigmas is the node's default (evaluate --gate-sigmas's too).
        assert_eq!(p["gate_sigmas"].as_f64(), Some(d.gate_sigmas.0));
        // Centring: auto everywhere (the node, the file, the Localizer, evaluate's default).
        assert_eq!(d.centring, o.centring.name());
        assert_eq!(o.centring, crate::localize::centring::Centring::Auto);
        assert_eq!(p["centring"].as_str(), Some(d.centring.as_str()));
    }

    #[test]
    fn validation_names_the_parameter_and_value() {
        let ok = NodeParams {
            map: "m".into(),
            ..Default::default()
        };
        ok.validate().unwrap();
        let bad = |f: &dyn Fn(&mut NodeParams)| {
            let mut p = ok.clone();
            f(&mut p);
            p.validate().unwrap_err().to_string()
        };
        assert!(bad(&|p| p.top_k = -3).contains("`top_k`: expected 1 to 1000, found -3"));
        assert!(bad(&|p| p.diagnostics_period.0 = 1e20).contains("found 100000000000000000000"));
        assert!(bad(&|p| p.min_confidence.0 = f64::NAN).contains("`min_confidence`"));
        assert!(bad(&|p| p.off_map_threshold.0 = 1.5)
            .contains("`off_map_threshold`: expected 0 to 1 (1: never), found 1.5"));
        assert!(bad(&|p| p.transport = "h264".into()).contains("found `h264`"));
        assert!(bad(&|p| p.image_topics.0.clear()).contains("empty list"));
        assert!(bad(&|p| p.camera_ids.0 = vec!["a".into(), "b".into()]).contains("found 2 and 1"));
        assert!(bad(&|p| p.base_from_camera.0 = vec!["0 0 0 0 0 0 2".into()]).contains("norm"));
    }
}
