//! The readers on hand-written fixtures that copy the real formats (tests/fixtures/datasets),
//! and on malformed copies of them: each error names the file, the line, the field, what was
//! expected and what was found; a data set with a few bad samples is read with them skipped.

use std::path::{Path, PathBuf};

use dasgil::data::cmu_seasons::{read_intrinsics, CmuSlice};
use dasgil::data::kitti::{OdometrySequence, RawDrive};
use dasgil::data::robotcar::{read_ins, Traversal};
use dasgil::data::vkitti2::{ColorTable, Vkitti2, Vkitti2Roots};
use dasgil::data::{skip_bad, Decode};
use image::{GrayImage, ImageBuffer, Luma, Rgb, RgbImage};

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// The fixtures in a temporary folder, with tiny images added where the formats have them.
fn fixtures() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("datasets");
    copy_tree(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/datasets"),
        &root,
    );
    let vk = root.join("vkitti2/Scene01/clone/frames");
    for cam in ["Camera_0", "Camera_1"] {
        for f in 0..2 {
            let p = |kind: &str, name: String| {
                let d = vk.join(kind).join(cam);
                std::fs::create_dir_all(&d).unwrap();
                d.join(name)
            };
            RgbImage::from_pixel(8, 4, Rgb([120, 130, 140]))
                .save(p("rgb", format!("rgb_{f:05}.jpg")))
                .unwrap();
            let depth: ImageBuffer<Luma<u16>, Vec<u16>> =
                ImageBuffer::from_fn(8, 4, |x, _| Luma([if x == 0 { 65535 } else { 1234 }]));
            depth.save(p("depth", format!("depth_{f:05}.png"))).unwrap();
            // Road, Sky, and a colour colors.txt does not list (-> Undefined).
            let seg = RgbImage::from_fn(8, 4, |x, _| {
                Rgb(match x {
                    0 => [90, 200, 255],
                    1 => [1, 2, 3],
                    _ => [100, 60, 100],
                })
            });
            seg.save(p("classSegmentation", format!("classgt_{f:05}.png")))
                .unwrap();
        }
    }
    for name in [
        "img_00122_c0_1303398475046031us.jpg",
        "img_00122_c1_1303398475046031us.jpg",
    ] {
        let d = root.join("cmu/slice2/database");
        std::fs::create_dir_all(&d).unwrap();
        RgbImage::new(16, 12).save(d.join(name)).unwrap();
    }
    std::fs::create_dir_all(root.join("cmu/slice2/query")).unwrap();
    let rc = root.join("robotcar/2014-12-09-13-21-02/stereo/centre");
    std::fs::create_dir_all(&rc).unwrap();
    for ts in ["1418132416737115", "1418132416799604", "1418132416862093"] {
        GrayImage::from_fn(4, 4, |x, y| Luma([(x * 40 + y * 10) as u8]))
            .save(rc.join(format!("{ts}.png")))
            .unwrap();
    }
    let raw = root.join("kitti_raw/2011_09_26/2011_09_26_drive_0001_sync/image_02/data");
    let odo = root.join("kitti_odometry/dataset/sequences/00/image_2");
    for (d, names) in [
        (&raw, ["0000000000.png", "0000000001.png"]),
        (&odo, ["000000.png", "000001.png"]),
    ] {
        std::fs::create_dir_all(d).unwrap();
        for n in names {
            RgbImage::new(12, 4).save(d.join(n)).unwrap();
        }
    }
    (dir, root)
}

fn replace_line(path: &Path, line: usize, text: &str) {
    let content = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = content.lines().map(String::from).collect();
    lines[line - 1] = text.to_string();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[test]
fn vkitti2_fixture_reads_with_poses_classes_and_far_plane() {
    let (_d, root) = fixtures();
    let ds = Vkitti2::open(&Vkitti2Roots::official(&root.join("vkitti2"))).unwrap();
    let var = &ds.scenes[0].variations[0];
    assert_eq!(
        (
            ds.scenes[0].name.as_str(),
            var.name.as_str(),
            var.frames.len()
        ),
        ("Scene01", "clone", 4)
    );
    let f1 = var
        .frames
        .iter()
        .find(|f| f.index == 1 && f.camera == 0)
        .unwrap();
    // extrinsic.txt is world->camera: frame 1 camera 0 translation (0.1, 0, -0.8).
    let t = f1.cam_from_world.unwrap().translation.vector;
    assert!((t - nalgebra::Vector3::new(0.1, 0.0, -0.8)).norm() < 1e-9);
    let c1 = var
        .frames
        .iter()
        .find(|f| f.index == 0 && f.camera == 1)
        .unwrap();
    // Camera_1 is 0.532725 m to the right: its centre is at world x = +0.532725.
    let centre = c1.cam_from_world.unwrap().inverse().translation.vector;
    assert!((centre.x - 0.532725).abs() < 1e-9);
    assert_eq!(f1.intrinsics.unwrap().fx, 725.0087);
    assert_eq!(
        (f1.intrinsics.unwrap().width, f1.intrinsics.unwrap().height),
        (8, 4)
    );
    let s = ds.load(f1, &var.colors).unwrap();
    assert_eq!(
        s.depth_m.get_pixel(0, 0).0[0],
        655.35,
        "65535 = the far plane, kept as 655.35 m like DASGIL"
    );
    assert_eq!(s.depth_m.get_pixel(3, 0).0[0], 12.34);
    assert_eq!(
        [0, 1, 2].map(|x| s.classes.get_pixel(x, 0).0[0]),
        [2, 0, 6],
        "Sky, unknown colour -> Undefined, Road"
    );
    // Both colors.txt variants give the same table.
    assert_eq!(var.colors, ColorTable::default());
}

#[test]
fn vkitti2_malformed_text_and_images_are_named_precisely_and_bad_frames_can_be_skipped() {
    let (_d, root) = fixtures();
    let clone = root.join("vkitti2/Scene01/clone");
    let open = || Vkitti2::open(&Vkitti2Roots::official(&root.join("vkitti2")));

    let intr = clone.join("intrinsic.txt");
    let good = std::fs::read_to_string(&intr).unwrap();
    replace_line(&intr, 1, "frame camera fx fy cx cy");
    let e = open().unwrap_err().to_string();
    assert_eq!(e, format!("{}:1: header: expected `frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]`, found `frame camera fx fy cx cy`", intr.display()));
    std::fs::write(&intr, &good).unwrap();
    replace_line(&intr, 3, "0 1 725.0087 725.0087 620.5 1B7");
    assert_eq!(
        open().unwrap_err().to_string(),
        format!(
            "{}:3: field `K[1,2]`: expected a number, found `1B7`",
            intr.display()
        )
    );
    // A file without the row of an existing frame.
    std::fs::write(
        &intr,
        good.lines().take(4).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    assert_eq!(
        open().unwrap_err().to_string(),
        format!("{}: no row for frame 1 camera 1", intr.display())
    );
    std::fs::write(&intr, &good).unwrap();

    let extr = clone.join("extrinsic.txt");
    replace_line(&extr, 2, "0 0 1 0 0 0 0 1 0 0 0 0 1 0 0 0 1");
    assert_eq!(
        open().unwrap_err().to_string(),
        format!("{}:2: expected 18 columns, found 17", extr.display())
    );
    replace_line(&extr, 2, "0 3 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1");
    assert_eq!(
        open().unwrap_err().to_string(),
        format!(
            "{}:2: field `cameraID`: expected 0 or 1, found `3`",
            extr.display()
        )
    );
    replace_line(&extr, 2, "0 0 1 0 0 0 0 1 0 0 0 0 1 0 0 0 0 1");

    let colors = clone.join("colors.txt");
    replace_line(&colors, 3, "Heaven 90 200 255");
    assert!(open().unwrap_err().to_string().starts_with(&format!(
        "{}:3: field `Category`: expected one of Undefined, Terrain",
        colors.display()
    )));
    replace_line(&colors, 3, "Sky 90 200 255");

    // Per-frame problems surface when a frame is loaded, and can be skipped and counted.
    let depth = clone.join("frames/depth/Camera_0/depth_00001.png");
    std::fs::remove_file(&depth).unwrap();
    let seg = clone.join("frames/classSegmentation/Camera_1/classgt_00000.png");
    RgbImage::new(8, 3).save(&seg).unwrap();
    let ds = open().unwrap();
    let var = &ds.scenes[0].variations[0];
    let (good, skipped) = skip_bad(var.frames.iter().map(|f| ds.load(f, &var.colors)));
    assert_eq!((good.len(), skipped.count()), (2, 2));
    let messages: Vec<String> = skipped.errors.iter().map(ToString::to_string).collect();
    assert!(
        messages.contains(&format!(
            "{}: missing; expected an image file of this frame",
            depth.display()
        )),
        "{messages:?}"
    );
    assert!(
        messages.contains(&format!("{}: image is 8x3, expected 8x4", seg.display())),
        "{messages:?}"
    );
}

#[test]
fn cmu_fixture_reads_and_malformed_lines_are_named() {
    let (_d, root) = fixtures();
    let cmu = root.join("cmu");
    let slice = CmuSlice::open(&cmu, 2).unwrap();
    assert_eq!(slice.database.len(), 2);
    assert_eq!(
        slice.queries,
        [
            "img_00735_c0_1311874730360032us.jpg",
            "img_00735_c1_1311874730360032us.jpg"
        ]
    );
    assert!(
        slice.query_truth.is_empty(),
        "an empty camera-poses file is no ground truth"
    );
    let db = slice.database_images();
    assert_eq!(db[0].camera, "c0");
    assert_eq!(db[0].timestamp_us, Some(1303398475046031));
    // The README example: the stored centre is the camera centre.
    let c = db[0].world_from_cam.unwrap().translation.vector;
    assert!((c - nalgebra::Vector3::new(-85.392177, 55.210379, -2.9807)).norm() < 1e-6);
    assert_eq!(slice.cameras["c1"].k2, 0.181925);
    // The lens, in OpenCV's order (k1, k2, p1, p2, k3; OPENCV has no k3), travels with each
    // image (yaw views use it).
    assert_eq!(
        db[0].distortion,
        Some([-0.399431, 0.188924, 0.000153, 0.000571, 0.0])
    );
    assert!(db[0].load_rgb(Decode::Rgb).is_ok());
    let q = &slice.query_images()[0];
    let e = q.load_rgb(Decode::Rgb).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: missing; expected an image file", q.path.display())
    );

    let intr = cmu.join("intrinsics.txt");
    let good = std::fs::read_to_string(&intr).unwrap();
    replace_line(
        &intr,
        4,
        "c0 PINHOLE 1024 768 868.99 866.06 525.94 420.04 0 0 0 0",
    );
    assert_eq!(
        read_intrinsics(&intr).unwrap_err().to_string(),
        format!(
            "{}:4: field `model`: expected OPENCV, found `PINHOLE`",
            intr.display()
        )
    );
    std::fs::write(&intr, good).unwrap();
    let gt = cmu.join("slice2/ground-truth-database-images-slice2.txt");
    replace_line(&gt, 2, "img_00122_c1_1303398475046031us.jpg 0.328395 0.258772 0.569011 -0.709950 -85.392177 55.210379");
    assert_eq!(
        CmuSlice::open(&cmu, 2).unwrap_err().to_string(),
        format!("{}:2: expected 8 columns, found 7", gt.display())
    );
    replace_line(&gt, 2, "img_122_c1_1303398475046031us.jpg 0.328395 0.258772 0.569011 -0.709950 -85.392177 55.210379 -2.9807");
    assert_eq!(
        CmuSlice::open(&cmu, 2).unwrap_err().to_string(),
        format!("{}:2: field `name`: expected img_%05d_c<k>_<16-digit timestamp>us.jpg, found `img_122_c1_1303398475046031us.jpg`", gt.display())
    );
    // Whitespace separates fields however much of it there is (double spaces, tabs).
    replace_line(&gt, 2, "img_00122_c1_1303398475046031us.jpg\t0.328395  0.258772 0.569011\t -0.709950 -85.392177 55.210379 -2.9807");
    let s = CmuSlice::open(&cmu, 2).unwrap();
    assert!((s.database[1].1.q_wxyz[3] + 0.709950).abs() < 1e-12);
    // A zero, unnormalised or NaN quaternion is refused where it is read, naming the line.
    for (q, found) in [
        ("0 0 0 0", "0 0 0 0 (norm 0)"),
        ("0.5 0.5 0.5 0.6", "0.5 0.5 0.5 0.6 (norm 1.05"),
    ] {
        replace_line(
            &gt,
            2,
            &format!("img_00122_c1_1303398475046031us.jpg {q} -85.392177 55.210379 -2.9807"),
        );
        let e = CmuSlice::open(&cmu, 2).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: field `qw qx qy qz`: expected a unit quaternion (norm 1 +- 0.01), found `{found}", gt.display())),
            "{e}"
        );
    }
    replace_line(
        &gt,
        2,
        "img_00122_c1_1303398475046031us.jpg NaN 0 0 1 -85.392177 55.210379 -2.9807",
    );
    let e = CmuSlice::open(&cmu, 2).unwrap_err().to_string();
    assert!(
        e.contains(":2: field `qw`: expected a finite number, found `NaN`"),
        "{e}"
    );
}

#[test]
fn robotcar_fixture_interpolates_ins_and_rejects_bad_ins_files() {
    let (_d, root) = fixtures();
    let dir = root.join("robotcar/2014-12-09-13-21-02");
    let tr = Traversal::open(&dir, "stereo/centre").unwrap();
    assert_eq!(tr.images.len(), 3);
    // 1418132416737115 lies 37.115% of the way from the first to the second INS row.
    let rows = read_ins(&dir.join("gps/ins.csv")).unwrap();
    let ins_pose = dasgil::data::robotcar::pose_at(&rows, 1418132416737115).unwrap();
    let p = ins_pose.translation.vector;
    assert!(
        (p.x - (5735840.12 + 0.37115 * 0.10)).abs() < 1e-6
            && (p.y - (620059.71 - 0.37115 * 0.80)).abs() < 1e-6,
        "{p:?}"
    );
    assert!((p.z - (-110.6)).abs() < 1e-9);
    let yaw = ins_pose.rotation.euler_angles().2;
    assert!((yaw - (-1.4450 - 0.37115 * 0.001)).abs() < 1e-6);
    // The image's pose is the camera's: the INS pose through the SDK's extrinsics (the stereo
    // camera 2.09 m from the INS unit), in the optical frame (z forward).
    let cam = tr.images[0].world_from_cam.unwrap();
    let expect = ins_pose * dasgil::data::robotcar::ins_from_image("stereo/centre").unwrap();
    assert!((cam.translation.vector - expect.translation.vector).norm() < 1e-9);
    assert!(cam.rotation.angle_to(&expect.rotation) < 1e-9);
    let lever = (cam.translation.vector - p).norm();
    assert!((lever - 2.0920).abs() < 1e-3, "{lever}");
    // Looking forward: the optical axis is the vehicle's x (yaw -1.445 rad from north).
    let axis = cam.rotation * nalgebra::Vector3::z();
    let forward = ins_pose.rotation * nalgebra::Vector3::x();
    assert!(axis.dot(&forward) > 0.99, "{axis:?} {forward:?}");
    assert_eq!(
        tr.images[0].load_rgb(tr.decode()).unwrap().dimensions(),
        (4, 4)
    );

    let ins = dir.join("gps/ins.csv");
    replace_line(&ins, 3, "1418132416600000,INS_SOLUTION_GOOD,51.760605,-1.261377,110.6,5735840.22,620058.91,-110.6,30U,1.0,-8.0,0.0,0.01,-0.02,-1.4460");
    assert_eq!(read_ins(&ins).unwrap_err().to_string(), format!("{}:3: field `timestamp`: expected increasing (> 1418132416700000), found `1418132416600000`", ins.display()));
    replace_line(&ins, 1, "timestamp,ins_status,latitude,longitude");
    assert!(read_ins(&ins)
        .unwrap_err()
        .to_string()
        .starts_with(&format!(
            "{}:1: header: expected `timestamp,ins_status,",
            ins.display()
        )));
}

#[test]
fn kitti_fixtures_read_raw_timestamps_oxts_and_odometry_poses() {
    let (_d, root) = fixtures();
    let drive = RawDrive::open(
        &root.join("kitti_raw/2011_09_26/2011_09_26_drive_0001_sync"),
        "image_02",
    )
    .unwrap();
    assert_eq!(drive.images.len(), 2);
    assert_eq!(drive.images[1].timestamp_us, Some(1_317_042_146_074_823));
    assert_eq!(drive.oxts.len(), 1);
    assert_eq!(drive.oxts[0].lat, 49.015003823272);
    let seq =
        OdometrySequence::open(&root.join("kitti_odometry/dataset"), "00", "image_2").unwrap();
    let t = seq.images[1].world_from_cam.unwrap().translation.vector;
    assert!((t - nalgebra::Vector3::new(-4.690294e-02, -2.839928e-02, 8.586941e-01)).norm() < 1e-9);
    assert_eq!(seq.images[1].timestamp_us, Some(103_622));
    assert_eq!(
        dasgil::data::kitti::image_folder(&root.join("kitti_odometry"))
            .unwrap()
            .len(),
        2
    );

    let poses = root.join("kitti_odometry/dataset/poses/00.txt");
    replace_line(&poses, 2, "9.999978e-01 5.272628e-04 -2.066935e-03 -4.690294e-02 -5.296506e-04 9.999992e-01 -1.154865e-03 -2.839928e-02 2.066324e-03 1.155958e-03 9.999971e-01");
    assert_eq!(
        OdometrySequence::open(&root.join("kitti_odometry/dataset"), "00", "image_2")
            .unwrap_err()
            .to_string(),
        format!("{}:2: expected 12 columns, found 11", poses.display())
    );
    let oxts =
        root.join("kitti_raw/2011_09_26/2011_09_26_drive_0001_sync/oxts/data/0000000000.txt");
    std::fs::write(&oxts, "49.0 8.4 116.4 nan\n").unwrap();
    assert!(RawDrive::open(
        &root.join("kitti_raw/2011_09_26/2011_09_26_drive_0001_sync"),
        "image_02"
    )
    .unwrap_err()
    .to_string()
    .ends_with("0000000000.txt:1: expected 30 columns, found 4"));
}

#[test]
fn kitti_image_2_poses_are_cam0_poses_moved_by_the_calibration() {
    let dir = tempfile::tempdir().unwrap();
    let seq = dir.path().join("sequences/00");
    std::fs::create_dir_all(seq.join("image_2")).unwrap();
    std::fs::create_dir_all(dir.path().join("poses")).unwrap();
    image::RgbImage::new(8, 4)
        .save(seq.join("image_2/000000.png"))
        .unwrap();
    // KITTI odometry sequence 00's P0 and P2 (rectified, same K).
    std::fs::write(
        seq.join("calib.txt"),
        "P0: 7.188560e+02 0 6.071928e+02 0 0 7.188560e+02 1.852157e+02 0 0 0 1 0\n\
         P1: 7.188560e+02 0 6.071928e+02 -3.861448e+02 0 7.188560e+02 1.852157e+02 0 0 0 1 0\n\
         P2: 7.188560e+02 0 6.071928e+02 4.538225e+01 0 7.188560e+02 1.852157e+02 -1.130887e-01 0 0 1 3.779761e-03\n\
         P3: 7.188560e+02 0 6.071928e+02 -3.372877e+02 0 7.188560e+02 1.852157e+02 2.369057e+00 0 0 1 4.915215e-03\n",
    )
    .unwrap();
    // cam0 one metre forward (z) of the world origin, no rotation.
    std::fs::write(dir.path().join("poses/00.txt"), "1 0 0 0 0 1 0 0 0 0 1 1\n").unwrap();
    let s = dasgil::data::kitti::OdometrySequence::open(dir.path(), "00", "image_2").unwrap();
    let t = s.images[0].world_from_cam.unwrap().translation.vector;
    // t_2 = K^-1 P2[:, 3]: x = (45.38 - 607.19 * 0.00378) / 718.86 = 0.0599 m; camera 2 sits
    // that far to the left of cam0 (x right), so its centre is at x = -0.0599.
    assert!((t.x + 0.0599).abs() < 2e-4, "{t:?}");
    assert!((t.z - (1.0 - 0.00378)).abs() < 1e-5, "{t:?}");
    // Without calib.txt, image_2 keeps the poses file's pose.
    std::fs::remove_file(seq.join("calib.txt")).unwrap();
    let s = dasgil::data::kitti::OdometrySequence::open(dir.path(), "00", "image_2").unwrap();
    assert_eq!(
        s.images[0].world_from_cam.unwrap().translation.vector.z,
        1.0
    );
}
