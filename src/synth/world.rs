//! The procedural world: a jittered grid of roads whose outer ring and inner streets form loops
//! (so places are revisited), and along them buildings with facades and windows, trees,
//! bushes and hedges, poles with signs and traffic lights, guard rails, parked and moving
//! vehicles, over flat terrain (z = 0) under a sky. World frame: x east, y north, z up, metres.
//!
//! Objects are indexed in a uniform 2-D grid over (x, y) for ray casting (`render`).

use super::noise::{fbm2, Rng};

/// The Virtual KITTI 2 class indices (see `data::vkitti2::CLASSES`).
pub mod class {
    pub const TERRAIN: u8 = 1;
    pub const SKY: u8 = 2;
    pub const TREE: u8 = 3;
    pub const VEGETATION: u8 = 4;
    pub const BUILDING: u8 = 5;
    pub const ROAD: u8 = 6;
    pub const GUARD_RAIL: u8 = 7;
    pub const TRAFFIC_SIGN: u8 = 8;
    pub const TRAFFIC_LIGHT: u8 = 9;
    pub const POLE: u8 = 10;
    pub const MISC: u8 = 11;
    pub const TRUCK: u8 = 12;
    pub const CAR: u8 = 13;
    pub const VAN: u8 = 14;
}

/// Geometry, all resting on or above the ground.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// Box rotated by `yaw` about z: centre (x, y), half extents, z from `z0` to `z1`.
    Box {
        cx: f64,
        cy: f64,
        hx: f64,
        hy: f64,
        z0: f64,
        z1: f64,
        yaw: f64,
    },
    /// Vertical cylinder.
    Cylinder {
        cx: f64,
        cy: f64,
        r: f64,
        z0: f64,
        z1: f64,
    },
    /// Axis-aligned ellipsoid.
    Ellipsoid {
        cx: f64,
        cy: f64,
        cz: f64,
        rx: f64,
        ry: f64,
        rz: f64,
    },
}

impl Shape {
    /// (min x, min y, max x, max y) of the footprint.
    pub fn footprint(&self) -> [f64; 4] {
        match *self {
            Shape::Box {
                cx,
                cy,
                hx,
                hy,
                yaw,
                ..
            } => {
                let (s, c) = yaw.sin_cos();
                let ex = (hx * c).abs() + (hy * s).abs();
                let ey = (hx * s).abs() + (hy * c).abs();
                [cx - ex, cy - ey, cx + ex, cy + ey]
            }
            Shape::Cylinder { cx, cy, r, .. } => [cx - r, cy - r, cx + r, cy + r],
            Shape::Ellipsoid { cx, cy, rx, ry, .. } => [cx - rx, cy - ry, cx + rx, cy + ry],
        }
    }
}

/// How a surface is coloured (the condition then lights and tints it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Material {
    Plain([f32; 3]),
    /// Facade colour; window grid spacing (m) horizontally and per floor.
    Facade {
        wall: [f32; 3],
        window: [f32; 3],
        spacing: f32,
        floor: f32,
    },
    /// Leaves: base colour, density seed.
    Foliage {
        base: [f32; 3],
        seed: u32,
    },
    Bark,
    /// Body colour; windows on the upper part.
    Vehicle([f32; 3]),
    /// Sign face.
    Sign([f32; 3]),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Object {
    pub shape: Shape,
    pub class: u8,
    pub material: Material,
}

/// A straight road between two junctions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Road {
    pub a: [f64; 2],
    pub b: [f64; 2],
    /// Half width of the carriageway; a sidewalk of `SIDEWALK` m follows on each side.
    pub half_width: f64,
}

pub const SIDEWALK: f64 = 2.0;

impl Road {
    /// (distance from the centre line, position along the road in metres, length) of a point.
    pub fn locate(&self, x: f64, y: f64) -> (f64, f64, f64) {
        let (dx, dy) = (self.b[0] - self.a[0], self.b[1] - self.a[1]);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        let (ux, uy) = (dx / len, dy / len);
        let (px, py) = (x - self.a[0], y - self.a[1]);
        let along = px * ux + py * uy;
        let cl = along.clamp(0.0, len);
        let (qx, qy) = (px - cl * ux, py - cl * uy);
        ((qx * qx + qy * qy).sqrt(), along, len)
    }

    pub fn heading(&self) -> f64 {
        (self.b[1] - self.a[1]).atan2(self.b[0] - self.a[0])
    }
}

/// A vehicle driving along a road at constant speed, wrapping around at its end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mover {
    pub road: usize,
    /// Lateral offset from the centre line (positive: left of the road direction).
    pub offset: f64,
    pub start: f64,
    /// m/s, negative to drive from b to a.
    pub speed: f64,
    pub object: Object,
}

/// A uniform grid over the world's (x, y) extent.
#[derive(Debug, Clone)]
pub struct Grid {
    pub min: [f64; 2],
    pub cell: f64,
    pub nx: usize,
    pub ny: usize,
    /// Object indices per cell, row-major (y, x).
    pub objects: Vec<Vec<u32>>,
    /// Road indices whose carriageway or sidewalk reaches into each cell.
    pub roads: Vec<Vec<u32>>,
}

impl Grid {
    pub fn cell_of(&self, x: f64, y: f64) -> Option<(usize, usize)> {
        let cx = ((x - self.min[0]) / self.cell).floor();
        let cy = ((y - self.min[1]) / self.cell).floor();
        (cx >= 0.0 && cy >= 0.0 && (cx as usize) < self.nx && (cy as usize) < self.ny)
            .then_some((cx as usize, cy as usize))
    }

    fn cells_of(&self, fp: [f64; 4]) -> impl Iterator<Item = usize> + '_ {
        let clamp = |v: f64, n: usize| (v.floor().max(0.0) as usize).min(n - 1);
        let x0 = clamp((fp[0] - self.min[0]) / self.cell, self.nx);
        let x1 = clamp((fp[2] - self.min[0]) / self.cell, self.nx);
        let y0 = clamp((fp[1] - self.min[1]) / self.cell, self.ny);
        let y1 = clamp((fp[3] - self.min[1]) / self.cell, self.ny);
        (y0..=y1).flat_map(move |y| (x0..=x1).map(move |x| y * self.nx + x))
    }
}

/// A closed driving route (polyline through junctions, first point repeated at the end).
#[derive(Debug, Clone)]
pub struct Route {
    pub points: Vec<[f64; 2]>,
}

impl Route {
    pub fn length(&self) -> f64 {
        self.points
            .windows(2)
            .map(|w| ((w[1][0] - w[0][0]).powi(2) + (w[1][1] - w[0][1]).powi(2)).sqrt())
            .sum()
    }

    /// Position and heading (radians from +x) at arc length `s` (wrapping), with corners
    /// rounded over `blend` metres so the heading turns smoothly.
    pub fn sample(&self, s: f64) -> ([f64; 2], f64) {
        let total = self.length();
        let s = s.rem_euclid(total);
        let at = |s: f64| -> ([f64; 2], f64) {
            let mut acc = 0.0;
            let s = s.rem_euclid(total);
            for w in self.points.windows(2) {
                let (dx, dy) = (w[1][0] - w[0][0], w[1][1] - w[0][1]);
                let len = (dx * dx + dy * dy).sqrt();
                if acc + len >= s || len == 0.0 {
                    let f = if len > 0.0 { (s - acc) / len } else { 0.0 };
                    return ([w[0][0] + dx * f, w[0][1] + dy * f], dy.atan2(dx));
                }
                acc += len;
            }
            (self.points[0], 0.0)
        };
        let blend = 6.0;
        let (p, _) = at(s);
        let (pa, _) = at(s - blend);
        let (pb, _) = at(s + blend);
        (p, (pb[1] - pa[1]).atan2(pb[0] - pa[0]))
    }
}

/// World size and density knobs.
#[derive(Debug, Clone, Copy)]
pub struct WorldParams {
    /// Junctions per side of the road grid (>= 2).
    pub junctions: usize,
    /// Mean block size in metres.
    pub block: f64,
    /// Multiplier of building heights and of tree sizes (1: as drawn).
    pub building_height: f64,
    pub tree_size: f64,
}

impl Default for WorldParams {
    fn default() -> Self {
        Self {
            junctions: 4,
            block: 110.0,
            building_height: 1.0,
            tree_size: 1.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct World {
    pub seed: u64,
    pub roads: Vec<Road>,
    pub objects: Vec<Object>,
    pub movers: Vec<Mover>,
    pub grid: Grid,
    /// The outer ring: a loop every traversal follows.
    pub route: Route,
    /// The right-hand lane offset drivers keep from the centre line.
    pub lane_offset: f64,
    /// `WorldParams::building_height` and `tree_size`.
    pub shape_scale: [f64; 2],
}

/// Kind of neighbourhood, from low-frequency noise: decides what lines a road.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    Urban,
    Suburban,
    Park,
}

pub fn zone_at(seed: u64, x: f64, y: f64) -> Zone {
    let v = fbm2(seed ^ 0x20E, x / 260.0, y / 260.0);
    if v < 0.38 {
        Zone::Park
    } else if v < 0.6 {
        Zone::Suburban
    } else {
        Zone::Urban
    }
}

const FACADES: [[f32; 3]; 8] = [
    [0.62, 0.58, 0.52],
    [0.70, 0.66, 0.60],
    [0.55, 0.35, 0.28],
    [0.78, 0.76, 0.70],
    [0.45, 0.47, 0.50],
    [0.66, 0.52, 0.38],
    [0.85, 0.82, 0.74],
    [0.40, 0.30, 0.26],
];
const CAR_COLOURS: [[f32; 3]; 7] = [
    [0.75, 0.08, 0.06],
    [0.12, 0.16, 0.45],
    [0.85, 0.85, 0.86],
    [0.08, 0.08, 0.09],
    [0.50, 0.52, 0.55],
    [0.10, 0.35, 0.18],
    [0.80, 0.60, 0.10],
];

impl World {
    pub fn generate(seed: u64, params: WorldParams) -> Self {
        let mut rng = Rng::new(seed);
        let n = params.junctions.max(2);
        // Jittered junction grid.
        let mut nodes = vec![[0.0f64; 2]; n * n];
        for j in 0..n {
            for i in 0..n {
                let jitter = if i == 0 || j == 0 || i == n - 1 || j == n - 1 {
                    0.08
                } else {
                    0.15
                };
                nodes[j * n + i] = [
                    i as f64 * params.block + rng.range(-jitter, jitter) * params.block,
                    j as f64 * params.block + rng.range(-jitter, jitter) * params.block,
                ];
            }
        }
        let mut roads = Vec::new();
        let mut push_road = |a: [f64; 2], b: [f64; 2], rng: &mut Rng| {
            roads.push(Road {
                a,
                b,
                half_width: rng.range(4.8, 5.6),
            })
        };
        for j in 0..n {
            for i in 0..n {
                let outer_h = j == 0 || j == n - 1;
                let outer_v = i == 0 || i == n - 1;
                // The outer ring always stays; inner streets are dropped now and then.
                if i + 1 < n && (outer_h || rng.chance(0.85)) {
                    push_road(nodes[j * n + i], nodes[j * n + i + 1], &mut rng);
                }
                if j + 1 < n && (outer_v || rng.chance(0.85)) {
                    push_road(nodes[j * n + i], nodes[(j + 1) * n + i], &mut rng);
                }
            }
        }
        // Counter-clockwise outer ring.
        let mut ring = Vec::new();
        ring.extend((0..n).map(|i| nodes[i]));
        ring.extend((1..n).map(|j| nodes[j * n + n - 1]));
        ring.extend((0..n - 1).rev().map(|i| nodes[(n - 1) * n + i]));
        ring.extend((0..n - 1).rev().map(|j| nodes[j * n]));
        let route = Route { points: ring };

        let margin = 80.0;
        let (mut lo, mut hi) = ([f64::MAX; 2], [f64::MIN; 2]);
        for p in &nodes {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        let cell = 8.0;
        let min = [lo[0] - margin, lo[1] - margin];
        let nx = ((hi[0] - lo[0] + 2.0 * margin) / cell).ceil() as usize + 1;
        let ny = ((hi[1] - lo[1] + 2.0 * margin) / cell).ceil() as usize + 1;
        let mut grid = Grid {
            min,
            cell,
            nx,
            ny,
            objects: vec![Vec::new(); nx * ny],
            roads: vec![Vec::new(); nx * ny],
        };
        for (ri, r) in roads.iter().enumerate() {
            let m = r.half_width + SIDEWALK;
            let fp = [
                r.a[0].min(r.b[0]) - m,
                r.a[1].min(r.b[1]) - m,
                r.a[0].max(r.b[0]) + m,
                r.a[1].max(r.b[1]) + m,
            ];
            let cells: Vec<usize> = grid.cells_of(fp).collect();
            for c in cells {
                grid.roads[c].push(ri as u32);
            }
        }
        let mut world = World {
            seed,
            roads,
            objects: Vec::new(),
            movers: Vec::new(),
            grid,
            route,
            lane_offset: -1.9,
            shape_scale: [params.building_height, params.tree_size],
        };
        world.populate(&mut rng);
        world
    }

    /// A world of exactly these roads and objects (no generated content, no traffic), over the
    /// given (x, y) extent: for geometry checks and hand-made scenes.
    pub fn custom(roads: Vec<Road>, objects: Vec<Object>, min: [f64; 2], max: [f64; 2]) -> Self {
        let cell = 8.0;
        let nx = ((max[0] - min[0]) / cell).ceil().max(1.0) as usize;
        let ny = ((max[1] - min[1]) / cell).ceil().max(1.0) as usize;
        let grid = Grid {
            min,
            cell,
            nx,
            ny,
            objects: vec![Vec::new(); nx * ny],
            roads: vec![Vec::new(); nx * ny],
        };
        let route = Route {
            points: vec![min, [max[0], min[1]], max, [min[0], max[1]], min],
        };
        let mut world = World {
            seed: 0,
            roads: Vec::new(),
            objects: Vec::new(),
            movers: Vec::new(),
            grid,
            route,
            lane_offset: 0.0,
            shape_scale: [1.0, 1.0],
        };
        for (ri, r) in roads.iter().enumerate() {
            let m = r.half_width + SIDEWALK;
            let fp = [
                r.a[0].min(r.b[0]) - m,
                r.a[1].min(r.b[1]) - m,
                r.a[0].max(r.b[0]) + m,
                r.a[1].max(r.b[1]) + m,
            ];
            let cells: Vec<usize> = world.grid.cells_of(fp).collect();
            for c in cells {
                world.grid.roads[c].push(ri as u32);
            }
        }
        world.roads = roads;
        for o in objects {
            world.add(o);
        }
        world
    }

    /// Distance from (x, y) to the nearest carriageway edge (negative on the road), over the
    /// roads listed in the point's grid cell; +inf away from every road.
    pub fn road_clearance(&self, x: f64, y: f64) -> f64 {
        let Some((cx, cy)) = self.grid.cell_of(x, y) else {
            return f64::INFINITY;
        };
        self.grid.roads[cy * self.grid.nx + cx]
            .iter()
            .map(|&ri| {
                let r = &self.roads[ri as usize];
                r.locate(x, y).0 - r.half_width
            })
            .fold(f64::INFINITY, f64::min)
    }

    fn footprint_clear(&self, shape: &Shape, min_clearance: f64) -> bool {
        let fp = shape.footprint();
        let pts = [
            [fp[0], fp[1]],
            [fp[2], fp[1]],
            [fp[0], fp[3]],
            [fp[2], fp[3]],
            [(fp[0] + fp[2]) / 2.0, (fp[1] + fp[3]) / 2.0],
        ];
        pts.iter()
            .all(|p| self.road_clearance(p[0], p[1]) >= min_clearance)
    }

    fn add(&mut self, obj: Object) {
        let idx = self.objects.len() as u32;
        let cells: Vec<usize> = self.grid.cells_of(obj.shape.footprint()).collect();
        for c in cells {
            self.grid.objects[c].push(idx);
        }
        self.objects.push(obj);
    }

    /// Adds `obj` if its footprint keeps `clearance` metres from every carriageway.
    fn try_add(&mut self, obj: Object, clearance: f64) -> bool {
        if self.footprint_clear(&obj.shape, clearance) {
            self.add(obj);
            true
        } else {
            false
        }
    }

    fn populate(&mut self, rng: &mut Rng) {
        let roads = self.roads.clone();
        for (ri, road) in roads.iter().enumerate() {
            let (_, _, len) = road.locate(road.b[0], road.b[1]);
            let h = road.heading();
            let (ux, uy) = (h.cos(), h.sin());
            for side in [-1.0f64, 1.0] {
                // Left normal of the road direction, times side.
                let (nx, ny) = (-uy * side, ux * side);
                let at =
                    |s: f64, d: f64| [road.a[0] + ux * s + nx * d, road.a[1] + uy * s + ny * d];
                let edge = road.half_width;
                let mut s = rng.range(2.0, 10.0);
                while s < len - 4.0 {
                    let p = at(s, edge + SIDEWALK + 6.0);
                    let zone = zone_at(self.seed, p[0], p[1]);
                    let step = self.place_lot(rng, zone, &at, s, edge, h);
                    s += step;
                }
                // Street furniture at the sidewalk edge.
                let mut s = rng.range(5.0, 20.0);
                while s < len - 5.0 {
                    let p = at(s, edge + 0.4);
                    let zone = zone_at(self.seed, p[0], p[1]);
                    self.place_street_item(rng, zone, p, h);
                    s += rng.range(14.0, 30.0);
                }
                // Parked vehicles on the carriageway edge.
                let mut s = rng.range(4.0, 20.0);
                while s < len - 8.0 {
                    if rng.chance(0.35) {
                        // Parking strip: the car's inner side stays > 2.9 m from the centre line,
                        // clear of the lanes at +-1.9 m; never on a crossing road.
                        let p = at(s, edge - 1.0);
                        let obj = self.vehicle(rng, p, h);
                        self.try_add(obj, -2.0);
                    }
                    s += rng.range(7.0, 16.0);
                }
            }
            // Moving traffic in both directions.
            for _ in 0..(len / 60.0).ceil() as usize {
                let dir = if rng.chance(0.5) { 1.0 } else { -1.0 };
                let obj = self.vehicle(rng, [0.0, 0.0], 0.0);
                self.movers.push(Mover {
                    road: ri,
                    offset: -dir * 1.9,
                    start: rng.range(0.0, len),
                    speed: dir * rng.range(6.0, 12.0),
                    object: obj,
                });
            }
        }
        // Open ground away from roads: scattered trees and bushes, denser in parks.
        let (lo, n) = (
            self.grid.min,
            [
                self.grid.nx as f64 * self.grid.cell,
                self.grid.ny as f64 * self.grid.cell,
            ],
        );
        let count = (n[0] * n[1] / 400.0) as usize;
        for _ in 0..count {
            let p = [lo[0] + rng.range(0.0, n[0]), lo[1] + rng.range(0.0, n[1])];
            let keep = match zone_at(self.seed, p[0], p[1]) {
                Zone::Park => 0.6,
                Zone::Suburban => 0.15,
                Zone::Urban => 0.05,
            };
            if rng.chance(keep) {
                if rng.chance(0.7) {
                    self.tree(rng, p, 3.0);
                } else {
                    let r = rng.range(0.6, 1.4);
                    let obj = Object {
                        shape: Shape::Ellipsoid {
                            cx: p[0],
                            cy: p[1],
                            cz: r * 0.5,
                            rx: r,
                            ry: r * rng.range(0.7, 1.3),
                            rz: r * 0.8,
                        },
                        class: class::VEGETATION,
                        material: Material::Foliage {
                            base: [0.20, 0.42, 0.12],
                            seed: rng.next_u64() as u32,
                        },
                    };
                    self.try_add(obj, SIDEWALK + 0.5);
                }
            }
        }
    }

    /// One lot beside a road: a building, a tree group or a hedge; returns its length along the road.
    fn place_lot(
        &mut self,
        rng: &mut Rng,
        zone: Zone,
        at: &dyn Fn(f64, f64) -> [f64; 2],
        s: f64,
        edge: f64,
        h: f64,
    ) -> f64 {
        let building_p = match zone {
            Zone::Urban => 0.85,
            Zone::Suburban => 0.55,
            Zone::Park => 0.08,
        };
        if rng.chance(building_p) {
            let (w, d, height, setback) = match zone {
                Zone::Urban => (
                    rng.range(12.0, 26.0),
                    rng.range(12.0, 22.0),
                    rng.range(12.0, 34.0),
                    rng.range(1.0, 3.0),
                ),
                _ => (
                    rng.range(8.0, 14.0),
                    rng.range(8.0, 12.0),
                    rng.range(5.0, 9.0),
                    rng.range(4.0, 9.0),
                ),
            };
            let c = at(s + w / 2.0, edge + SIDEWALK + setback + d / 2.0);
            let wall = *rng.pick(&FACADES);
            let obj = Object {
                shape: Shape::Box {
                    cx: c[0],
                    cy: c[1],
                    hx: w / 2.0,
                    hy: d / 2.0,
                    z0: 0.0,
                    z1: height * self.shape_scale[0],
                    yaw: h,
                },
                class: class::BUILDING,
                material: Material::Facade {
                    wall,
                    window: [0.16, 0.20, 0.26],
                    spacing: rng.range(2.6, 3.6) as f32,
                    floor: rng.range(2.9, 3.4) as f32,
                },
            };
            self.try_add(obj, SIDEWALK + 0.5);
            return w + rng.range(1.0, 8.0);
        }
        if zone == Zone::Park && rng.chance(0.25) {
            // Guard rail along the verge.
            let len = rng.range(15.0, 40.0);
            let c = at(s + len / 2.0, edge + 0.3);
            let obj = Object {
                shape: Shape::Box {
                    cx: c[0],
                    cy: c[1],
                    hx: len / 2.0,
                    hy: 0.08,
                    z0: 0.45,
                    z1: 0.8,
                    yaw: h,
                },
                class: class::GUARD_RAIL,
                material: Material::Plain([0.72, 0.73, 0.75]),
            };
            self.try_add(obj, 0.1);
            return len + 2.0;
        }
        if rng.chance(0.5) {
            let len = rng.range(6.0, 14.0);
            let c = at(s + len / 2.0, edge + SIDEWALK + 1.2);
            let obj = Object {
                shape: Shape::Box {
                    cx: c[0],
                    cy: c[1],
                    hx: len / 2.0,
                    hy: 0.6,
                    z0: 0.0,
                    z1: rng.range(0.9, 1.8),
                    yaw: h,
                },
                class: class::VEGETATION,
                material: Material::Foliage {
                    base: [0.16, 0.36, 0.10],
                    seed: rng.next_u64() as u32,
                },
            };
            self.try_add(obj, SIDEWALK + 0.3);
            return len + 1.0;
        }
        let p = at(s + 3.0, edge + SIDEWALK + rng.range(2.0, 6.0));
        self.tree(rng, p, SIDEWALK + 0.3);
        rng.range(6.0, 12.0)
    }

    fn tree(&mut self, rng: &mut Rng, p: [f64; 2], clearance: f64) {
        let trunk_h = rng.range(2.0, 3.5) * self.shape_scale[1];
        let r = rng.range(1.6, 3.4) * self.shape_scale[1];
        let trunk = Object {
            shape: Shape::Cylinder {
                cx: p[0],
                cy: p[1],
                r: rng.range(0.15, 0.3),
                z0: 0.0,
                z1: trunk_h + r * 0.6,
            },
            class: class::TREE,
            material: Material::Bark,
        };
        let crown = Object {
            shape: Shape::Ellipsoid {
                cx: p[0],
                cy: p[1],
                cz: trunk_h + r * 0.9,
                rx: r,
                ry: r * rng.range(0.85, 1.15),
                rz: r * rng.range(1.0, 1.5),
            },
            class: class::TREE,
            material: Material::Foliage {
                base: [0.17, 0.40, 0.10],
                seed: rng.next_u64() as u32,
            },
        };
        if self.footprint_clear(&crown.shape, clearance - 1.5)
            && self.footprint_clear(&trunk.shape, clearance)
        {
            self.add(trunk);
            self.add(crown);
        }
    }

    fn place_street_item(&mut self, rng: &mut Rng, zone: Zone, p: [f64; 2], h: f64) {
        let roll = rng.range(0.0, 1.0);
        let pole_h = rng.range(4.5, 7.5);
        let pole = Object {
            shape: Shape::Cylinder {
                cx: p[0],
                cy: p[1],
                r: 0.09,
                z0: 0.0,
                z1: pole_h,
            },
            class: class::POLE,
            material: Material::Plain([0.45, 0.46, 0.48]),
        };
        if !self.try_add(pole, 0.2) {
            return;
        }
        let (fx, fy) = (h.cos(), h.sin());
        if roll < 0.35 {
            let sign = Object {
                shape: Shape::Box {
                    cx: p[0] - fy * 0.1,
                    cy: p[1] + fx * 0.1,
                    hx: 0.35,
                    hy: 0.03,
                    z0: pole_h - 1.6,
                    z1: pole_h - 0.9,
                    yaw: h + std::f64::consts::FRAC_PI_2,
                },
                class: class::TRAFFIC_SIGN,
                material: Material::Sign(*rng.pick(&[
                    [0.85, 0.1, 0.1],
                    [0.1, 0.25, 0.75],
                    [0.95, 0.85, 0.1],
                ])),
            };
            self.add(sign);
        } else if roll < 0.5 && zone == Zone::Urban {
            let light = Object {
                shape: Shape::Box {
                    cx: p[0],
                    cy: p[1],
                    hx: 0.18,
                    hy: 0.18,
                    z0: pole_h - 1.0,
                    z1: pole_h,
                    yaw: h,
                },
                class: class::TRAFFIC_LIGHT,
                material: Material::Plain([0.12, 0.12, 0.10]),
            };
            self.add(light);
        } else if roll < 0.6 {
            let bin = Object {
                shape: Shape::Box {
                    cx: p[0] + fx * 1.2,
                    cy: p[1] + fy * 1.2,
                    hx: 0.3,
                    hy: 0.3,
                    z0: 0.0,
                    z1: 1.0,
                    yaw: h,
                },
                class: class::MISC,
                material: Material::Plain([0.25, 0.32, 0.28]),
            };
            self.try_add(bin, 0.2);
        }
    }

    /// A car, van or truck at `p` facing `h` (body box; its class decides the size).
    fn vehicle(&self, rng: &mut Rng, p: [f64; 2], h: f64) -> Object {
        let roll = rng.range(0.0, 1.0);
        let (class, hx, hy, height) = if roll < 0.72 {
            (class::CAR, 2.1, 0.9, 1.5)
        } else if roll < 0.9 {
            (class::VAN, 2.5, 1.0, 2.2)
        } else {
            (class::TRUCK, 4.0, 1.25, 3.4)
        };
        Object {
            shape: Shape::Box {
                cx: p[0],
                cy: p[1],
                hx,
                hy,
                z0: 0.25,
                z1: height,
                yaw: h,
            },
            class,
            material: Material::Vehicle(*rng.pick(&CAR_COLOURS)),
        }
    }

    /// The moving vehicles' boxes at time `t` seconds.
    pub fn movers_at(&self, t: f64) -> Vec<Object> {
        self.movers
            .iter()
            .map(|m| {
                let road = &self.roads[m.road];
                let (_, _, len) = road.locate(road.b[0], road.b[1]);
                let s = (m.start + m.speed * t).rem_euclid(len);
                let h = road.heading();
                let (ux, uy) = (h.cos(), h.sin());
                let (x, y) = (
                    road.a[0] + ux * s - uy * m.offset,
                    road.a[1] + uy * s + ux * m.offset,
                );
                let yaw = if m.speed < 0.0 {
                    h + std::f64::consts::PI
                } else {
                    h
                };
                let mut obj = m.object;
                if let Shape::Box { hx, hy, z0, z1, .. } = obj.shape {
                    obj.shape = Shape::Box {
                        cx: x,
                        cy: y,
                        hx,
                        hy,
                        z0,
                        z1,
                        yaw,
                    };
                }
                obj
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_deterministic_have_loops_and_keep_roads_clear() {
        let a = World::generate(5, WorldParams::default());
        let b = World::generate(5, WorldParams::default());
        assert_eq!(a.objects, b.objects);
        assert!(a.objects.len() > 300, "{} objects", a.objects.len());
        let route = &a.route;
        assert_eq!(
            route.points.first(),
            route.points.last(),
            "the route is a loop"
        );
        assert!(route.length() > 900.0);
        // Buildings never stand on a carriageway.
        for o in a.objects.iter().filter(|o| o.class == class::BUILDING) {
            if let Shape::Box { cx, cy, .. } = o.shape {
                assert!(a.road_clearance(cx, cy) > 0.0);
            }
        }
        for class in [
            class::BUILDING,
            class::TREE,
            class::POLE,
            class::VEGETATION,
            class::CAR,
        ] {
            assert!(
                a.objects.iter().any(|o| o.class == class),
                "class {class} missing"
            );
        }
    }
}
