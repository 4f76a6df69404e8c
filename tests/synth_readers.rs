//! Every dataset reader reads what the synthetic generator writes, and the poses it reads are
//! the ones the generator rendered with. The same seed writes the same bytes.

use std::collections::BTreeMap;
use std::path::Path;

use dasgil::data::cmu_seasons::CmuSlice;
use dasgil::data::kitti::OdometrySequence;
use dasgil::data::robotcar::Traversal;
use dasgil::data::vkitti2::{Layout, Vkitti2, Vkitti2Roots, VARIATIONS};
use dasgil::data::Decode;
use dasgil::geom::{centre, cmu_submission_line};
use dasgil::synth::{cmu, kitti, robotcar, vkitti2};

fn close(a: &nalgebra::Isometry3<f64>, b: &nalgebra::Isometry3<f64>, tol: f64) -> bool {
    (a.to_homogeneous() - b.to_homogeneous()).abs().max() < tol
}

fn vk_opts(out: &Path, seed: u64) -> vkitti2::Options {
    vkitti2::Options {
        out: out.into(),
        seed,
        scenes: 1,
        frames: 2,
        width: 248,
        height: 75,
        cameras: 2,
        layout: Layout::Official,
        appearance: Default::default(),
        lateral: 0.0,
    }
}

/// `--lateral`: the extrinsic.txt the reader reads and the depth the network learns from both
/// come from the camera moved sideways, each variation its own offset (left of the lane).
#[test]
fn vkitti2_lateral_moves_the_written_poses_and_the_rendered_frames_alike() {
    let (still, moved) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let opts = |out: &Path, lateral| vkitti2::Options {
        frames: 1,
        lateral,
        appearance: dasgil::synth::condition::Appearance::Random,
        ..vk_opts(out, 21)
    };
    vkitti2::generate(&opts(still.path(), 0.0)).unwrap();
    vkitti2::generate(&opts(moved.path(), 2.0)).unwrap();
    let read = |root: &Path| Vkitti2::open(&Vkitti2Roots::official(root)).unwrap();
    let (a, b) = (read(still.path()), read(moved.path()));
    let mut shifts = Vec::new();
    for (va, vb) in a.scenes[0].variations.iter().zip(&b.scenes[0].variations) {
        for (fa, fb) in va.frames.iter().zip(&vb.frames) {
            let (pa, pb) = (
                fa.cam_from_world.unwrap().inverse(),
                fb.cam_from_world.unwrap().inverse(),
            );
            // Moved, not turned, raised or lowered.
            let shift = pb.translation.vector - pa.translation.vector;
            assert!(shift.z.abs() < 1e-9, "{}: height kept", va.name);
            assert!(
                (pa.rotation.angle_to(&pb.rotation)) < 1e-9,
                "{}: heading kept",
                va.name
            );
            assert!(shift.norm() <= 2.0 + 1e-9, "{}: {shift:?}", va.name);
            if fa.camera == 0 {
                shifts.push(shift.norm());
                let (da, db) = (
                    a.load(fa, &va.colors).unwrap().depth_m,
                    b.load(fb, &vb.colors).unwrap().depth_m,
                );
                // The rendered view moved with the written pose.
                assert_eq!(shift.norm() > 0.05, da != db, "{}: depth vs pose", va.name);
            }
        }
    }
    assert!(shifts.iter().any(|&d| d > 1.0), "{shifts:?}");
}

#[test]
fn vkitti2_official_and_authors_layouts_read_back_with_their_poses() {
    let dir = tempfile::tempdir().unwrap();
    let summary = vkitti2::generate(&vk_opts(dir.path(), 3)).unwrap();
    assert_eq!(summary.images, 10 * 2 * 2);
    let other = tempfile::tempdir().unwrap();
    vkitti2::generate(&vkitti2::Options {
        layout: Layout::Dasgil,
        ..vk_opts(other.path(), 3)
    })
    .unwrap();

    let ds = Vkitti2::open(&Vkitti2Roots::official(dir.path())).unwrap();
    assert_eq!(ds.scenes.len(), 1);
    assert_eq!(ds.scenes[0].name, "Scene01");
    let names: Vec<&str> = ds.scenes[0]
        .variations
        .iter()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(names, VARIATIONS);
    let spec = vkitti2::scene_spec(3, 0);
    let authors = Vkitti2::open(&Vkitti2Roots::dasgil(other.path())).unwrap();
    for (var, var_authors) in ds.scenes[0]
        .variations
        .iter()
        .zip(&authors.scenes[0].variations)
    {
        assert_eq!(var.frames.len(), 4, "{}: 2 frames x 2 cameras", var.name);
        for frame in &var.frames {
            // extrinsic.txt (world->camera) inverts to the trajectory the frame was rendered from.
            let rendered =
                vkitti2::frame_pose(&spec, frame.index as usize, frame.camera, &var.name);
            assert!(
                close(&frame.cam_from_world.unwrap().inverse(), &rendered, 1e-9),
                "{} frame {}",
                var.name,
                frame.index
            );
            assert_eq!(frame.intrinsics.unwrap(), vkitti2::intrinsics(248, 75));
        }
        // Colour segmentation (official) and index maps (authors' layout) decode to the same classes.
        let a = ds.load(&var.frames[0], &var.colors).unwrap();
        let b = authors
            .load(&var_authors.frames[0], &var_authors.colors)
            .unwrap();
        assert_eq!(a.classes, b.classes, "{}", var.name);
        assert_eq!(a.depth_m, b.depth_m);
        assert!(a.classes.pixels().any(|p| p.0[0] == 2), "sky present");
        assert!(
            a.depth_m.pixels().any(|p| p.0[0] == 655.35),
            "far plane present"
        );
        assert!(a.depth_m.pixels().all(|p| p.0[0] > 0.0), "no zero depth");
    }
    // Camera rotations: 30-deg-left looks 30 degrees to the left of clone.
    let yaw = |var: usize| {
        ds.scenes[0].variations[var].frames[0]
            .cam_from_world
            .unwrap()
            .inverse()
            .rotation
    };
    let angle = yaw(4).angle_to(&yaw(2)); // clone vs 30-deg-left
    assert!((angle.to_degrees() - 30.0).abs() < 1e-6, "{angle}");
    assert_eq!(ds.posed_images().len(), 40);
}

#[test]
fn same_seed_same_bytes_and_another_seed_another_world() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let small = |out: &Path, seed| vkitti2::Options {
        frames: 1,
        cameras: 1,
        ..vk_opts(out, seed)
    };
    vkitti2::generate(&small(a.path(), 9)).unwrap();
    vkitti2::generate(&small(b.path(), 9)).unwrap();
    vkitti2::generate(&small(c.path(), 10)).unwrap();
    let files = |root: &Path| -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(
                        p.strip_prefix(root).unwrap().display().to_string(),
                        std::fs::read(&p).unwrap(),
                    );
                }
            }
        }
        out
    };
    let (fa, fb, fc) = (files(a.path()), files(b.path()), files(c.path()));
    assert_eq!(fa.len(), 10 * 3 + 10 * 3);
    assert!(fa == fb, "same seed: identical files");
    let rgb = "Scene01/clone/frames/rgb/Camera_0/rgb_00000.jpg";
    assert_ne!(fa[rgb], fc[rgb], "another seed renders another world");
}

#[test]
fn kitti_odometry_reads_back_with_poses_relative_to_the_first_frame() {
    let dir = tempfile::tempdir().unwrap();
    kitti::generate(&kitti::Options {
        out: dir.path().into(),
        seed: 4,
        sequences: 2,
        frames: 5,
        width: 310,
        height: 94,
        styled: false,
    })
    .unwrap();
    for s in ["00", "01"] {
        let seq = OdometrySequence::open(&dir.path().join("dataset"), s, "image_2").unwrap();
        assert_eq!(seq.images.len(), 5);
        let first = seq.images[0].world_from_cam.unwrap();
        assert!(
            close(&first, &nalgebra::Isometry3::identity(), 1e-9),
            "pose 0 is the identity"
        );
        // Driving forward: camera z (forward) grows, about FRAME_STEP per frame.
        let last = seq.images[4].world_from_cam.unwrap();
        let t = last.translation.vector;
        assert!(
            t.z > 3.0 && (t.norm() - 4.0 * kitti::FRAME_STEP).abs() < 0.5,
            "{t:?}"
        );
        assert_eq!(seq.images[3].timestamp_us, Some(300_000));
        let img = seq.images[2].load_rgb(Decode::Rgb).unwrap();
        assert_eq!(img.dimensions(), (310, 94));
    }
}

#[test]
fn cmu_slice_reads_back_and_database_poses_round_trip_to_the_submission_convention() {
    let dir = tempfile::tempdir().unwrap();
    let opts = cmu::Options {
        out: dir.path().into(),
        seed: 1,
        slice: 7,
        places: 3,
        spacing: 5.0,
        conditions: vec!["snow".into(), "foliage".into()],
        width: 128,
        height: 96,
        style: None,
        query_lateral: 0.0,
        query_yaw_noise: 0.0,
        lens: cmu::Lens::Pinhole,
    };
    cmu::generate(&opts).unwrap();
    let slice = CmuSlice::open(dir.path(), 7).unwrap();
    assert_eq!(slice.database.len(), 3 * 2);
    assert_eq!(slice.queries.len(), 3 * 2 * 2);
    assert_eq!(slice.query_truth.len(), slice.queries.len());
    assert!(
        slice.database.iter().all(|(n, _)| &n[13..17] == "1303"),
        "database timestamps start with 1303"
    );
    assert!(slice.queries.iter().all(|n| &n[13..17] != "1303"));
    assert_eq!(slice.cameras["c1"].pinhole, cmu::intrinsics("c1", 128, 96));

    let world =
        dasgil::synth::world::World::generate(1u64.wrapping_add(0xC0FFEE + 7), Default::default());
    let shots = cmu::plan(&world, &opts);
    for (img, shot) in slice
        .database_images()
        .iter()
        .zip(shots.iter().filter(|s| !s.query))
    {
        assert_eq!(img.path.file_name().unwrap().to_str().unwrap(), shot.name);
        assert!(close(
            &img.world_from_cam.unwrap(),
            &shot.cam_from_world.inverse(),
            1e-5
        ));
        // A database image submitted as its own query gives back t = -R C.
        let line = cmu_submission_line(&shot.name, &img.world_from_cam.unwrap().inverse());
        let f: Vec<f64> = line
            .split(' ')
            .skip(1)
            .map(|v| v.parse().unwrap())
            .collect();
        let t = shot.cam_from_world.translation.vector;
        assert!(
            (f[4] - t.x).abs() < 1e-4 && (f[5] - t.y).abs() < 1e-4 && (f[6] - t.z).abs() < 1e-4
        );
        assert!(
            (centre(&shot.cam_from_world).coords - img.world_from_cam.unwrap().translation.vector)
                .norm()
                < 1e-5
        );
        assert_eq!(img.load_rgb(Decode::Rgb).unwrap().dimensions(), (128, 96));
    }
    // Queries sit near their database place but not on it.
    let q = &slice.query_images()[0];
    let d = &slice.database_images()[0];
    let gap = (q.world_from_cam.unwrap().translation.vector
        - d.world_from_cam.unwrap().translation.vector)
        .norm();
    assert!(gap > 0.1 && gap < 5.0, "{gap}");
}

/// `synth cmu --query-lateral 1 --query-yaw-noise 3` (the drive protocol of
/// config/sequences.yaml) moves every query 1 m to the left of where it would be and turns the
/// vehicle by a draw of sigma 3 degrees cut at 7.5, both cameras alike; the database is the same.
#[test]
fn cmu_drive_protocol_moves_the_queries_sideways_and_turns_them_by_the_seeded_noise() {
    let opts = |lateral: f64, yaw: f64| cmu::Options {
        out: "unused".into(),
        seed: 3,
        slice: 8,
        places: 150,
        spacing: 2.5,
        conditions: vec!["snow".into(), "foliage".into()],
        width: 64,
        height: 48,
        style: None,
        query_lateral: lateral,
        query_yaw_noise: yaw,
        lens: cmu::Lens::Pinhole,
    };
    let world =
        dasgil::synth::world::World::generate(3u64.wrapping_add(0xC0FFEE + 8), Default::default());
    let plain = cmu::plan(&world, &opts(0.0, 0.0));
    let drive = cmu::plan(&world, &opts(1.0, 3.0));
    assert_eq!(drive.len(), plain.len());
    // Camera centre and optical axis (z forward, synth::camera_pose) in the world frame.
    let axes = |s: &cmu::Shot| {
        let w = s.cam_from_world.inverse();
        let forward = w.rotation * nalgebra::Vector3::z();
        (w.translation.vector, forward)
    };
    let mut turns = Vec::new();
    for (a, b) in plain.iter().zip(&drive) {
        assert_eq!(a.name, b.name);
        if !a.query {
            assert!(
                close(&a.cam_from_world, &b.cam_from_world, 1e-12),
                "{}",
                a.name
            );
            continue;
        }
        let ((ta, fa), (tb, fb)) = (axes(a), axes(b));
        // The vehicle's heading: the plain shot's optical axis less the camera's yaw in the rig.
        let rig_yaw = cmu::CAMERAS.iter().find(|c| c.0 == a.camera).unwrap().1;
        let heading = fa.y.atan2(fa.x) - rig_yaw.to_radians();
        let left = nalgebra::Vector3::new(-heading.sin(), heading.cos(), 0.0);
        let moved = tb - ta;
        assert!(
            (moved - left).norm() < 1e-9,
            "{}: moved {moved:?}, left {left:?}",
            a.name
        );
        let turn = (fa.x * fb.y - fa.y * fb.x)
            .atan2(fa.x * fb.x + fa.y * fb.y)
            .to_degrees();
        assert!(turn.abs() <= 7.5 + 1e-9, "{}: turned {turn} deg", a.name);
        turns.push(turn);
    }
    // Both cameras of a frame turn alike (the plan gives c0 then c1 of each frame).
    for pair in turns.chunks(2) {
        assert!((pair[0] - pair[1]).abs() < 1e-9, "{pair:?}");
    }
    let frames: Vec<f64> = turns.iter().step_by(2).copied().collect();
    let n = frames.len() as f64;
    let mean = frames.iter().sum::<f64>() / n;
    let sd = (frames.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        mean.abs() < 0.6 && (2.4..3.4).contains(&sd),
        "mean {mean}, sd {sd}"
    );
    // Clamped at 2.5 sigma: the widest turns sit at 7.5 degrees.
    assert!(
        frames.iter().any(|t| (t.abs() - 7.5).abs() < 1e-9),
        "no turn clamped at 7.5 degrees among {} frames",
        frames.len()
    );
    // Each traversal draws its own: the snow and foliage traversals' i-th frames differ.
    let half = frames.len() / 2;
    let same = (0..half).filter(|&i| frames[i] == frames[half + i]).count();
    assert_eq!(same, 0, "the two traversals share {same} turns");
    // Another seed draws other turns (the same world, so only the noise differs).
    let reseeded = cmu::plan(
        &world,
        &cmu::Options {
            seed: 4,
            ..opts(1.0, 3.0)
        },
    );
    let moved = reseeded
        .iter()
        .zip(&drive)
        .filter(|(a, b)| a.query && a.cam_from_world != b.cam_from_world)
        .count();
    assert_eq!(
        moved,
        turns.len(),
        "another seed, the same turns for some frames"
    );
    // config/sequences.yaml reaches cmu::generate without the command line's checks.
    for (lateral, yaw, field) in [
        (f64::NAN, 0.0, "query_lateral"),
        (-6.0, 0.0, "query_lateral"),
        (0.0, -1.0, "query_yaw_noise"),
        (0.0, 31.0, "query_yaw_noise"),
    ] {
        let e = cmu::check(&opts(lateral, yaw)).unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    // Seeded: the same options plan the same shots.
    let again = cmu::plan(&world, &opts(1.0, 3.0));
    assert!(again
        .iter()
        .zip(&drive)
        .all(|(a, b)| a.cam_from_world == b.cam_from_world));
}

#[test]
fn robotcar_traversals_read_back_with_ins_poses_at_the_image_times() {
    let dir = tempfile::tempdir().unwrap();
    robotcar::generate(&robotcar::Options {
        out: dir.path().into(),
        seed: 2,
        traversals: 2,
        frames: 6,
        width: 160,
        height: 120,
    })
    .unwrap();
    let world =
        dasgil::synth::world::World::generate(2u64.wrapping_add(0x0CA2), Default::default());
    let loop_len = world.route.length();
    for t in 0..2 {
        let tr = Traversal::open(
            &dir.path().join(robotcar::traversal_name(t)),
            "stereo/centre",
        )
        .unwrap();
        assert_eq!(tr.images.len(), 6);
        for (f, img) in tr.images.iter().enumerate() {
            // Interpolated INS position (north, east) = where the frame was rendered.
            let s = robotcar::frame_arc(t, f, 6, loop_len);
            let (p, h) = dasgil::synth::on_route(&world, s, 0.0);
            // The camera pose through the SDK's extrinsics: at the rendered position (NED:
            // north, east, down) and looking along the direction of travel.
            let pose = img.world_from_cam.expect("inside the INS span");
            let v = pose.translation.vector;
            assert!(
                (v.x - (robotcar::NORTHING0 + p[1])).abs() < 0.05
                    && (v.y - (robotcar::EASTING0 + p[0])).abs() < 0.05
                    && (v.z + robotcar::CAMERA_HEIGHT).abs() < 0.05,
                "traversal {t} frame {f}: {v:?}"
            );
            let axis = pose.rotation * nalgebra::Vector3::z();
            let travel = nalgebra::Vector3::new(h.sin(), h.cos(), 0.0);
            assert!(
                axis.dot(&travel) > 0.999,
                "optical axis {axis:?} vs travel {travel:?}"
            );
            // Image y (down) points down in NED (+z).
            assert!((pose.rotation * nalgebra::Vector3::y()).z > 0.999);
        }
        let rgb = tr.images[0].load_rgb(tr.decode()).unwrap();
        assert_eq!(rgb.dimensions(), (160, 120));
        // The visual odometry's path between frames 1 and 4 (its positions between their
        // stamps) is the true path along the loop within the odometry's scale error.
        let vo = dasgil::data::robotcar::read_vo(
            &dir.path()
                .join(robotcar::traversal_name(t))
                .join(dasgil::data::robotcar::VO_FILE),
        )
        .unwrap();
        let (a, b) = (
            tr.images[1].timestamp_us.unwrap(),
            tr.images[4].timestamp_us.unwrap(),
        );
        let path_between = |lo: i64, hi: i64| -> f64 {
            let inside: Vec<[f64; 3]> = vo
                .iter()
                .filter(|s| s.0 >= lo && s.0 <= hi)
                .map(|s| s.1)
                .collect();
            inside
                .windows(2)
                .map(|w| {
                    ((w[1][0] - w[0][0]).powi(2)
                        + (w[1][1] - w[0][1]).powi(2)
                        + (w[1][2] - w[0][2]).powi(2))
                    .sqrt()
                })
                .sum()
        };
        let truth = 3.0 * loop_len / 6.0;
        let measured = path_between(a, b);
        assert!(
            (measured / truth - 1.0).abs() <= robotcar::VO_SCALE_ERROR + 0.01,
            "traversal {t}: odometry drove {measured:.1} m between frames 1 and 4, truth {truth:.1} m"
        );
    }
}
