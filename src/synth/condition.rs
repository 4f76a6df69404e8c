//! Appearance: lighting, weather and season (`Condition`), and the camera's development of the
//! light into 8-bit pixels (`Sensor`). Geometry never depends on these, so the same place looks
//! different under each condition while depth and classes stay put (except leaves: bare trees
//! let rays through).

use image::RgbImage;

use super::noise::{hash, unit};
use super::style::Style;

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub name: String,
    /// Unit vector towards the sun (world: x east, y north, z up).
    pub sun_dir: [f64; 3],
    pub sun_rgb: [f32; 3],
    /// 0 = no direct sun (overcast).
    pub sun_strength: f32,
    pub ambient_rgb: [f32; 3],
    pub sky_zenith: [f32; 3],
    pub sky_horizon: [f32; 3],
    pub clouds: f32,
    pub cloud_rgb: [f32; 3],
    /// Extinction per metre (visibility ~ 3 / density).
    pub fog_density: f64,
    pub fog_rgb: [f32; 3],
    pub wet: f32,
    pub rain: f32,
    pub snow: f32,
    /// Leaf density 0 (bare) .. 1 (full).
    pub foliage: f32,
    pub leaf_tint: [f32; 3],
    pub grass: [f32; 3],
    pub exposure: f32,
    pub saturation: f32,
    /// Phase of the procedural textures (another domain: other bricks, grass, asphalt).
    pub texture_seed: u64,
    /// How the surfaces, sky and tones are drawn (`Style::none()`: the world as it is).
    pub style: Style,
}

fn sun(elevation_deg: f64, azimuth_deg: f64) -> [f64; 3] {
    let (e, a) = (elevation_deg.to_radians(), azimuth_deg.to_radians());
    [e.cos() * a.cos(), e.cos() * a.sin(), e.sin()]
}

impl Condition {
    /// Sunny midday: the Virtual KITTI 2 `clone` look.
    pub fn clear() -> Self {
        Self {
            name: "clone".into(),
            sun_dir: sun(55.0, 130.0),
            sun_rgb: [1.0, 0.97, 0.9],
            sun_strength: 1.0,
            ambient_rgb: [0.42, 0.46, 0.55],
            sky_zenith: [0.25, 0.45, 0.85],
            sky_horizon: [0.70, 0.80, 0.92],
            clouds: 0.25,
            cloud_rgb: [0.95, 0.95, 0.97],
            fog_density: 0.0008,
            fog_rgb: [0.75, 0.80, 0.88],
            wet: 0.0,
            rain: 0.0,
            snow: 0.0,
            foliage: 0.9,
            leaf_tint: [1.0, 1.0, 1.0],
            grass: [0.28, 0.45, 0.16],
            exposure: 1.0,
            saturation: 1.0,
            texture_seed: 0,
            style: Style::none(),
        }
    }

    /// The condition of a Virtual KITTI 2 variation (the four camera rotations look like clone).
    pub fn vkitti2(variation: &str) -> Option<Self> {
        let base = Self {
            name: variation.to_string(),
            ..Self::clear()
        };
        Some(match variation {
            "clone" | "15-deg-left" | "15-deg-right" | "30-deg-left" | "30-deg-right" => base,
            "fog" => Self {
                sun_strength: 0.15,
                ambient_rgb: [0.62, 0.63, 0.66],
                sky_zenith: [0.72, 0.73, 0.76],
                sky_horizon: [0.80, 0.81, 0.83],
                clouds: 0.0,
                fog_density: 0.03,
                fog_rgb: [0.78, 0.79, 0.81],
                saturation: 0.7,
                ..base
            },
            "morning" => Self {
                sun_dir: sun(14.0, 80.0),
                sun_rgb: [1.0, 0.82, 0.6],
                sun_strength: 1.1,
                ambient_rgb: [0.36, 0.38, 0.48],
                sky_zenith: [0.35, 0.50, 0.80],
                sky_horizon: [0.95, 0.82, 0.70],
                fog_density: 0.003,
                fog_rgb: [0.92, 0.84, 0.75],
                ..base
            },
            "overcast" => Self {
                sun_strength: 0.0,
                ambient_rgb: [0.78, 0.80, 0.84],
                sky_zenith: [0.62, 0.64, 0.68],
                sky_horizon: [0.76, 0.77, 0.80],
                clouds: 0.0,
                fog_density: 0.002,
                fog_rgb: [0.74, 0.75, 0.78],
                saturation: 0.8,
                ..base
            },
            "rain" => Self {
                sun_strength: 0.0,
                ambient_rgb: [0.50, 0.52, 0.58],
                sky_zenith: [0.38, 0.40, 0.45],
                sky_horizon: [0.52, 0.54, 0.58],
                clouds: 0.0,
                fog_density: 0.008,
                fog_rgb: [0.50, 0.52, 0.56],
                wet: 1.0,
                rain: 1.0,
                saturation: 0.75,
                exposure: 0.9,
                ..base
            },
            "sunset" => Self {
                sun_dir: sun(4.0, 290.0),
                sun_rgb: [1.0, 0.55, 0.28],
                sun_strength: 0.9,
                ambient_rgb: [0.30, 0.26, 0.32],
                sky_zenith: [0.30, 0.32, 0.55],
                sky_horizon: [1.0, 0.55, 0.30],
                cloud_rgb: [0.95, 0.60, 0.45],
                fog_density: 0.002,
                fog_rgb: [0.85, 0.55, 0.40],
                exposure: 0.95,
                ..base
            },
            _ => return None,
        })
    }

    /// Seasons and conditions of an Extended CMU-Seasons-like slice. `reference` is the
    /// database traversal (early spring sun, sparse leaves).
    pub fn season(name: &str) -> Option<Self> {
        let clear = Self::clear();
        Some(match name {
            "reference" => Self {
                name: name.into(),
                foliage: 0.45,
                leaf_tint: [0.9, 1.1, 0.7],
                grass: [0.36, 0.44, 0.20],
                ..clear
            },
            "foliage" => Self {
                name: name.into(),
                foliage: 1.0,
                leaf_tint: [0.8, 0.95, 0.75],
                grass: [0.22, 0.42, 0.12],
                sun_dir: sun(62.0, 170.0),
                ..clear
            },
            "low-sun" => Self {
                name: name.into(),
                sun_dir: sun(10.0, 230.0),
                sun_rgb: [1.0, 0.78, 0.55],
                foliage: 0.7,
                leaf_tint: [1.5, 0.85, 0.35],
                grass: [0.40, 0.40, 0.20],
                ..clear
            },
            "overcast" => Self {
                name: name.into(),
                foliage: 0.2,
                leaf_tint: [0.9, 0.8, 0.6],
                grass: [0.38, 0.38, 0.26],
                ..Self::vkitti2("overcast")?
            },
            "snow" => Self {
                name: name.into(),
                snow: 0.9,
                foliage: 0.1,
                leaf_tint: [0.7, 0.6, 0.5],
                sun_dir: sun(22.0, 180.0),
                ambient_rgb: [0.55, 0.58, 0.66],
                ..clear
            },
            "rain" => Self {
                name: name.into(),
                foliage: 0.8,
                ..Self::vkitti2("rain")?
            },
            _ => return None,
        })
    }

    pub const SEASONS: [&'static str; 6] = [
        "reference",
        "foliage",
        "low-sun",
        "overcast",
        "snow",
        "rain",
    ];
}

/// How much a synthetic Virtual KITTI 2 data set's appearance varies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Appearance {
    /// Virtual KITTI 2's: each variation has its fixed light and weather, and every scene the
    /// same season (full summer leaves, green grass).
    #[default]
    Fixed,
    /// Each (scene, variation) also draws its own season and light on top of the variation's
    /// weather: leaf cover and colour (summer to bare, green to autumn), grass (green to dry or
    /// brown), snow cover in about one of five, sun height and direction, ambient light,
    /// exposure and saturation. Geometry and textures stay the scene's, so a positive pair (two
    /// variations of one place) differs in season as well as weather, and the triplet loss
    /// learns invariance to it.
    Wide,
    /// Domain randomization: `Wide`'s seasons and light, and per scene and variation a random
    /// style (`Style::training`: palettes from grey to saturated, surface patterns, window
    /// layouts, sky colours, a colour cast), fog on about one in six, a random camera
    /// development (`Sensor::randomized`: noise, blur, vignetting, contrast, gamma, tint) and a
    /// random rig (height 1.2-2.2 m, pitch -8..+4 degrees, focal length x0.75-1.3); per scene,
    /// building heights, tree sizes and block sizes. The place's geometry is fixed across its
    /// variations, so a positive pair is the same place in another look.
    Random,
}

impl Appearance {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "fixed" => Some(Self::Fixed),
            "wide" => Some(Self::Wide),
            "random" => Some(Self::Random),
            _ => None,
        }
    }
}

impl Condition {
    /// This condition with a season-like look drawn from `key` (`Appearance::Wide`): the same
    /// key gives the same look. The weather stays (fog, rain); without direct sun (overcast, rain)
    /// the sun does not move.
    pub fn widened(&self, key: u64) -> Self {
        let mut draw = {
            let mut i = 0i64;
            move || {
                i += 1;
                unit(hash(&[key as i64, i])) as f32
            }
        };
        let mut c = self.clone();
        // Leaves: from bare to full; their colour from summer green through yellow to red-brown.
        c.foliage = 0.1 + 0.9 * draw();
        let autumn = draw();
        let summer = [0.85, 1.05, 0.75];
        let fall = [1.55, 0.85, 0.35];
        c.leaf_tint = std::array::from_fn(|k| summer[k] + (fall[k] - summer[k]) * autumn);
        // Grass: lush green to dry straw and brown earth.
        let dry = draw();
        let (green, straw) = ([0.22, 0.44, 0.12], [0.46, 0.40, 0.22]);
        c.grass = std::array::from_fn(|k| green[k] + (straw[k] - green[k]) * dry);
        // Snow on about one in five (not with rain).
        c.snow = if self.rain == 0.0 && draw() < 0.2 {
            0.4 + 0.5 * draw()
        } else {
            0.0
        };
        if self.sun_strength > 0.0 {
            let elevation = 8.0 + 57.0 * draw() as f64;
            let azimuth = 360.0 * draw() as f64;
            c.sun_dir = sun(elevation, azimuth);
            let warm = draw() * (1.0 - (elevation as f32 - 8.0) / 57.0);
            c.sun_rgb = [1.0, 0.97 - 0.25 * warm, 0.9 - 0.4 * warm];
        }
        let ambient = 0.85 + 0.3 * draw();
        c.ambient_rgb = c.ambient_rgb.map(|v| v * ambient);
        c.exposure *= 0.85 + 0.3 * draw();
        c.saturation *= 0.8 + 0.4 * draw();
        c
    }
}

/// How the camera turns linear light into pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Sensor {
    /// Standard deviation of additive noise (in [0, 1] pixel units).
    pub noise: f32,
    /// Gaussian blur sigma in pixels (0: none).
    pub blur: f32,
    /// Darkening at the image corners (0: none).
    pub vignetting: f32,
    /// Contrast around mid-grey after gamma (1: unchanged).
    pub contrast: f32,
    pub tint: [f32; 3],
    pub gamma: f32,
    pub seed: u64,
}

impl Sensor {
    /// A clean synthetic camera (Virtual KITTI 2).
    pub fn clean() -> Self {
        Self {
            noise: 0.0,
            blur: 0.0,
            vignetting: 0.0,
            contrast: 1.0,
            tint: [1.0; 3],
            gamma: 2.2,
            seed: 0,
        }
    }

    /// A real camera: noise, softer optics, vignetting, a harder tone curve and a colour cast.
    pub fn real(seed: u64) -> Self {
        Self {
            noise: 0.02,
            blur: 0.8,
            vignetting: 0.38,
            contrast: 1.25,
            tint: [1.03, 1.0, 0.9],
            gamma: 2.0,
            seed,
        }
    }

    /// A camera drawn from `key`: anything from a clean render to a noisy, soft, vignetted one
    /// with its own tone curve and colour cast.
    pub fn randomized(key: u64) -> Self {
        let d = |i: i64| unit(hash(&[key as i64, i])) as f32;
        Self {
            noise: if d(1) < 0.5 { 0.0 } else { 0.025 * d(2) },
            blur: if d(3) < 0.6 { 0.0 } else { 1.2 * d(4) },
            vignetting: 0.45 * d(5),
            contrast: 0.75 + 0.6 * d(6),
            tint: [0.9 + 0.2 * d(7), 1.0, 0.9 + 0.2 * d(8)],
            gamma: 1.7 + 0.9 * d(9),
            seed: key,
        }
    }

    /// Linear colour -> 8-bit image: exposure, rain streaks, blur, gamma, saturation, contrast,
    /// tint, vignetting, noise.
    pub fn develop(
        &self,
        linear: &[[f32; 3]],
        w: u32,
        h: u32,
        cond: &Condition,
        time_s: f64,
    ) -> RgbImage {
        let mut img: Vec<[f32; 3]> = linear
            .iter()
            .map(|&c| {
                let c = cond.style.graded(c);
                [
                    c[0] * cond.exposure,
                    c[1] * cond.exposure,
                    c[2] * cond.exposure,
                ]
            })
            .collect();
        let frame_key = (time_s * 1000.0).round() as i64;
        if cond.rain > 0.0 {
            for v in 0..h {
                for u in 0..w {
                    let col = hash(&[self.seed as i64, frame_key, (u / 2) as i64]);
                    let phase = (unit(col) * 40.0) as u32;
                    let on = (v + phase) % 40 < 9
                        && unit(hash(&[col as i64, ((v + phase) / 40) as i64]))
                            < 0.18 * cond.rain as f64;
                    if on {
                        let p = &mut img[(v * w + u) as usize];
                        for c in p.iter_mut() {
                            *c = *c * 0.75 + 0.22;
                        }
                    }
                }
            }
        }
        if self.blur > 0.0 {
            img = blur(&img, w, h, self.blur);
        }
        let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
        let rmax = (cx * cx + cy * cy).sqrt();
        RgbImage::from_fn(w, h, |u, v| {
            let mut c = img[(v * w + u) as usize];
            for ch in c.iter_mut() {
                *ch = ch.max(0.0).powf(1.0 / self.gamma);
            }
            let lum = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
            let r = (((u as f32 - cx).powi(2) + (v as f32 - cy).powi(2)).sqrt() / rmax).powi(2);
            let vig = 1.0 - self.vignetting * r;
            let mut out = [0u8; 3];
            for k in 0..3 {
                let mut x = lum + (c[k] - lum) * cond.saturation;
                x = 0.5 + (x - 0.5) * self.contrast;
                x *= self.tint[k] * vig;
                if self.noise > 0.0 {
                    // Sum of uniforms: close to Gaussian, deterministic per pixel and frame.
                    let hsh = hash(&[self.seed as i64, frame_key, u as i64, v as i64, k as i64]);
                    let g = (unit(hsh) + unit(hsh.rotate_left(21)) + unit(hsh.rotate_left(42))
                        - 1.5)
                        * 2.0;
                    x += g as f32 * self.noise;
                }
                out[k] = cond
                    .style
                    .posterized((x.clamp(0.0, 1.0) * 255.0).round() as u8);
            }
            image::Rgb(out)
        })
    }
}

/// Separable Gaussian blur (edges clamped).
fn blur(img: &[[f32; 3]], w: u32, h: u32, sigma: f32) -> Vec<[f32; 3]> {
    let radius = (sigma * 2.5).ceil() as i64;
    let kernel: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = kernel.iter().sum();
    let pass = |src: &[[f32; 3]], horizontal: bool| -> Vec<[f32; 3]> {
        let mut out = vec![[0f32; 3]; src.len()];
        for v in 0..h as i64 {
            for u in 0..w as i64 {
                let mut acc = [0f32; 3];
                for (k, wt) in kernel.iter().enumerate() {
                    let off = k as i64 - radius;
                    let (su, sv) = if horizontal {
                        ((u + off).clamp(0, w as i64 - 1), v)
                    } else {
                        (u, (v + off).clamp(0, h as i64 - 1))
                    };
                    let p = src[(sv * w as i64 + su) as usize];
                    for c in 0..3 {
                        acc[c] += p[c] * wt;
                    }
                }
                out[(v * w as i64 + u) as usize] = [acc[0] / total, acc[1] / total, acc[2] / total];
            }
        }
        out
    };
    pass(&pass(img, true), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widened_looks_are_repeatable_span_the_seasons_and_keep_the_weather() {
        let clone = Condition::vkitti2("clone").unwrap();
        assert_eq!(clone.widened(42), clone.widened(42));
        assert_ne!(clone.widened(42), clone.widened(43));
        let looks: Vec<Condition> = (0..500).map(|k| clone.widened(k)).collect();
        let (lo, hi) = looks.iter().fold((1f32, 0f32), |(lo, hi), c| {
            (lo.min(c.foliage), hi.max(c.foliage))
        });
        assert!(lo < 0.2 && hi > 0.9, "foliage spans {lo}..{hi}");
        let snowy = looks.iter().filter(|c| c.snow > 0.0).count();
        assert!((60..140).contains(&snowy), "{snowy} of 500 snowy");
        let low_sun = looks.iter().filter(|c| c.sun_dir[2] < 0.3).count();
        assert!(
            low_sun > 50,
            "{low_sun} of 500 with the sun below 17 degrees"
        );
        for weather in ["rain", "overcast", "fog"] {
            let base = Condition::vkitti2(weather).unwrap();
            for k in 0..100 {
                let c = base.widened(k);
                assert_eq!(c.fog_density, base.fog_density);
                assert_eq!(c.rain, base.rain);
                if base.sun_strength == 0.0 {
                    assert_eq!(c.sun_dir, base.sun_dir, "{weather}: no sun to move");
                }
                if weather == "rain" {
                    assert_eq!(c.snow, 0.0, "no snow in the rain");
                }
            }
        }
    }
}
