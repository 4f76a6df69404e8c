//! Ray casting of the procedural world with a pinhole camera, optionally behind a distorting lens
//! ([`render_through`]): one ray through each pixel centre gives the RGB colour, the z-depth and
//! the Virtual KITTI 2 class of the same surface point, so the three images agree exactly.
//! Objects are found by walking the world's 2-D grid cell by cell along the ray (DDA); the
//! ground is the plane z = 0; sun shadows come from a second ray.

use image::RgbImage;
use nalgebra::{Point3, Vector3};

use super::condition::{Condition, Sensor};
use super::noise::{fbm2, hash, unit, value2};
use super::style::Part;
use super::world::{class, Material, Object, Shape, World, SIDEWALK};
use crate::geom::{Pinhole, Pose};
use crate::map::views::{lens_of, undistort, Distortion};

/// Rays stop here: what lies beyond is sky (and the VKITTI2 far plane is 655.35 m).
pub const MAX_DISTANCE: f64 = 600.0;

/// One rendered frame.
pub struct Frame {
    pub rgb: RgbImage,
    /// z-depth in metres per pixel (row-major); infinite for sky.
    pub depth: Vec<f32>,
    /// Class index per pixel (row-major).
    pub class: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy)]
struct Hit {
    t: f64,
    normal: Vector3<f64>,
    /// Face-local texture coordinates: (along the face, height) in metres.
    uv: (f64, f64),
    class: u8,
    material: Material,
    /// Top of the object (for roofs).
    top: f64,
}

/// The entering root t of a t^2 + 2 b t + c = 0 (a > 0), if it lies in (eps, t_max].
fn nearest_root(a: f64, b: f64, c: f64, eps: f64, t_max: f64) -> Option<f64> {
    let disc = b * b - a * c;
    if disc < 0.0 {
        return None;
    }
    let t = (-b - disc.sqrt()) / a;
    (t > eps && t <= t_max).then_some(t)
}

/// What the tracer precomputes per object (once a frame, not once a ray): sin and cos of a box's
/// yaw, and a circle in the ground plane that holds the object's footprint (centre x, y and a
/// radius with a margin), for a cheap and conservative miss test.
#[derive(Debug, Clone, Copy)]
struct Bounds {
    sc: (f64, f64),
    circle: [f64; 3],
}

fn bounds(obj: &Object) -> Bounds {
    match obj.shape {
        Shape::Box {
            cx,
            cy,
            hx,
            hy,
            yaw,
            ..
        } => Bounds {
            sc: yaw.sin_cos(),
            circle: [cx, cy, hx.hypot(hy) * 1.001 + 1e-6],
        },
        // Cylinders and ellipsoids are cheap to test as they are.
        _ => Bounds {
            sc: (0.0, 1.0),
            circle: [0.0, 0.0, f64::INFINITY],
        },
    }
}

/// False when the ray's ground-plane line cannot come within the circle `c` (conservative).
fn may_hit(c: &[f64; 3], o: &Point3<f64>, d: &Vector3<f64>) -> bool {
    let a = d.x * d.x + d.y * d.y;
    if !c[2].is_finite() || a < 1e-12 {
        return true;
    }
    let cross = d.x * (c[1] - o.y) - d.y * (c[0] - o.x);
    cross * cross <= c[2] * c[2] * a
}

/// `sc`: sin and cos of a box's yaw (`bounds`).
fn intersect(
    obj: &Object,
    sc: (f64, f64),
    o: &Point3<f64>,
    d: &Vector3<f64>,
    t_max: f64,
) -> Option<Hit> {
    let eps = 1e-6;
    match obj.shape {
        Shape::Box {
            cx,
            cy,
            hx,
            hy,
            z0,
            z1,
            ..
        } => {
            let (s, c) = sc;
            // Into the box frame (rotate by -yaw about z).
            let (px, py) = (o.x - cx, o.y - cy);
            let lo = [c * px + s * py, -s * px + c * py, o.z];
            let ld = [c * d.x + s * d.y, -s * d.x + c * d.y, d.z];
            let bmin = [-hx, -hy, z0];
            let bmax = [hx, hy, z1];
            let (mut t0, mut t1, mut axis, mut sign) = (0.0f64, t_max, 3usize, 0.0f64);
            for k in 0..3 {
                if ld[k].abs() < 1e-12 {
                    if lo[k] < bmin[k] || lo[k] > bmax[k] {
                        return None;
                    }
                    continue;
                }
                let inv = 1.0 / ld[k];
                let (mut ta, mut tb) = ((bmin[k] - lo[k]) * inv, (bmax[k] - lo[k]) * inv);
                let mut sg = -1.0;
                if ta > tb {
                    std::mem::swap(&mut ta, &mut tb);
                    sg = 1.0;
                }
                if ta > t0 {
                    t0 = ta;
                    axis = k;
                    sign = sg;
                }
                t1 = t1.min(tb);
                if t0 > t1 {
                    return None;
                }
            }
            if axis == 3 || t0 <= eps {
                return None; // origin inside the box
            }
            let p = [lo[0] + ld[0] * t0, lo[1] + ld[1] * t0];
            let (ln, uv) = match axis {
                0 => ([sign, 0.0], (p[1] + hy, o.z + d.z * t0)),
                1 => ([0.0, sign], (p[0] + hx, o.z + d.z * t0)),
                _ => ([0.0, 0.0], (p[0], p[1])),
            };
            let normal = if axis == 2 {
                Vector3::new(0.0, 0.0, sign)
            } else {
                Vector3::new(c * ln[0] - s * ln[1], s * ln[0] + c * ln[1], 0.0)
            };
            Some(Hit {
                t: t0,
                normal,
                uv,
                class: obj.class,
                material: obj.material,
                top: z1,
            })
        }
        Shape::Cylinder { cx, cy, r, z0, z1 } => {
            let (px, py) = (o.x - cx, o.y - cy);
            let a = d.x * d.x + d.y * d.y;
            if a < 1e-12 {
                return None;
            }
            let t = nearest_root(
                a,
                px * d.x + py * d.y,
                px * px + py * py - r * r,
                eps,
                t_max,
            )?;
            let z = o.z + d.z * t;
            if z < z0 || z > z1 {
                return None;
            }
            let (nx, ny) = ((px + d.x * t) / r, (py + d.y * t) / r);
            Some(Hit {
                t,
                normal: Vector3::new(nx, ny, 0.0),
                uv: (ny.atan2(nx) * r, z),
                class: obj.class,
                material: obj.material,
                top: z1,
            })
        }
        Shape::Ellipsoid {
            cx,
            cy,
            cz,
            rx,
            ry,
            rz,
        } => {
            let lo = Vector3::new((o.x - cx) / rx, (o.y - cy) / ry, (o.z - cz) / rz);
            let ld = Vector3::new(d.x / rx, d.y / ry, d.z / rz);
            let a = ld.dot(&ld);
            let t = nearest_root(a, lo.dot(&ld), lo.dot(&lo) - 1.0, eps, t_max)?;
            let p = lo + ld * t;
            let normal = Vector3::new(p.x / rx, p.y / ry, p.z / rz).normalize();
            Some(Hit {
                t,
                normal,
                uv: (o.x + d.x * t, o.z + d.z * t),
                class: obj.class,
                material: obj.material,
                top: cz + rz,
            })
        }
    }
}

/// Leaf cover: a ray through a crown is stopped where the foliage is dense enough.
fn foliage_blocks(m: &Material, p: &Point3<f64>, density: f32) -> bool {
    match m {
        Material::Foliage { seed, .. } => {
            let n = value2(*seed as u64, p.x * 1.7 + p.z * 0.9, p.y * 1.7 - p.z * 0.7);
            (n as f32) < density.clamp(0.0, 1.0) * 1.15 - 0.05
        }
        _ => true,
    }
}

pub struct Tracer<'a> {
    pub world: &'a World,
    /// Moving vehicles at this frame's time, near the camera.
    pub movers: Vec<Object>,
    pub foliage: f32,
    /// `bounds` of each world object and of each mover.
    world_bounds: Vec<Bounds>,
    mover_bounds: Vec<Bounds>,
    /// Mailbox: the ray number that last tested each world object. An object spans several grid
    /// cells; testing it again on the same ray cannot change the result (its hit, if any, is
    /// already the limit), so it is skipped.
    tested: std::cell::RefCell<Vec<u32>>,
    ray: std::cell::Cell<u32>,
    /// No object reaches above this height: an upward ray that climbs past it hits nothing more.
    ceiling: f64,
}

/// The highest point of a shape.
fn top(shape: &Shape) -> f64 {
    match *shape {
        Shape::Box { z1, .. } | Shape::Cylinder { z1, .. } => z1,
        Shape::Ellipsoid { cz, rz, .. } => cz + rz.abs(),
    }
}

impl Tracer<'_> {
    /// Closest object hit before `t_max` (any hit if `any`).
    fn trace(&self, o: &Point3<f64>, d: &Vector3<f64>, t_max: f64, any: bool) -> Option<Hit> {
        let mut best: Option<Hit> = None;
        let mut limit = t_max;
        let ray = self.ray.get().wrapping_add(1);
        self.ray.set(ray);
        let mut tested = self.tested.borrow_mut();
        if ray == 0 {
            tested.fill(0);
            self.ray.set(1);
        }
        let ray = self.ray.get();
        let consider = |obj: &Object, b: &Bounds, best: &mut Option<Hit>, limit: &mut f64| {
            if !may_hit(&b.circle, o, d) {
                return;
            }
            if let Some(h) = intersect(obj, b.sc, o, d, *limit) {
                if h.t < *limit && foliage_blocks(&h.material, &(o + d * h.t), self.foliage) {
                    *limit = h.t;
                    *best = Some(h);
                }
            }
        };
        for (m, b) in self.movers.iter().zip(&self.mover_bounds) {
            consider(m, b, &mut best, &mut limit);
        }
        if any && best.is_some() {
            return best;
        }
        let g = &self.world.grid;
        let (gx0, gy0) = (g.min[0], g.min[1]);
        let (gx1, gy1) = (gx0 + g.nx as f64 * g.cell, gy0 + g.ny as f64 * g.cell);
        // Enter the grid's rectangle.
        let (mut t_in, mut t_out) = (0.0f64, limit);
        for (oc, dc, lo, hi) in [(o.x, d.x, gx0, gx1), (o.y, d.y, gy0, gy1)] {
            if dc.abs() < 1e-12 {
                if oc < lo || oc > hi {
                    return best;
                }
            } else {
                let (a, b) = ((lo - oc) / dc, (hi - oc) / dc);
                t_in = t_in.max(a.min(b));
                t_out = t_out.min(a.max(b));
            }
        }
        if d.z > 1e-12 {
            t_out = t_out.min((self.ceiling - o.z) / d.z);
        }
        if t_in > t_out {
            return best;
        }
        let start = o + d * (t_in + 1e-9);
        let (mut ix, mut iy) = (
            (((start.x - gx0) / g.cell).floor() as i64).clamp(0, g.nx as i64 - 1),
            (((start.y - gy0) / g.cell).floor() as i64).clamp(0, g.ny as i64 - 1),
        );
        let step = |dc: f64| if dc > 0.0 { 1 } else { -1 };
        let (sx, sy) = (step(d.x), step(d.y));
        let next = |i: i64, s: i64, oc: f64, dc: f64, base: f64| {
            if dc.abs() < 1e-12 {
                f64::INFINITY
            } else {
                (base + (i + (s > 0) as i64) as f64 * g.cell - oc) / dc
            }
        };
        let (mut tx, mut ty) = (next(ix, sx, o.x, d.x, gx0), next(iy, sy, o.y, d.y, gy0));
        let (dtx, dty) = (
            if d.x.abs() < 1e-12 {
                f64::INFINITY
            } else {
                g.cell / d.x.abs()
            },
            if d.y.abs() < 1e-12 {
                f64::INFINITY
            } else {
                g.cell / d.y.abs()
            },
        );
        loop {
            for &oi in &g.objects[iy as usize * g.nx + ix as usize] {
                let oi = oi as usize;
                if tested[oi] == ray {
                    continue;
                }
                tested[oi] = ray;
                consider(
                    &self.world.objects[oi],
                    &self.world_bounds[oi],
                    &mut best,
                    &mut limit,
                );
                if any && best.is_some() {
                    return best;
                }
            }
            let t_exit = tx.min(ty);
            if t_exit >= limit || t_exit > t_out {
                return best;
            }
            if tx < ty {
                ix += sx;
                tx += dtx;
            } else {
                iy += sy;
                ty += dty;
            }
            if ix < 0 || iy < 0 || ix >= g.nx as i64 || iy >= g.ny as i64 {
                return best;
            }
        }
    }
}

fn mul(a: [f32; 3], b: [f32; 3]) -> [f32; 3] {
    [a[0] * b[0], a[1] * b[1], a[2] * b[2]]
}

fn lerp(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale(a: [f32; 3], s: f32) -> [f32; 3] {
    [a[0] * s, a[1] * s, a[2] * s]
}

/// Surface colour (albedo) of a hit point.
fn albedo(hit: &Hit, p: &Point3<f64>, cond: &Condition, tex: u64) -> [f32; 3] {
    let n = |sx: f64, sy: f64, f: f64| fbm2(tex, sx * f, sy * f) as f32;
    let style = &cond.style;
    let restyle =
        |part: Part, c: [f32; 3], u: f64, v: f64| style.surface(part).apply(c, style.seed, u, v);
    let base = match hit.material {
        Material::Plain(c) | Material::Sign(c) => restyle(
            Part::Other,
            scale(c, 0.9 + 0.2 * n(p.x + p.z, p.y, 3.0)),
            p.x + p.y,
            p.z,
        ),
        Material::Bark => restyle(
            Part::Bark,
            scale([0.30, 0.22, 0.15], 0.8 + 0.4 * n(p.z, p.x + p.y, 4.0)),
            p.x + p.y,
            p.z,
        ),
        Material::Foliage { base, seed } => {
            let v = fbm2(tex ^ seed as u64, p.x * 1.3 + p.z, p.y * 1.3 - p.z) as f32;
            let base = restyle(Part::Leaves, base, p.x + p.y, p.z);
            scale(mul(base, cond.leaf_tint), 0.55 + 0.8 * v)
        }
        Material::Vehicle(c) => {
            let Hit {
                uv: (_, z), top, ..
            } = *hit;
            if hit.normal.z.abs() < 0.5 && z > top - (top - 0.25) * 0.38 {
                [0.07, 0.08, 0.10] // windows
            } else if z < 0.6 {
                [0.04, 0.04, 0.04] // wheels and sills
            } else {
                restyle(Part::Vehicle, c, p.x + p.y, z)
            }
        }
        Material::Facade {
            wall,
            window,
            spacing,
            floor,
        } => {
            let (u, z) = hit.uv;
            if hit.normal.z > 0.5 {
                let roof = scale([0.32, 0.31, 0.30], 0.8 + 0.4 * n(p.x, p.y, 0.5));
                restyle(Part::Roof, roof, p.x, p.y)
            } else {
                let spacing = spacing * style.window_scale[0];
                let floor = floor * style.window_scale[1];
                let fu = (u / spacing as f64).fract();
                let fz = (z / floor as f64).fract();
                let in_window = (0.22..0.78).contains(&fu)
                    && (0.30..0.82).contains(&fz)
                    && z > 1.5
                    && z < hit.top - 0.6;
                let grime = 0.82 + 0.3 * n(u, z, 0.35);
                if in_window {
                    let lit = unit(hash(&[
                        tex as i64,
                        (u / spacing as f64).floor() as i64,
                        (z / floor as f64).floor() as i64,
                        p.x as i64,
                    ]));
                    restyle(
                        Part::Window,
                        scale(window, if lit > 0.9 { 2.4 } else { 1.0 }),
                        u,
                        z,
                    )
                } else {
                    restyle(Part::Wall, scale(wall, grime), u, z)
                }
            }
        }
    };
    // Snow settles on up-facing surfaces.
    if cond.snow > 0.0 && hit.normal.z > 0.35 {
        let cover = (cond.snow * (0.7 + 0.5 * n(p.x, p.y, 0.8))).min(1.0);
        return lerp(base, [0.92, 0.93, 0.96], cover);
    }
    base
}

/// Ground colour and class at (x, y).
fn ground(world: &World, x: f64, y: f64, cond: &Condition, tex: u64) -> ([f32; 3], u8) {
    let mut best: Option<(f64, f64, f64)> = None; // (distance - half width, along, half width)
    if let Some((cx, cy)) = world.grid.cell_of(x, y) {
        for &ri in &world.grid.roads[cy * world.grid.nx + cx] {
            let r = &world.roads[ri as usize];
            let (dist, along, _) = r.locate(x, y);
            let clearance = dist - r.half_width;
            if best.is_none_or(|b| clearance < b.0) {
                best = Some((clearance, along, dist));
            }
        }
    }
    let grain = fbm2(tex ^ 0x6A, x * 0.9, y * 0.9) as f32;
    let (colour, cls) = match best {
        Some((clearance, along, dist)) if clearance <= 0.0 => {
            let dashed = dist < 0.08 && along.rem_euclid(9.0) < 4.5;
            let edge_line = (clearance + 0.35).abs() < 0.08;
            let c = if dashed || edge_line {
                [0.80, 0.80, 0.76]
            } else {
                let asphalt = scale([0.24, 0.24, 0.25], 0.8 + 0.4 * grain);
                cond.style
                    .surface(Part::Road)
                    .apply(asphalt, cond.style.seed, along, dist)
            };
            (c, class::ROAD)
        }
        Some((clearance, along, _)) if clearance <= SIDEWALK => {
            let paving = scale([0.52, 0.50, 0.47], 0.85 + 0.3 * grain);
            let c =
                cond.style
                    .surface(Part::Sidewalk)
                    .apply(paving, cond.style.seed, along, clearance);
            (c, class::ROAD)
        }
        _ => {
            let dirt = fbm2(tex ^ 0x33, x / 18.0, y / 18.0) as f32;
            let grass = lerp(
                cond.grass,
                [0.42, 0.36, 0.25],
                (dirt - 0.35).clamp(0.0, 0.6) * 1.4,
            );
            let grass = scale(grass, 0.75 + 0.5 * grain);
            let c = cond
                .style
                .surface(Part::Terrain)
                .apply(grass, cond.style.seed, x, y);
            (c, class::TERRAIN)
        }
    };
    let colour = if cond.snow > 0.0 {
        let cover = if cls == class::ROAD {
            cond.snow * 0.45 * (0.6 + grain)
        } else {
            cond.snow * (0.8 + 0.4 * grain)
        };
        lerp(colour, [0.90, 0.91, 0.95], cover.min(1.0))
    } else {
        colour
    };
    (colour, cls)
}

fn sky(d: &Vector3<f64>, cond: &Condition, tex: u64) -> [f32; 3] {
    let dn = d.normalize();
    let elev = dn.z.max(0.0) as f32;
    let mut c = lerp(cond.sky_horizon, cond.sky_zenith, elev.powf(0.6));
    if cond.style.sky_mix > 0.0 {
        let [zenith, horizon] = cond.style.sky;
        c = lerp(c, lerp(horizon, zenith, elev.powf(0.6)), cond.style.sky_mix);
    }
    let sun = Vector3::from(cond.sun_dir);
    let glow = dn.dot(&sun).max(0.0).powf(64.0) as f32;
    c = lerp(c, cond.sun_rgb, glow * 0.8);
    if cond.clouds > 0.0 && dn.z > 0.01 {
        let (u, v) = (dn.x / dn.z, dn.y / dn.z);
        let cl = fbm2(tex ^ 0xC10D, u * 1.5, v * 1.5) as f32;
        let cover = ((cl - (1.0 - cond.clouds)) * 3.0).clamp(0.0, 1.0);
        c = lerp(c, cond.cloud_rgb, cover);
    }
    c
}

/// Colour, z-depth and class of the ray through one pixel.
fn shade(
    tr: &Tracer,
    o: &Point3<f64>,
    d: &Vector3<f64>,
    cond: &Condition,
    tex: u64,
) -> ([f32; 3], f32, u8) {
    let t_ground = if d.z < -1e-9 {
        -o.z / d.z
    } else {
        f64::INFINITY
    };
    let t_max = t_ground.min(MAX_DISTANCE);
    let hit = tr.trace(o, d, t_max, false);
    let (t, normal, albedo_c, cls) = match hit {
        Some(h) => {
            let p = o + d * h.t;
            (h.t, h.normal, albedo(&h, &p, cond, tex), h.class)
        }
        None if t_ground <= MAX_DISTANCE => {
            let p = o + d * t_ground;
            let (c, cls) = ground(tr.world, p.x, p.y, cond, tex);
            (t_ground, Vector3::z(), c, cls)
        }
        None => {
            let c = sky(d, cond, tex);
            return (
                lerp(c, cond.fog_rgb, (cond.fog_density * 400.0).min(1.0) as f32),
                f32::INFINITY,
                class::SKY,
            );
        }
    };
    let p = o + d * t;
    let sun = Vector3::from(cond.sun_dir);
    let facing = normal.dot(&sun).max(0.0) as f32;
    let lit = if facing > 0.0 && cond.sun_strength > 0.0 && !cond.style.shadows {
        facing
    } else if facing > 0.0 && cond.sun_strength > 0.0 {
        let origin = p + normal * 0.02;
        let blocked = tr.trace(&origin, &sun, 300.0, true).is_some();
        if blocked {
            0.0
        } else {
            facing
        }
    } else {
        0.0
    };
    let sky_light = 0.65 + 0.35 * normal.z.max(0.0) as f32;
    let light = [
        cond.ambient_rgb[0] * sky_light + cond.sun_rgb[0] * cond.sun_strength * lit,
        cond.ambient_rgb[1] * sky_light + cond.sun_rgb[1] * cond.sun_strength * lit,
        cond.ambient_rgb[2] * sky_light + cond.sun_rgb[2] * cond.sun_strength * lit,
    ];
    let mut c = mul(albedo_c, light);
    if cond.wet > 0.0 && normal.z > 0.9 {
        // Wet ground: darker, with a dim reflection of the sky.
        let refl = sky(&Vector3::new(d.x, d.y, -d.z), cond, tex);
        c = lerp(scale(c, 1.0 - 0.35 * cond.wet), refl, 0.25 * cond.wet);
    }
    let dist = (d * t).norm();
    let fog = 1.0 - (-cond.fog_density * dist).exp();
    c = lerp(c, cond.fog_rgb, fog as f32);
    (c, t as f32, cls)
}

/// Camera ray origin and rotation from a camera-to-world pose.
pub fn render(
    world: &World,
    cam: &Pinhole,
    world_from_cam: &Pose,
    time_s: f64,
    cond: &Condition,
    sensor: &Sensor,
) -> Frame {
    render_through(world, cam, None, world_from_cam, time_s, cond, sensor)
}

/// [`render`] through a lens with OpenCV's radial-tangential distortion (`lens`: k1, k2, p1, p2,
/// k3 on normalised coordinates; None or all zero: an ideal pinhole). Each pixel's ray is the
/// undistorted direction of its centre, so the frame is what a camera with intrinsics `cam` and
/// that lens takes (Extended CMU-Seasons' images are such: not undistorted). A pixel whose ray
/// cannot be undistorted (past where the lens model folds back) gets no light (black before the
/// sensor's development), no depth (infinite, as sky) and class 0.
pub fn render_through(
    world: &World,
    cam: &Pinhole,
    lens: Option<&Distortion>,
    world_from_cam: &Pose,
    time_s: f64,
    cond: &Condition,
    sensor: &Sensor,
) -> Frame {
    let lens = lens_of(lens);
    let origin = Point3::from(world_from_cam.translation.vector);
    let rot = world_from_cam.rotation.to_rotation_matrix();
    let movers = world
        .movers_at(time_s)
        .into_iter()
        .filter(|m| {
            let fp = m.shape.footprint();
            let (mx, my) = ((fp[0] + fp[2]) / 2.0, (fp[1] + fp[3]) / 2.0);
            let dd = ((mx - origin.x).powi(2) + (my - origin.y).powi(2)).sqrt();
            // Not the vehicle carrying the camera, and near enough to matter.
            dd > 7.0 && dd < 250.0
        })
        .collect::<Vec<_>>();
    let tracer = Tracer {
        world,
        world_bounds: world.objects.iter().map(bounds).collect(),
        mover_bounds: movers.iter().map(bounds).collect(),
        tested: std::cell::RefCell::new(vec![0; world.objects.len()]),
        ceiling: world
            .objects
            .iter()
            .chain(&movers)
            .map(|o| top(&o.shape))
            .fold(0.0, f64::max)
            + 1e-6,
        ray: std::cell::Cell::new(0),
        movers,
        foliage: cond.foliage,
    };
    let (w, h) = (cam.width, cam.height);
    let tex = world.seed ^ cond.texture_seed;
    let mut rgb = vec![[0f32; 3]; (w * h) as usize];
    let mut depth = vec![0f32; (w * h) as usize];
    let mut cls = vec![0u8; (w * h) as usize];
    for v in 0..h {
        for u in 0..w {
            let i = (v * w + u) as usize;
            let ray = cam.ray(u as f64, v as f64);
            let ray = match lens {
                None => ray,
                Some(d) => match undistort(d, ray.x, ray.y) {
                    Some((x, y)) => Vector3::new(x, y, 1.0),
                    None => {
                        depth[i] = f32::INFINITY;
                        continue;
                    }
                },
            };
            let d = rot * ray;
            let (c, z, k) = shade(&tracer, &origin, &d, cond, tex);
            rgb[i] = c;
            depth[i] = z;
            cls[i] = k;
        }
    }
    let rgb = sensor.develop(&rgb, w, h, cond, time_s);
    Frame {
        rgb,
        depth,
        class: cls,
        width: w,
        height: h,
    }
}
