//! The renderer's geometry: a known object at a known distance renders at that depth and class,
//! a known 3-D point projects where the intrinsics say, and RGB, depth and classes agree.

use dasgil::synth::condition::{Condition, Sensor};
use dasgil::synth::render::render;
use dasgil::synth::world::{class, Material, Object, Road, Shape, World};
use dasgil::synth::{camera_pose, vkitti2};
use nalgebra::Point3;

/// A road along +x, a 4 x 6 x 3 m box whose front face is 20 m ahead, camera at 1.6 m looking +x.
fn scene() -> World {
    let road = Road {
        a: [-50.0, 0.0],
        b: [200.0, 0.0],
        half_width: 5.0,
    };
    let building = Object {
        shape: Shape::Box {
            cx: 22.0,
            cy: 0.0,
            hx: 2.0,
            hy: 3.0,
            z0: 0.0,
            z1: 3.0,
            yaw: 0.0,
        },
        class: class::BUILDING,
        material: Material::Plain([0.6, 0.5, 0.4]),
    };
    World::custom(vec![road], vec![building], [-60.0, -60.0], [220.0, 60.0])
}

#[test]
fn a_box_20_m_ahead_renders_at_20_m_with_its_class_and_edges_where_projected() {
    let world = scene();
    let cam = vkitti2::intrinsics(1242, 375);
    let world_from_cam = camera_pose([0.0, 0.0], 0.0, 0.0, 1.6);
    let f = render(
        &world,
        &cam,
        &world_from_cam,
        0.0,
        &Condition::clear(),
        &Sensor::clean(),
    );
    let at = |u: u32, v: u32| (v * f.width + u) as usize;

    // The principal point (620.5, 187) lies between pixel centres; the four around it hit the face.
    for (u, v) in [(620, 187), (621, 187), (620, 186), (621, 186)] {
        assert_eq!(f.class[at(u, v)], class::BUILDING, "pixel ({u}, {v})");
        assert!(
            (f.depth[at(u, v)] - 20.0).abs() < 1e-4,
            "z-depth {}",
            f.depth[at(u, v)]
        );
    }
    // The box's top-left front corner (20, 3, 3) projects through the intrinsics to (511.75, 136.25).
    let p = cam
        .project(&(world_from_cam.inverse() * Point3::new(20.0, 3.0, 3.0)))
        .unwrap();
    assert!(
        (p.x - (620.5 - 725.0087 * 3.0 / 20.0)).abs() < 1e-9
            && (p.y - (187.0 - 725.0087 * 1.4 / 20.0)).abs() < 1e-9
    );
    assert_eq!(f.class[at(513, 138)], class::BUILDING, "inside the corner");
    assert_eq!(f.class[at(510, 138)], class::SKY, "left of the corner");
    assert_eq!(f.class[at(513, 135)], class::SKY, "above the corner");
    assert!(!f.depth[at(510, 138)].is_finite(), "sky has no depth");

    // Below the horizon, under the box: the road, at the z-depth the ray meets z = 0.
    for v in [300u32, 330, 374] {
        let z_expected = 725.0087 * 1.6 / (v as f64 - 187.0);
        assert_eq!(f.class[at(620, v)], class::ROAD);
        assert!(
            (f.depth[at(620, v)] as f64 - z_expected).abs() < 1e-3 * z_expected,
            "row {v}"
        );
    }
    // Bottom-left: the ground 6.2 m ahead and 5.3 m to the side is sidewalk (class Road);
    // just below the horizon on the left, 89 m ahead and 75 m to the side, it is terrain.
    assert_eq!(f.class[at(5, 374)], class::ROAD);
    assert_eq!(f.class[at(5, 200)], class::TERRAIN);
    // The colour image agrees: sky pixels are brighter and bluer than the box face.
    let sky = f.rgb.get_pixel(510, 138).0;
    let face = f.rgb.get_pixel(620, 187).0;
    assert!(sky[2] > face[2]);
}

#[test]
fn the_right_stereo_camera_sees_the_box_shifted_by_the_baseline() {
    let world = scene();
    let cam = vkitti2::intrinsics(1242, 375);
    let left = camera_pose([0.0, 0.0], 0.0, 0.0, 1.6);
    let right_pos =
        left.translation.vector + left.rotation * nalgebra::Vector3::x() * vkitti2::BASELINE;
    let right = nalgebra::Isometry3::from_parts(right_pos.into(), left.rotation);
    let f = render(
        &world,
        &cam,
        &right,
        0.0,
        &Condition::clear(),
        &Sensor::clean(),
    );
    // Disparity f * B / Z = 725.0087 * 0.532725 / 20 = 19.31 px: the left corner moves left.
    let corner_u = 620.5 - 725.0087 * (3.0 + vkitti2::BASELINE) / 20.0;
    let v = 140u32;
    let building_from = (0..f.width)
        .find(|&u| f.class[(v * f.width + u) as usize] == class::BUILDING)
        .unwrap();
    assert!(
        (building_from as f64 - corner_u).abs() <= 1.0,
        "{building_from} vs {corner_u}"
    );
}
