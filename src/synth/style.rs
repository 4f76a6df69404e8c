//! Styles: how a renderer draws the world's surfaces, sky and tones, independently of the
//! place (geometry, depth, classes) and of the season and weather (`Condition`).
//!
//! Four families, so a model can be trained on one, chosen on another and tested on a third
//! without having seen them (each reserved or test look is built from mechanisms the training
//! family never draws; a colour cast as such is common to all):
//! - **training** (`Style::training`, `synth vkitti2 --appearance random`): per scene and
//!   variation, random palettes (any hue, from grey to saturated) for each kind of surface,
//!   plain, noise, stripe, bar and brick patterns, window layouts, sky colours and a colour cast;
//! - **real** (`Style::real`, `synth kitti --appearance styled`): the unlabelled "real" domain:
//!   natural, muted materials (concrete, asphalt, brick, sandstone, plaster) with weathering
//!   streaks, under a camera's colour cast;
//! - **reserved** (`Style::reserved`, `synth cmu --style NAME`): two fixed looks kept for model
//!   selection only ([`RESERVED`]): checker and dot patterns, posterized tones, no cast shadows
//!   or a hard colour grade, and seasons graded by their own hand (`Style::for_condition`). No
//!   training world uses checkers, dots, posterization, shadowless light or a season grade.
//! - **test** ([`TEST_ONLY`], also `synth cmu --style NAME`): one fixed look for reported test
//!   figures only, never for training, selection or fitting a constant: diagonal hatching and
//!   a sepia grade that mixes the channels (most colour gone), seasons graded its own way.
//!   Neither other family uses hatching or a desaturating grade.

use super::noise::{fbm2, hash, unit};

/// A brightness pattern laid over a surface (face-local coordinates in metres).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pattern {
    Plain,
    Noise,
    /// Horizontal bands.
    Stripes,
    /// Vertical bands.
    Bars,
    Bricks,
    /// Vertical weathering streaks (real family only).
    Streaks,
    /// Reserved family only.
    Checker,
    /// Reserved family only.
    Dots,
    /// Diagonal bands (test family only).
    Hatch,
}

impl Pattern {
    /// The pattern's brightness offset at (u, v), roughly in [-1, 1].
    fn at(self, seed: u64, u: f64, v: f64, period: f64) -> f32 {
        let (x, y) = (u / period, v / period);
        match self {
            Pattern::Plain => 0.0,
            Pattern::Noise => (fbm2(seed, x, y) * 2.0 - 1.0) as f32,
            Pattern::Stripes => band(y),
            Pattern::Bars => band(x),
            Pattern::Bricks => {
                // rem_euclid, not fract: the same bricks at negative coordinates.
                let row = (y * 3.0).floor();
                let along = x + if row.rem_euclid(2.0) == 0.0 { 0.0 } else { 0.5 };
                let mortar = (y * 3.0).rem_euclid(1.0) < 0.12 || along.rem_euclid(1.0) < 0.05;
                if mortar {
                    -1.0
                } else {
                    (unit(hash(&[seed as i64, row as i64, along.floor() as i64])) * 0.8 - 0.4)
                        as f32
                }
            }
            Pattern::Streaks => {
                (fbm2(seed ^ 0x57, x * 4.0, y * 0.25) * 2.0 - 1.0) as f32 * 0.8
                    + (fbm2(seed ^ 0x58, x, y) - 0.5) as f32 * 0.4
            }
            Pattern::Checker => {
                if (x.floor() + y.floor()) as i64 % 2 == 0 {
                    1.0
                } else {
                    -1.0
                }
            }
            Pattern::Hatch => band((x + y) * std::f64::consts::FRAC_1_SQRT_2),
            Pattern::Dots => {
                let (fx, fy) = (x.fract().abs() - 0.5, y.fract().abs() - 0.5);
                if fx * fx + fy * fy < 0.09 {
                    -1.0
                } else {
                    0.3
                }
            }
        }
    }
}

fn band(t: f64) -> f32 {
    if t.rem_euclid(1.0) < 0.5 {
        1.0
    } else {
        -1.0
    }
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// How one kind of surface is recoloured and patterned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Surface {
    /// The style's colour for this surface (linear RGB).
    pub colour: [f32; 3],
    /// 0 keeps the world's own colour, 1 replaces it (its light and dark variation stays).
    pub mix: f32,
    pub pattern: Pattern,
    /// Pattern period in metres.
    pub period: f32,
    /// Pattern strength (0: none).
    pub contrast: f32,
}

impl Surface {
    pub const KEEP: Surface = Surface {
        colour: [0.5; 3],
        mix: 0.0,
        pattern: Pattern::Plain,
        period: 1.0,
        contrast: 0.0,
    };

    /// `base` recoloured and patterned at face-local (u, v) metres.
    pub fn apply(&self, base: [f32; 3], seed: u64, u: f64, v: f64) -> [f32; 3] {
        if self.mix == 0.0 && self.contrast == 0.0 {
            return base;
        }
        // The world's texture (light and dark) carries over to the new colour.
        let shade = (luminance(base) / 0.4).clamp(0.25, 2.0);
        let p = 1.0 + self.contrast * self.pattern.at(seed, u, v, self.period as f64);
        std::array::from_fn(|k| {
            let c = base[k] + (self.colour[k] * shade - base[k]) * self.mix;
            (c * p).max(0.0)
        })
    }
}

/// Which surface of the world a colour belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Wall,
    Roof,
    Window,
    Road,
    Sidewalk,
    Terrain,
    Leaves,
    Bark,
    Vehicle,
    /// Poles, signs, rails and the rest.
    Other,
}

const PARTS: usize = 10;

#[derive(Debug, Clone, PartialEq)]
pub struct Style {
    pub name: String,
    /// One per `Part`, in its order.
    pub surfaces: [Surface; PARTS],
    /// Multipliers of a facade's window spacing and floor height.
    pub window_scale: [f32; 2],
    /// Sky zenith and horizon colours, and how much they replace the condition's.
    pub sky: [[f32; 3]; 2],
    pub sky_mix: f32,
    /// Colour matrix applied to the linear light before the camera develops it.
    pub grade: [[f32; 3]; 3],
    /// Sun shadows (false: the light is flat, as some renderers draw it).
    pub shadows: bool,
    /// Levels per channel after development (0: none).
    pub posterize: u8,
    /// Phase of the patterns.
    pub seed: u64,
}

const IDENTITY: [[f32; 3]; 3] = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// The styles kept for model selection (`synth cmu --style`): no training world uses them.
pub const RESERVED: [&str; 2] = ["flat-pastel", "dusk-ink"];
/// The style kept for reported test figures (`synth cmu --style`): no training world, no
/// model selection and no fitted constant uses it.
pub const TEST_ONLY: [&str; 1] = ["sepia-hatch"];
/// Every name `synth cmu --style` takes: [`RESERVED`], then [`TEST_ONLY`].
pub const NAMED: [&str; 3] = ["flat-pastel", "dusk-ink", "sepia-hatch"];

/// Hue (turns), saturation and value to RGB.
fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match h6.floor() as i32 {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// A stream of uniforms in [0, 1) from a key.
fn draws(key: u64) -> impl FnMut() -> f32 {
    let mut i = 0i64;
    move || {
        i += 1;
        unit(hash(&[key as i64, i, 0x57])) as f32
    }
}

impl Style {
    /// The world as it is: nothing recoloured, shadows on, no grade.
    pub fn none() -> Self {
        Self {
            name: "none".into(),
            surfaces: [Surface::KEEP; PARTS],
            window_scale: [1.0, 1.0],
            sky: [[0.0; 3]; 2],
            sky_mix: 0.0,
            grade: IDENTITY,
            shadows: true,
            posterize: 0,
            seed: 0,
        }
    }

    pub fn is_none(&self) -> bool {
        self.surfaces
            .iter()
            .all(|s| s.mix == 0.0 && s.contrast == 0.0)
            && self.window_scale == [1.0, 1.0]
            && self.sky_mix == 0.0
            && self.grade == IDENTITY
            && self.shadows
            && self.posterize == 0
    }

    pub fn surface(&self, part: Part) -> &Surface {
        &self.surfaces[part as usize]
    }

    /// A training style drawn from `key` (the same key gives the same style). About one in five
    /// keeps the world's own look; the others recolour each kind of surface with a random
    /// palette (grey to saturated, dark to light) at a random strength, lay plain, noise,
    /// stripe, bar or brick patterns over it, rescale the window grid, recolour the sky and cast
    /// a colour over the light.
    pub fn training(key: u64) -> Self {
        let mut d = draws(key);
        let mut style = Self::none();
        style.name = "training".into();
        style.seed = hash(&[key as i64, 0x5EED]);
        if d() < 0.2 {
            return style;
        }
        let strength = 0.4 + 0.6 * d();
        let patterns = [
            Pattern::Plain,
            Pattern::Noise,
            Pattern::Stripes,
            Pattern::Bars,
            Pattern::Bricks,
        ];
        for s in style.surfaces.iter_mut() {
            // Grey for about one in six, else any saturation.
            let sat = if d() < 0.17 { 0.0 } else { d() };
            let colour = hsv(d(), sat, 0.15 + 0.8 * d());
            let pattern = patterns[(d() * patterns.len() as f32) as usize % patterns.len()];
            *s = Surface {
                colour,
                mix: strength * d(),
                pattern,
                period: 0.3 + 3.0 * d(),
                contrast: if pattern == Pattern::Plain {
                    0.0
                } else {
                    0.05 + 0.3 * d()
                },
            };
        }
        style.window_scale = [0.6 + d(), 0.8 + 0.6 * d()];
        style.sky = [
            hsv(d(), 0.6 * d(), 0.4 + 0.6 * d()),
            hsv(d(), 0.5 * d(), 0.5 + 0.5 * d()),
        ];
        style.sky_mix = strength * d();
        let cast: [f32; 3] = std::array::from_fn(|_| 0.85 + 0.3 * d());
        style.grade =
            std::array::from_fn(|r| std::array::from_fn(|c| if r == c { cast[r] } else { 0.0 }));
        style
    }

    /// A style of the unlabelled "real" domain drawn from `key`: natural materials, muted,
    /// with weathering streaks and a camera's colour cast.
    pub fn real(key: u64) -> Self {
        const NATURAL: [[f32; 3]; 8] = [
            [0.55, 0.54, 0.50], // concrete
            [0.20, 0.20, 0.21], // asphalt
            [0.50, 0.24, 0.18], // red brick
            [0.72, 0.62, 0.45], // sandstone
            [0.80, 0.78, 0.72], // plaster
            [0.30, 0.22, 0.16], // dark wood
            [0.35, 0.38, 0.30], // grey-green
            [0.62, 0.60, 0.62], // steel
        ];
        let mut d = draws(key ^ 0x8EA1);
        let mut style = Self::none();
        style.name = "real".into();
        style.seed = hash(&[key as i64, 0x8EA1]);
        for (i, s) in style.surfaces.iter_mut().enumerate() {
            let leaves = i == Part::Leaves as usize || i == Part::Terrain as usize;
            let base = NATURAL[(d() * NATURAL.len() as f32) as usize % NATURAL.len()];
            let jitter = 0.85 + 0.3 * d();
            *s = Surface {
                colour: base.map(|c| c * jitter),
                // Vegetation keeps its own (seasonal) colour.
                mix: if leaves { 0.0 } else { 0.3 + 0.6 * d() },
                pattern: Pattern::Streaks,
                period: 0.5 + 2.0 * d(),
                contrast: 0.05 + 0.2 * d(),
            };
        }
        let warm = d() - 0.5;
        style.grade = [
            [1.0 + 0.12 * warm, 0.02, 0.0],
            [0.0, 1.0, 0.02],
            [0.0, 0.02, 1.0 - 0.15 * warm],
        ];
        style.sky = [[0.55, 0.62, 0.72], [0.82, 0.84, 0.86]];
        style.sky_mix = 0.5 * d();
        style
    }

    /// A reserved or test style ([`NAMED`]), or None.
    pub fn reserved(name: &str) -> Option<Self> {
        let mut style = Self::none();
        style.name = name.into();
        style.seed = hash(&[0x8E5E, name.len() as i64]);
        let surface = |colour: [f32; 3], pattern: Pattern, period: f32, contrast: f32| Surface {
            colour,
            mix: 0.85,
            pattern,
            period,
            contrast,
        };
        match name {
            // Pastel colours, flat light without cast shadows, checkers and dots, 6 tone levels.
            "flat-pastel" => {
                style.surfaces = [
                    surface([0.85, 0.70, 0.75], Pattern::Checker, 1.7, 0.12), // wall
                    surface([0.55, 0.60, 0.80], Pattern::Plain, 1.0, 0.0),    // roof
                    surface([0.45, 0.65, 0.75], Pattern::Plain, 1.0, 0.0),    // window
                    surface([0.50, 0.48, 0.58], Pattern::Dots, 1.2, 0.15),    // road
                    surface([0.80, 0.78, 0.60], Pattern::Checker, 0.8, 0.1),  // sidewalk
                    surface([0.60, 0.80, 0.55], Pattern::Dots, 2.0, 0.12),    // terrain
                    surface([0.45, 0.75, 0.50], Pattern::Plain, 1.0, 0.0),    // leaves
                    surface([0.60, 0.45, 0.40], Pattern::Plain, 1.0, 0.0),    // bark
                    surface([0.75, 0.60, 0.85], Pattern::Plain, 1.0, 0.0),    // vehicle
                    surface([0.70, 0.70, 0.80], Pattern::Checker, 0.4, 0.1),  // other
                ];
                style.window_scale = [1.4, 1.1];
                style.sky = [[0.55, 0.75, 0.95], [0.95, 0.85, 0.90]];
                style.sky_mix = 0.9;
                style.shadows = false;
                style.posterize = 6;
            }
            // Dark, saturated materials under a teal-orange grade, hard contrast.
            "dusk-ink" => {
                style.surfaces = [
                    surface([0.25, 0.12, 0.30], Pattern::Dots, 0.9, 0.25), // wall
                    surface([0.10, 0.10, 0.12], Pattern::Plain, 1.0, 0.0), // roof
                    surface([0.90, 0.75, 0.30], Pattern::Plain, 1.0, 0.0), // window
                    surface([0.12, 0.14, 0.22], Pattern::Checker, 2.5, 0.1), // road
                    surface([0.35, 0.30, 0.25], Pattern::Dots, 0.5, 0.2),  // sidewalk
                    surface([0.15, 0.30, 0.25], Pattern::Checker, 3.0, 0.15), // terrain
                    surface([0.10, 0.35, 0.30], Pattern::Plain, 1.0, 0.0), // leaves
                    surface([0.15, 0.10, 0.08], Pattern::Plain, 1.0, 0.0), // bark
                    surface([0.80, 0.20, 0.10], Pattern::Plain, 1.0, 0.0), // vehicle
                    surface([0.85, 0.85, 0.20], Pattern::Dots, 0.3, 0.2),  // other
                ];
                style.window_scale = [0.7, 0.9];
                style.sky = [[0.10, 0.15, 0.35], [0.95, 0.55, 0.35]];
                style.sky_mix = 0.9;
                style.grade = [[1.15, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, 0.15, 1.1]];
            }
            // Test only: earth tones with diagonal hatching, under a sepia grade that mixes the
            // channels (70% sepia, 30% the colour as it was), shadows as they are.
            "sepia-hatch" => {
                style.surfaces = [
                    surface([0.60, 0.52, 0.42], Pattern::Hatch, 1.3, 0.18), // wall
                    surface([0.35, 0.25, 0.22], Pattern::Plain, 1.0, 0.0),  // roof
                    surface([0.30, 0.32, 0.30], Pattern::Hatch, 0.5, 0.1),  // window
                    surface([0.38, 0.36, 0.33], Pattern::Hatch, 2.2, 0.08), // road
                    surface([0.68, 0.64, 0.58], Pattern::Plain, 1.0, 0.0),  // sidewalk
                    surface([0.45, 0.48, 0.30], Pattern::Hatch, 1.6, 0.12), // terrain
                    surface([0.30, 0.42, 0.22], Pattern::Plain, 1.0, 0.0),  // leaves
                    surface([0.32, 0.24, 0.18], Pattern::Plain, 1.0, 0.0),  // bark
                    surface([0.55, 0.50, 0.45], Pattern::Plain, 1.0, 0.0),  // vehicle
                    surface([0.50, 0.45, 0.40], Pattern::Hatch, 0.25, 0.15), // other
                ];
                style.window_scale = [1.25, 0.85];
                style.sky = [[0.70, 0.66, 0.55], [0.92, 0.88, 0.78]];
                style.sky_mix = 0.8;
                const SEPIA: [[f32; 3]; 3] = [
                    [0.393, 0.769, 0.189],
                    [0.349, 0.686, 0.168],
                    [0.272, 0.534, 0.131],
                ];
                style.grade = std::array::from_fn(|r| {
                    std::array::from_fn(|c| 0.7 * SEPIA[r][c] + if r == c { 0.3 } else { 0.0 })
                });
            }
            _ => return None,
        }
        Some(style)
    }

    /// This style under a query condition (by its name): a reserved style grades each season
    /// its own way (a colour matrix per condition, as another artist would draw winter or
    /// autumn); other styles are unchanged.
    pub fn for_condition(&self, condition: &str) -> Self {
        if !NAMED.contains(&self.name.as_str()) {
            return self.clone();
        }
        let flat = self.name == "flat-pastel";
        let cast: [f32; 3] = match (condition, flat) {
            // The test style's own hand: after the sepia, snow bright and blue-grey, low sun
            // dim and red, foliage yellow-green, overcast dark.
            (c, _) if self.name == "sepia-hatch" => match c {
                "snow" => [1.0, 1.1, 1.3],
                "low-sun" => [1.1, 0.75, 0.55],
                "foliage" => [1.0, 1.1, 0.7],
                "overcast" => [0.7, 0.72, 0.75],
                "rain" => [0.65, 0.7, 0.8],
                _ => [1.0, 1.0, 1.0],
            },
            ("snow", true) => [0.85, 0.95, 1.25],
            ("snow", false) => [0.7, 0.85, 1.3],
            ("low-sun", true) => [1.25, 0.9, 1.05],
            ("low-sun", false) => [1.35, 0.85, 0.6],
            ("foliage", true) => [1.05, 1.15, 0.8],
            ("foliage", false) => [0.8, 1.2, 0.9],
            ("overcast", true) => [0.9, 0.9, 0.95],
            ("overcast", false) => [0.75, 0.78, 0.85],
            ("rain", _) => [0.7, 0.8, 0.95],
            _ => [1.0, 1.0, 1.0],
        };
        let mut s = self.clone();
        for (r, row) in s.grade.iter_mut().enumerate() {
            for v in row.iter_mut() {
                *v *= cast[r];
            }
        }
        s
    }

    /// The grade applied to one linear colour.
    pub fn graded(&self, c: [f32; 3]) -> [f32; 3] {
        if self.grade == IDENTITY {
            return c;
        }
        std::array::from_fn(|r| {
            self.grade[r][0] * c[0] + self.grade[r][1] * c[1] + self.grade[r][2] * c[2]
        })
    }

    /// One 8-bit channel value after posterization.
    pub fn posterized(&self, v: u8) -> u8 {
        if self.posterize < 2 {
            return v;
        }
        let levels = (self.posterize - 1) as f32;
        ((v as f32 / 255.0 * levels).round() / levels * 255.0).round() as u8
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_changes_nothing_and_training_styles_repeat() {
        let none = Style::none();
        assert!(none.is_none());
        let c = [0.3, 0.5, 0.2];
        for part in 0..PARTS {
            assert_eq!(none.surfaces[part].apply(c, 1, 2.0, 3.0), c);
        }
        assert_eq!(none.graded(c), c);
        assert_eq!(none.posterized(77), 77);
        assert_eq!(Style::training(5), Style::training(5));
        assert_ne!(Style::training(5), Style::training(6));
    }

    #[test]
    fn training_styles_span_palettes_and_never_use_a_reserved_mechanism() {
        let styles: Vec<Style> = (0..400).map(Style::training).collect();
        let plain = styles.iter().filter(|s| s.is_none()).count();
        assert!(
            (40..130).contains(&plain),
            "{plain} of 400 keep the world's look"
        );
        let mut grey = 0;
        let mut saturated = 0;
        for s in &styles {
            assert!(
                s.shadows && s.posterize == 0,
                "{}: reserved mechanism",
                s.name
            );
            for surf in &s.surfaces {
                assert!(
                    !matches!(
                        surf.pattern,
                        Pattern::Checker | Pattern::Dots | Pattern::Streaks | Pattern::Hatch
                    ),
                    "training style with {:?}",
                    surf.pattern
                );
                let (max, min) = (
                    surf.colour.iter().cloned().fold(0f32, f32::max),
                    surf.colour.iter().cloned().fold(1f32, f32::min),
                );
                if surf.mix > 0.2 {
                    if max - min < 1e-6 {
                        grey += 1;
                    } else if min < 0.2 * max {
                        saturated += 1;
                    }
                }
            }
            assert_eq!(
                s.for_condition("snow"),
                *s,
                "a training style has no season grade"
            );
        }
        assert!(
            grey > 100 && saturated > 300,
            "grey {grey}, saturated {saturated}"
        );
        for k in 0..100 {
            let r = Style::real(k);
            assert!(r.shadows && r.posterize == 0);
            assert!(r.surfaces.iter().all(|s| s.pattern == Pattern::Streaks));
            // The real family's grade stays near the identity (no desaturating mix).
            assert!(
                r.grade[0][1] < 0.05 && r.grade[2][0] < 0.05,
                "{:?}",
                r.grade
            );
        }
        // Training grades are casts only (diagonal); the test style's mixes the channels.
        for s in &styles {
            assert!((0..3).all(|r| (0..3).all(|c| r == c || s.grade[r][c] == 0.0)));
        }
    }

    #[test]
    fn reserved_styles_exist_and_grade_each_season_differently() {
        assert_eq!([RESERVED.as_slice(), TEST_ONLY.as_slice()].concat(), NAMED);
        for name in NAMED {
            let s = Style::reserved(name).expect(name);
            assert!(!s.is_none());
            let snow = s.for_condition("snow");
            let sun = s.for_condition("low-sun");
            assert_ne!(snow.grade, sun.grade, "{name}");
            assert_ne!(snow.grade, s.grade, "{name}");
        }
        assert!(Style::reserved("training").is_none());
        let flat = Style::reserved("flat-pastel").unwrap();
        // 6 levels: 0, 51, 102, 153, 204, 255.
        assert_eq!(flat.posterized(60), 51);
        assert_eq!(flat.posterized(255), 255);
        assert_eq!(flat.posterized(0), 0);
        // The test style: no pattern or grade of a validation style, and most colour gone (a
        // saturated red comes out with its channels within a third of each other).
        let test = Style::reserved("sepia-hatch").unwrap();
        assert!(test.shadows && test.posterize == 0);
        for name in RESERVED {
            let v = Style::reserved(name).unwrap();
            assert_ne!(v.grade, test.grade);
            for (a, b) in v.surfaces.iter().zip(&test.surfaces) {
                assert!(a.pattern != b.pattern || a.pattern == Pattern::Plain);
            }
        }
        let red = test.graded([0.8, 0.1, 0.1]);
        assert!(red[2] > red[0] / 3.0 && red[1] > red[0] / 3.0, "{red:?}");
    }

    #[test]
    fn patterns_and_recolouring_work_on_known_values() {
        let s = Surface {
            colour: [1.0, 0.0, 0.0],
            mix: 1.0,
            pattern: Pattern::Checker,
            period: 1.0,
            contrast: 0.5,
        };
        // Base luminance 0.4: shade 1; checker +1 at (0.5, 0.5), -1 at (1.5, 0.5).
        let base = [0.4, 0.4, 0.4];
        let a = s.apply(base, 0, 0.5, 0.5);
        let b = s.apply(base, 0, 1.5, 0.5);
        assert!((a[0] - 1.5).abs() < 1e-5 && a[1].abs() < 1e-6, "{a:?}");
        assert!((b[0] - 0.5).abs() < 1e-5, "{b:?}");
        // Half mix keeps half of the base.
        let half = Surface {
            mix: 0.5,
            contrast: 0.0,
            ..s
        }
        .apply(base, 0, 0.0, 0.0);
        assert!(
            (half[0] - 0.7).abs() < 1e-5 && (half[1] - 0.2).abs() < 1e-5,
            "{half:?}"
        );
        // Bricks look the same on both sides of 0 (a shift by whole bricks and rows).
        for (u, v) in [(0.3, 0.2), (0.7, 0.5), (0.55, 0.9)] {
            let a = Pattern::Bricks.at(9, u, v, 1.0);
            let b = Pattern::Bricks.at(9, u - 4.0, v - 2.0, 1.0);
            assert_eq!(
                a == -1.0,
                b == -1.0,
                "mortar at ({u}, {v}) but not 4 bricks left"
            );
        }
        let mortar = (0..100)
            .filter(|i| {
                Pattern::Bricks.at(9, -50.0 + *i as f64 * 0.37, -20.0 + *i as f64 * 0.11, 1.0)
                    == -1.0
            })
            .count();
        assert!(
            mortar < 40,
            "{mortar} of 100 points at negative coordinates are mortar"
        );
        assert_eq!(hsv(0.0, 1.0, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(hsv(0.5, 0.0, 0.5), [0.5, 0.5, 0.5]);
    }
}
