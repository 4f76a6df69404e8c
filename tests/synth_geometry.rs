//! The renderer's geometry: a known object at a known distance renders at that depth and class,
//! a known 3-D point projects where the intrinsics say, and RGB, depth and classes agree.

use dasgil::map::views::{rectified, yaw_view};
use dasgil::synth::condition::{Condition, Sensor};
use dasgil::synth::render::{render, render_through};
use dasgil::synth::world::{class, Material, Object, Road, Shape, World};
use dasgil::synth::{camera_pose, cmu, on_route, vkitti2};
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

/// OpenCV's radial-tangential model written out here from its documentation (not the crate's
/// `distort`), so a renderer and a reader that agree on a wrong model still fail.
fn opencv_distort(d: [f64; 5], x: f64, y: f64) -> (f64, f64) {
    let [k1, k2, p1, p2, k3] = d;
    let r2 = x * x + y * y;
    let radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2;
    (
        x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x),
        y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y,
    )
}

/// `synth cmu --lens cmu`: the box's top-left front corner, 10 m ahead, 5 m left and 3 m above
/// the camera (normalised (-0.5, -0.3), where a pinhole would put it), renders where the real
/// c0 lens moves it: about 25 px right and 15 px down, nearer the centre.
#[test]
fn through_the_cmu_lens_a_corner_renders_where_the_distortion_moves_it() {
    let building = Object {
        shape: Shape::Box {
            cx: 12.0,
            cy: 0.0,
            hx: 2.0,
            hy: 5.0,
            z0: 0.0,
            z1: 4.6,
            yaw: 0.0,
        },
        class: class::BUILDING,
        material: Material::Plain([0.6, 0.5, 0.4]),
    };
    let road = Road {
        a: [-50.0, 0.0],
        b: [200.0, 0.0],
        half_width: 5.0,
    };
    let world = World::custom(vec![road], vec![building], [-60.0, -60.0], [220.0, 60.0]);
    let cam = cmu::intrinsics("c0", 512, 384);
    let lens = cmu::Lens::Cmu.distortion("c0");
    // The real intrinsics.txt's c0 (docs: shared reference, dataset-formats 3.3).
    assert_eq!(lens, [-0.399431, 0.188924, 0.000153, 0.000571, 0.0]);
    let world_from_cam = camera_pose([0.0, 0.0], 0.0, 0.0, 1.6);
    let f = render_through(
        &world,
        &cam,
        Some(&lens),
        &world_from_cam,
        0.0,
        &Condition::clear(),
        &Sensor::clean(),
    );
    let class_at = |u: f64, v: f64| f.class[(v as u32 * f.width + u as u32) as usize];
    let (xd, yd) = opencv_distort(lens, -0.5, -0.3);
    let (u, v) = (cam.fx * xd + cam.cx, cam.fy * yd + cam.cy);
    let (u_pinhole, v_pinhole) = (cam.fx * -0.5 + cam.cx, cam.fy * -0.3 + cam.cy);
    assert!(u - u_pinhole > 20.0 && v - v_pinhole > 10.0, "({u}, {v})");
    assert_eq!(
        class_at(u + 1.5, v + 1.5),
        class::BUILDING,
        "inside ({u}, {v})"
    );
    assert_eq!(class_at(u - 1.5, v + 1.5), class::SKY, "left of ({u}, {v})");
    assert_eq!(class_at(u + 1.5, v - 1.5), class::SKY, "above ({u}, {v})");
    // Where a pinhole would have put the corner, the distorting lens shows sky.
    assert_eq!(class_at(u_pinhole + 1.5, v_pinhole + 1.5), class::SKY);
    // Depth stays the z-depth: the face is 10 m ahead at every pixel that sees it.
    let z = f.depth[((v + 3.0) as u32 * f.width + (u + 3.0) as u32) as usize];
    assert!((z - 10.0).abs() < 1e-3, "{z}");
}

/// A yaw view (build-map --yaw-views) of an image taken through the real c0 lens is what the
/// renderer draws with the camera turned: the view undistorts, turns and distorts again. Read
/// as a pinhole image instead, the same view is off by several times as much.
#[test]
fn a_yaw_view_through_the_cmu_lens_is_the_turned_camera_s_image() {
    let world = World::generate(77, Default::default());
    let (p, h) = on_route(&world, 40.0, 0.0);
    let cam = cmu::intrinsics("c0", 256, 192);
    let lens = cmu::Lens::Cmu.distortion("c0");
    let shot = |yaw_deg: f64| {
        render_through(
            &world,
            &cam,
            Some(&lens),
            &camera_pose(p, h, yaw_deg.to_radians(), cmu::CAMERA_HEIGHT),
            0.0,
            &Condition::clear(),
            &Sensor::clean(),
        )
        .rgb
    };
    let (straight, turned) = (shot(0.0), shot(6.0));
    // Which view pixels the straight image covers: the view of an all-white image.
    let white = image::RgbImage::from_pixel(256, 192, image::Rgb([255, 255, 255]));
    let covered = yaw_view(&white, &cam, Some(&lens), 6.0);
    let error = |view: &image::RgbImage| {
        let (mut sum, mut n) = (0.0, 0usize);
        for ((a, b), c) in view.pixels().zip(turned.pixels()).zip(covered.pixels()) {
            if c.0 == [255; 3] {
                sum += (0..3)
                    .map(|i| (a[i] as f64 - b[i] as f64).abs())
                    .sum::<f64>()
                    / 3.0;
                n += 1;
            }
        }
        assert!(n > 256 * 192 * 3 / 4, "{n} covered pixels");
        sum / n as f64
    };
    let through_lens = error(&yaw_view(&straight, &cam, Some(&lens), 6.0));
    let as_pinhole = error(&yaw_view(&straight, &cam, None, 6.0));
    let not_turned = error(&straight);
    eprintln!("mean abs difference to the turned image: view {through_lens:.2}, view as pinhole {as_pinhole:.2}, not turned {not_turned:.2}");
    assert!(through_lens < 4.0, "{through_lens}");
    assert!(
        as_pinhole > 3.0 * through_lens,
        "{as_pinhole} vs {through_lens}"
    );
    assert!(
        not_turned > 3.0 * through_lens,
        "{not_turned} vs {through_lens}"
    );
}

/// `build-map --rectify`'s rectification of an image taken through the real c0 lens is what the
/// renderer draws through an ideal pinhole with the same intrinsics.
#[test]
fn a_rectified_image_through_the_cmu_lens_is_the_pinhole_camera_s_image() {
    let world = World::generate(78, Default::default());
    let (p, h) = on_route(&world, 60.0, 0.0);
    let cam = cmu::intrinsics("c0", 256, 192);
    let lens = cmu::Lens::Cmu.distortion("c0");
    let pose = camera_pose(p, h, 0.0, cmu::CAMERA_HEIGHT);
    let shot = |lens: Option<&[f64; 5]>| {
        render_through(
            &world,
            &cam,
            lens,
            &pose,
            0.0,
            &Condition::clear(),
            &Sensor::clean(),
        )
        .rgb
    };
    let (distorted, pinhole) = (shot(Some(&lens)), shot(None));
    let error = |img: &image::RgbImage| {
        img.pixels()
            .zip(pinhole.pixels())
            .map(|(a, b)| {
                (0..3)
                    .map(|i| (a[i] as f64 - b[i] as f64).abs())
                    .sum::<f64>()
                    / 3.0
            })
            .sum::<f64>()
            / (256.0 * 192.0)
    };
    let straightened = rectified(&distorted, &cam, Some(&lens));
    let (after, before) = (error(&straightened), error(&distorted));
    eprintln!("mean abs difference to the pinhole image: rectified {after:.2}, raw {before:.2}");
    assert!(after < 4.0, "{after}");
    assert!(before > 3.0 * after, "{before} vs {after}");
    // No lens: the image as it is.
    assert_eq!(rectified(&pinhole, &cam, Some(&[0.0; 5])), pinhole);
}
