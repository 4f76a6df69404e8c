//! Runs the bad-input corpus (tests/bad_inputs.txt) through the real `dasgil-tools` binary:
//! every case gets its exit code and message, none panics, aborts, hangs, advises
//! weights_only=False, leaves a partial output, or changes a byte of its inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{path_str, torch_peer, OutputWithin};

fn tools(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output_limited()
        .expect("run dasgil-tools")
}

fn ok(args: &[&str]) {
    let out = tools(args);
    assert!(
        out.status.success(),
        "fixture command {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn python(script: &str) {
    let st = Command::new(common::python())
        .arg("-c")
        .arg(script)
        .output_limited()
        .unwrap()
        .status;
    assert!(st.success(), "python fixture failed: {script}");
}

/// CRC-32 (PNG chunks).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG whose header declares 100000 x 100000 pixels (and no pixel data).
fn huge_png(path: &Path) {
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend(100_000u32.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&ihdr);
    png.extend(crc32(&ihdr).to_be_bytes());
    std::fs::write(path, png).unwrap();
}

fn rewrite(
    src: &Path,
    dst: &Path,
    edit: impl FnOnce(&mut Vec<(String, tch::Tensor)>, &mut std::collections::HashMap<String, String>),
) {
    let file = dasgil::tensor_io::read(src).unwrap();
    let mut meta = file.metadata;
    let mut tensors: Vec<(String, tch::Tensor)> = file
        .tensors
        .into_iter()
        .map(|(k, v)| (k, v.tensor))
        .collect();
    edit(&mut tensors, &mut meta);
    dasgil::tensor_io::write(dst, &tensors, &meta).unwrap();
}

fn make_fixtures(d: &Path) {
    std::fs::create_dir_all(d.join("dir")).unwrap();
    std::fs::create_dir_all(d.join("not-synth")).unwrap();
    std::fs::write(d.join("not-synth/notes.txt"), "mine").unwrap();
    let gen_pth = d.join("gen.pth");
    torch_peer(&[
        "make-pth",
        "--network",
        "generator",
        "--out",
        path_str(&gen_pth),
    ]);
    std::os::unix::fs::symlink(&gen_pth, d.join("gen-symlink.pth")).unwrap();
    std::fs::hard_link(&gen_pth, d.join("gen-hardlink.pth")).unwrap();
    let g = path_str(&gen_pth);
    let p = |name: &str| d.join(name).to_str().unwrap().to_string();
    python(&format!(
        "import torch\n\
         sd = torch.load(r'{g}', weights_only=True)\n\
         torch.save({{'module.' + k: v for k, v in sd.items()}}, r'{}')\n\
         torch.save({{k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}}, r'{}')\n\
         import collections\n\
         for version, out in ((1, r'{}'), (2, r'{}')):\n\
         \x20   old = collections.OrderedDict((k, v) for k, v in sd.items() if not k.endswith('num_batches_tracked'))\n\
         \x20   old._metadata = collections.OrderedDict((k[:-len('.running_mean')], {{'version': version}}) for k in sd if k.endswith('.running_mean'))\n\
         \x20   torch.save(old, out)\n\
         del sd['conv3_bn.running_var']\n\
         torch.save(sd, r'{}')\n\
         torch.save([1, 2, 3], r'{}')\n\
         class Evil:\n    def __reduce__(self):\n        return (print, ('pwned',))\n\
         torch.save({{'x': Evil()}}, r'{}')\n",
        p("module.pth"),
        p("half.pth"),
        p("old-bn.pth"),
        p("new-missing-bn.pth"),
        p("small.pth"),
        p("list.pth"),
        p("evil.pth")
    ));
    std::fs::write(d.join("empty.pth"), b"").unwrap();
    std::fs::write(d.join("text.pth"), b"hello").unwrap();
    let no_torch = d.join("python-without-torch");
    std::fs::write(
        &no_torch,
        format!("#!/bin/sh\nexec {} -S \"$@\"\n", common::python().display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&no_torch, std::fs::Permissions::from_mode(0o755)).unwrap();

    let gen = d.join("gen.safetensors");
    ok(&["import-checkpoint", g, path_str(&gen)]);
    std::os::unix::fs::symlink(&gen, d.join("gen-symlink.safetensors")).unwrap();
    rewrite(&gen, &d.join("nan.safetensors"), |t, _| {
        for (k, v) in t.iter_mut() {
            if k == "conv2.weight" {
                let w = v.copy();
                let _ = w.get(0).get(0).get(0).get(0).fill_(f64::NAN);
                *v = w;
            }
        }
    });
    rewrite(&gen, &d.join("big.safetensors"), |_, m| {
        m.insert(
            "dasgil.config".into(),
            r#"{"input_height":65536,"input_width":65536,"base_width":8,"num_classes":15}"#.into(),
        );
    });
    rewrite(&gen, &d.join("other.safetensors"), |t, m| {
        t.retain(|(k, _)| k == "conv2.weight");
        t[0].0 = "foo".into();
        m.clear();
    });
    rewrite(&gen, &d.join("noconfig.safetensors"), |_, m| {
        m.remove("dasgil.config");
    });
    let bytes = std::fs::read(&gen).unwrap();
    std::fs::write(d.join("trunc.safetensors"), &bytes[..bytes.len() / 2]).unwrap();

    // At least 1/8 of the authors' 1024x256 input in each direction (preprocess::MAX_UPSCALE).
    image::RgbImage::from_fn(128, 64, |x, y| image::Rgb([x as u8 * 2, y as u8 * 4, 90]))
        .save(d.join("img.png"))
        .unwrap();
    image::RgbImage::from_fn(17, 5, |x, y| image::Rgb([x as u8 * 15, y as u8 * 50, 90]))
        .save(d.join("tiny.png"))
        .unwrap();
    std::os::unix::fs::symlink(d.join("img.png"), d.join("img-symlink.png")).unwrap();
    // A link to a folder that is not there (an output must not remove or follow it).
    std::os::unix::fs::symlink(d.join("nowhere"), d.join("dangling")).unwrap();
    // Two links that point at each other (a loop, never followed to its end).
    std::os::unix::fs::symlink(d.join("loop-b"), d.join("loop-a")).unwrap();
    std::os::unix::fs::symlink(d.join("loop-a"), d.join("loop-b")).unwrap();
    std::fs::write(d.join("notimage.png"), b"not a picture").unwrap();
    std::fs::write(d.join("notimage.txt"), b"not a picture").unwrap();
    huge_png(&d.join("huge.png"));

    ok(&[
        "synth",
        "kitti",
        "--out",
        &p("ki"),
        "--frames",
        "2",
        "--width",
        "64",
        "--height",
        "32",
    ]);
    // Two odometry sequences: build-map needs --slice to choose.
    ok(&[
        "synth",
        "kitti",
        "--out",
        &p("ki-two"),
        "--sequences",
        "2",
        "--frames",
        "2",
        "--width",
        "64",
        "--height",
        "32",
    ]);
    for vk in ["vk", "vk-one-variation"] {
        ok(&[
            "synth",
            "vkitti2",
            "--out",
            &p(vk),
            "--scenes",
            "1",
            "--frames",
            "3",
            "--width",
            "64",
            "--height",
            "32",
        ]);
    }
    for e in std::fs::read_dir(d.join("vk-one-variation/Scene01")).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "clone" {
            std::fs::remove_dir_all(e.path()).unwrap();
        }
    }
    ok(&[
        "synth",
        "cmu",
        "--out",
        &p("cmu"),
        "--places",
        "2",
        // gen.safetensors (the authors' 1024x256 input) encodes 128x32 and more.
        "--width",
        "128",
        "--height",
        "64",
        "--conditions",
        "snow",
    ]);
    // The slice's map, and the same map compressed (build-map --compress: what centring
    // refuses).
    for (map, more) in [
        ("map.safetensors", &[][..]),
        ("map-compressed.safetensors", &["--compress", "16"][..]),
    ] {
        let (root, ckpt, out) = (p("cmu"), p("gen.safetensors"), p(map));
        let mut args = vec![
            "build-map",
            "--format",
            "cmu",
            "--root",
            &root,
            "--slice",
            "2",
            "--checkpoint",
            &ckpt,
            "--out",
            &out,
            "--device",
            "cpu",
        ];
        args.extend_from_slice(more);
        ok(&args);
    }
    let bytes = std::fs::read(d.join("map.safetensors")).unwrap();
    std::fs::write(d.join("map-trunc.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    // Cut-off images: a JPEG of the slice, and a copy of the slice with one database image cut.
    let copy = |from: &str, to: &str| {
        let s = std::process::Command::new("cp")
            .args(["-r", &p(from), &p(to)])
            .status()
            .unwrap();
        assert!(s.success());
    };
    let files = |dir: &str, ext: &str| -> Vec<std::path::PathBuf> {
        let out = std::process::Command::new("find")
            .args([&p(dir), "-name", &format!("*.{ext}")])
            .output()
            .unwrap();
        let mut v: Vec<std::path::PathBuf> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(Into::into)
            .collect();
        v.sort();
        v
    };
    let cut = |path: &Path, to: &Path| {
        let bytes = std::fs::read(path).unwrap();
        std::fs::write(to, &bytes[..bytes.len() / 2]).unwrap();
    };
    cut(
        &files("cmu/slice2/database", "jpg")[0],
        &d.join("trunc.jpg"),
    );
    // A data set with one database image far too small for the network (a thumbnail).
    copy("cmu", "cmu-tiny");
    image::RgbImage::from_fn(17, 5, |x, y| image::Rgb([x as u8 * 15, y as u8 * 50, 90]))
        .save_with_format(
            &files("cmu-tiny/slice2/database", "jpg")[1],
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    // A map of another place: the slice's database moved 1 km east (the camera centres of its
    // ground truth), so the slice's own queries lie a kilometre from every map image.
    copy("cmu", "cmu-far");
    let gt = d.join("cmu-far/slice2/ground-truth-database-images-slice2.txt");
    let moved: String = std::fs::read_to_string(&gt)
        .unwrap()
        .lines()
        .map(|l| {
            let mut f: Vec<String> = l.split(' ').map(str::to_string).collect();
            f[5] = (f[5].parse::<f64>().unwrap() + 1000.0).to_string();
            f.join(" ") + "\n"
        })
        .collect();
    std::fs::write(&gt, moved).unwrap();
    ok(&[
        "build-map",
        "--format",
        "cmu",
        "--root",
        &p("cmu-far"),
        "--slice",
        "2",
        "--checkpoint",
        &p("gen.safetensors"),
        "--out",
        &p("map-far.safetensors"),
        "--device",
        "cpu",
    ]);
    // rosbag2 recordings of the slice (tools/python/world_to_bag.py): MCAP with raw frames and
    // TF; sqlite3 with JPEG frames and /odom; each cut in half; one with a bad storage name;
    // one whose poses cover none of its frames; one without camera_info.
    let to_bag = |out: &str, extra: &[&str]| {
        let st = Command::new(common::python())
            .arg(common::root().join("tools/python/world_to_bag.py"))
            .args(["--root", &p("cmu"), "--slice", "2", "--out", &p(out)])
            .args(extra)
            .output_limited()
            .unwrap();
        assert!(
            st.status.success(),
            "world_to_bag.py {out}: {}",
            String::from_utf8_lossy(&st.stderr)
        );
    };
    to_bag("bag", &[]);
    to_bag(
        "bag-odom",
        &[
            "--storage",
            "sqlite3",
            "--transport",
            "compressed",
            "--poses",
            "odometry",
        ],
    );
    to_bag("bag-trimmed", &["--trim-poses", "0.2"]);
    to_bag("bag-bare", &["--no-camera-info"]);
    // Compressed with zstd per message and per file (`ros2 bag record --compression-mode`);
    // one message-compressed file alone (read without its metadata.yaml, at another path so
    // that the frames cache of its folder is not reused); a recording of metadata version 3
    // (Eloquent), whose files are listed with the folder's name in front; an empty file and
    // one of random bytes named .mcap.
    to_bag("bag-zmsg", &["--compression", "message"]);
    // A namespaced robot's TF (/robot1/tf, /robot1/tf_static).
    to_bag("bag-ns", &["--tf-topic", "/robot1/tf"]);
    to_bag("bag-zfile", &["--compression", "file"]);
    std::fs::copy(d.join("bag-zmsg/bag-zmsg.mcap"), d.join("zmsg-alone.mcap")).unwrap();
    copy("bag-zfile", "bag-zfile-open");
    // A file-compressed recording whose file was cut short (a full disk): 90% of it, which
    // leaves no whole zstd block of this small recording (a longer one keeps what precedes
    // the cut: reader.rs's unit test).
    copy("bag-zfile", "bag-zfile-cut");
    let z = d.join("bag-zfile-cut/bag-zfile.mcap.zstd");
    let bytes = std::fs::read(&z).unwrap();
    std::fs::write(&z, &bytes[..bytes.len() * 9 / 10]).unwrap();
    std::fs::remove_file(d.join("bag-zfile-open/metadata.yaml")).unwrap();
    copy("bag", "bag-v3");
    let meta = d.join("bag-v3/metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(
        text.contains("  - bag.mcap\n") && text.contains("version: 9"),
        "{text}"
    );
    std::fs::write(
        &meta,
        text.replace("  - bag.mcap\n", "  - bag-v3/bag.mcap\n")
            .replace("version: 9", "version: 3"),
    )
    .unwrap();
    std::fs::write(d.join("bag-empty.mcap"), b"").unwrap();
    let junk: Vec<u8> = (0..1000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(d.join("bag-junk.mcap"), junk).unwrap();
    cut(&d.join("bag/bag.mcap"), &d.join("bag-trunc.mcap"));
    cut(&d.join("bag-odom/bag-odom.db3"), &d.join("bag-trunc.db3"));
    // A recording killed between two records: every record whole up to the Data End record
    // (opcode 0x0f; each record is an opcode, a u64 LE length and that many bytes), no
    // summary, no footer.
    let bytes = std::fs::read(d.join("bag/bag.mcap")).unwrap();
    let mut at = 8;
    while bytes[at] != 0x0f {
        at += 9 + u64::from_le_bytes(bytes[at + 1..at + 9].try_into().unwrap()) as usize;
    }
    std::fs::write(d.join("bag-nofooter.mcap"), &bytes[..at]).unwrap();
    std::fs::write(d.join("bag-empty.db3"), b"").unwrap();
    std::fs::write(d.join("bag-five.mcap"), b"abcde").unwrap();
    copy("bag", "bag-badmeta");
    let meta = d.join("bag-badmeta/metadata.yaml");
    let text = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(
        &meta,
        text.replace("storage_identifier: mcap", "storage_identifier: rosbag1"),
    )
    .unwrap();
    copy("cmu", "cmu-trunc");
    // A slice whose first query image is gone: evaluate fails after building its maps.
    copy("cmu", "cmu-noquery");
    std::fs::remove_file(&files("cmu-noquery/slice2/query", "jpg")[0]).unwrap();
    let victim = files("cmu-trunc/slice2/database", "jpg")[0].clone();
    cut(&victim.clone(), &victim);
    // Virtual KITTI 2 with every depth re-saved as 8-bit (an image editor's doing).
    copy("vk", "vk-depth8");
    for f in files("vk-depth8", "png")
        .iter()
        .filter(|f| f.to_string_lossy().contains("/depth/"))
    {
        let img = image::open(f).unwrap().to_luma8();
        img.save(f).unwrap();
    }
    // Poses that are no rigid transforms: a KITTI odometry sequence whose second pose has a
    // zero rotation (a placeholder row), and Virtual KITTI 2 extrinsics with one rotation
    // scaled by 2 and one last row that is not 0 0 0 1.
    let odo = d.join("kitti-odo");
    std::fs::create_dir_all(odo.join("sequences/00/image_2")).unwrap();
    std::fs::create_dir_all(odo.join("poses")).unwrap();
    for i in 0..2 {
        std::fs::copy(
            d.join("img.png"),
            odo.join(format!("sequences/00/image_2/{i:06}.png")),
        )
        .unwrap();
    }
    std::fs::write(
        odo.join("poses/00.txt"),
        "1 0 0 0 0 1 0 0 0 0 1 0\n0 0 0 0.8 0 0 0 0 0 0 0 1.6\n",
    )
    .unwrap();
    // A KITTI odometry sequence without its poses (sequences 11-21 have none).
    let bare = d.join("kitti-noposes/sequences/00/image_2");
    std::fs::create_dir_all(&bare).unwrap();
    std::fs::copy(d.join("img.png"), bare.join("000000.png")).unwrap();
    for (to, row, edit) in [("vk-scaled", 2usize, 2usize), ("vk-lastrow", 3, 14)] {
        copy("vk", to);
        let f = d.join(to).join("Scene01/clone/extrinsic.txt");
        let text = std::fs::read_to_string(&f).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut fields: Vec<String> = lines[row].split(' ').map(String::from).collect();
        if edit == 2 {
            for c in [2, 3, 4, 6, 7, 8, 10, 11, 12] {
                let v: f64 = fields[c].parse().unwrap();
                fields[c] = (2.0 * v).to_string();
            }
        } else {
            fields[edit] = "0.5".into();
        }
        lines[row] = fields.join(" ");
        std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    }
    // Virtual KITTI 2 intrinsics with a focal length of 0 on the second row (a placeholder).
    copy("vk", "vk-fx0");
    let f = d.join("vk-fx0/Scene01/fog/intrinsic.txt");
    let text = std::fs::read_to_string(&f).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = lines[2].split(' ').map(String::from).collect();
    fields[2] = "0".into();
    lines[2] = fields.join(" ");
    std::fs::write(&f, lines.join("\n") + "\n").unwrap();
    // The repackaged layout with class 255 ("void") in every segmentation map.
    ok(&[
        "synth",
        "vkitti2",
        "--out",
        &p("vk-class255"),
        "--scenes",
        "1",
        "--frames",
        "3",
        "--width",
        "64",
        "--height",
        "32",
        "--dasgil-layout",
    ]);
    for f in files("vk-class255", "png")
        .iter()
        .filter(|f| f.to_string_lossy().contains("classgt"))
    {
        let mut img = image::open(f).unwrap().to_luma8();
        img.put_pixel(5, 7, image::Luma([255]));
        img.save(f).unwrap();
    }
    let cfg = std::fs::read_to_string(common::root().join("config/train.yaml")).unwrap();
    std::fs::write(
        d.join("train-unknown-field.yaml"),
        cfg.replace("lambda_seg:", "lamda_seg:"),
    )
    .unwrap();
    std::fs::write(
        d.join("train-bad-yaml.yaml"),
        "# c\n\nvkitti: []\nbatch: [1\n",
    )
    .unwrap();
    std::fs::write(
        d.join("sequences-bad-format.yaml"),
        "# mine\nmine:\n  format: cmu\n  root: cmu\n  slice: 2\ntheirs:\n  format: png\n  root: cmu\n",
    )
    .unwrap();
    // A recipe of a tiny world, one thing written wrong per file.
    let recipe = "# mine\nmine:\n  format: cmu\n  root: cmu-recipe\n  slice: 2\n  generate:\n    \
                  seed: 1\n    places: 2\n    spacing: 5.0\n    conditions: [snow]\n    width: 64\n    \
                  height: 48\n";
    for (file, from, to) in [
        ("sequences-bad-condition.yaml", "[snow]", "[snow, snw]"),
        (
            "sequences-bad-style.yaml",
            "[snow]\n",
            "[snow]\n    style: training\n",
        ),
        (
            "sequences-bad-camera.yaml",
            "slice: 2\n",
            "slice: 2\n  cameras: [c0, c9]\n",
        ),
        ("sequences-no-places.yaml", "places: 2", "places: 0"),
        ("sequences-good.yaml", "", ""),
        ("sequences-negative-places.yaml", "places: 2", "places: -3"),
        ("sequences-no-conditions.yaml", "[snow]", "[]"),
        ("sequences-narrow.yaml", "width: 64", "width: 8"),
        (
            "sequences-twice.yaml",
            "# mine\n",
            "# mine\nmine:\n  format: cmu\n  root: cmu-other\n\n",
        ),
        (
            "sequences-places-twice.yaml",
            "height: 48\n",
            "height: 48\n    places: 3\n",
        ),
        ("sequences-tab.yaml", "    seed: 1\n", "\tseed: 1\n"),
        (
            "sequences-twice-snow.yaml",
            "[snow]",
            "[snow, foliage, snow]",
        ),
    ] {
        std::fs::write(d.join(file), recipe.replacen(from, to, 1)).unwrap();
    }
    std::fs::write(
        d.join("sequences-bad-lens.yaml"),
        "# mine\nmine:\n  format: cmu\n  root: cmu-lens\n  slice: 2\n  generate:\n    seed: 1\n    places: 2\n    spacing: 5.0\n    conditions: [snow]\n    width: 64\n    height: 48\n    lens: fisheye\n",
    )
    .unwrap();
    std::fs::write(
        d.join("train-negative-lr.yaml"),
        cfg.replace("lr_generator: 0.002", "lr_generator: -0.1"),
    )
    .unwrap();
    std::fs::write(
        d.join("train-fd.yaml"),
        cfg.replace("discriminator: CD", "discriminator: FD"),
    )
    .unwrap();
    // One value written wrong per file: a number in another YAML spelling (2.0 for the 2
    // shown), text where a number is, a value out of range, a misspelt choice.
    for (file, from, to) in [
        (
            "train-share.yaml",
            "hard_negatives: 0.0",
            "hard_negatives: 2.0",
        ),
        (
            "train-yaw.yaml",
            "augment_yaw_deg: 0.0",
            "augment_yaw_deg: 30",
        ),
        ("train-batch-text.yaml", "batch: 8", "batch: eight"),
        ("train-batch-negative.yaml", "batch: 8", "batch: -1"),
        ("train-width.yaml", "input_width: 1024", "input_width: 1000"),
        (
            "train-betas.yaml",
            "betas_generator: [0.9, 0.999]",
            "betas_generator: [0.9, 1.0]",
        ),
        ("train-dis.yaml", "discriminator: CD", "discriminator: XD"),
        ("train-device.yaml", "device: auto", "device: gpu"),
        ("train-gamma.yaml", "lr_gamma: 0.5", "lr_gamma: 1.5"),
        (
            "train-batch-twice.yaml",
            "batch: 8\n",
            "batch: 8\nbatch: 4\n",
        ),
        ("train-no-batch.yaml", "batch: 8\n", ""),
        ("train-layer-twice.yaml", "{layer: 5,", "{layer: 3,"),
    ] {
        assert!(
            cfg.contains(from),
            "config/train.yaml no longer says {from}"
        );
        std::fs::write(d.join(file), cfg.replace(from, to)).unwrap();
    }
    std::fs::write(
        d.join("train-fd-batch1.yaml"),
        cfg.replace("discriminator: CD", "discriminator: FD")
            .replace("batch: 8", "batch: 1"),
    )
    .unwrap();
    for run in ["run", "run-corrupt"] {
        ok(&[
            "train",
            "--vkitti",
            &p("vk"),
            "--kitti",
            &p("ki"),
            "--size",
            "256x256",
            "--batch",
            "1",
            "--steps",
            "1",
            "--device",
            "cpu",
            "--out",
            &p(run),
        ]);
    }
    let ck = d.join("run-corrupt/checkpoints/step-00000001/generator.safetensors");
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..100]).unwrap();
}

/// Every file and folder under `d` (not following links) with its content ("(folder)" for a
/// folder).
fn snapshot(d: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                // A folder is an entry too (an empty one left behind, or one removed, shows).
                out.insert(path.clone(), b"(folder)".to_vec());
                stack.push(path);
            } else if meta.is_file() {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            } else {
                out.insert(
                    path.clone(),
                    std::fs::read_link(&path)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            }
        }
    }
    out
}

struct Case {
    line: usize,
    exit: i32,
    fragment: String,
    args: Vec<String>,
}

fn parse_corpus(text: &str) -> Vec<Case> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|(i, l)| {
            let parts: Vec<&str> = l.splitn(3, " | ").collect();
            assert_eq!(
                parts.len(),
                3,
                "bad_inputs.txt:{}: expected EXIT | FRAGMENT | ARGS",
                i + 1
            );
            Case {
                line: i + 1,
                exit: parts[0].trim().parse().unwrap(),
                fragment: parts[1].to_string(),
                args: parts[2].split_whitespace().map(str::to_string).collect(),
            }
        })
        .collect()
}

fn run_with_timeout(args: &[String], limit: Duration, data: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dasgil-tools"))
        .args(args)
        .env("RUST_LOG", "warn")
        // Where a recording's frames are extracted to: never the user's ~/.cache.
        .env("DASGIL_DATA", data)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            return (
                None,
                format!(
                    "HUNG after {limit:?}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// One case: what is wrong with it (nothing: None). Its `{out}` lies in a folder of its own,
/// `outs/caseN/`, where no other case writes, so leftovers are told apart while cases run side
/// by side.
fn run_case(c: &Case, d: &Path, outs: &Path, data: &Path) -> Option<String> {
    let dir = outs.join(format!("case{}", c.line));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out");
    let args: Vec<String> = c
        .args
        .iter()
        .map(|a| {
            a.replace("{d}", path_str(d))
                .replace("{out}", path_str(&out))
        })
        .collect();
    let fragment = c.fragment.replace("{d}", path_str(d));
    let (code, text) = run_with_timeout(&args, Duration::from_secs(60), data);
    let mut problems = Vec::new();
    if code != Some(c.exit) {
        problems.push(format!("exit code {code:?}, expected {}", c.exit));
    }
    if !text.contains(&fragment) {
        problems.push(format!("output lacks `{fragment}`"));
    }
    for bad in [
        "panicked",
        "RUST_BACKTRACE",
        "weights_only=False",
        "memory allocation of",
    ] {
        if text.contains(bad) {
            problems.push(format!("output contains `{bad}`"));
        }
    }
    if c.exit != 0 && out.exists() {
        problems.push(format!("left {} behind", out.display()));
    }
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".partial") || n.starts_with(".dasgil-tmp"))
        .collect();
    if !leftovers.is_empty() {
        problems.push(format!("left temporary files: {leftovers:?}"));
    }
    (!problems.is_empty()).then(|| {
        format!(
            "bad_inputs.txt:{} `{}`: {}\n    output: {}",
            c.line,
            args.join(" "),
            problems.join("; "),
            text.trim().replace('\n', "\n            ")
        )
    })
}

/// Cases run on two workers (each is a process of its own; one at a time took 2.5 minutes).
/// A temporary file a case leaves among the fixtures shows when the cases are done (the
/// fixtures must end as they began: no file may appear among them).
#[test]
fn every_bad_input_gets_a_clear_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("fixtures");
    make_fixtures(&d);
    let outs = tmp.path().join("outs");
    std::fs::create_dir_all(&outs).unwrap();
    let before = snapshot(&d);
    let corpus = std::fs::read_to_string(common::root().join("tests/bad_inputs.txt")).unwrap();
    let cases = parse_corpus(&corpus);
    let mut per_command: BTreeMap<String, usize> = BTreeMap::new();
    for c in &cases {
        *per_command.entry(c.args[0].clone()).or_default() += 1;
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let found = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(c) = cases.get(i) else { break };
                // Where a recording's frames are extracted to: its own, never ~/.cache.
                let data = tmp.path().join("data").join(format!("case{}", c.line));
                if let Some(f) = run_case(c, &d, &outs, &data) {
                    found.lock().unwrap().push((c.line, f));
                }
            });
        }
    });
    let mut found = found.into_inner().unwrap();
    found.sort();
    let mut failures: Vec<String> = found.into_iter().map(|(_, f)| f).collect();
    // A warning that explains every figure of an evaluate run (queries off the map) is in its
    // report too, for whoever reads report.md and not the terminal.
    let off_map: Vec<&Case> = cases
        .iter()
        .filter(|c| {
            c.exit == 0 && c.args[0] == "evaluate" && c.fragment.contains("does not show where")
        })
        .collect();
    assert!(
        !off_map.is_empty(),
        "no evaluate case with queries off the map"
    );
    for c in off_map {
        let report = outs.join(format!("case{}/out/report.md", c.line));
        match std::fs::read_to_string(&report) {
            Ok(md) if md.contains("this map does not show where they were taken") => {}
            Ok(md) => failures.push(format!(
                "line {}: report.md lacks the off-the-map warning:\n{md}",
                c.line
            )),
            Err(e) => failures.push(format!("line {}: {}: {e}", c.line, report.display())),
        }
    }
    let after = snapshot(&d);
    for (path, bytes) in &before {
        match after.get(path) {
            Some(b) if b == bytes => {}
            Some(_) => failures.push(format!("fixture {} was changed", path.display())),
            None => failures.push(format!("fixture {} was removed", path.display())),
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        failures.push(format!(
            "a file or folder appeared among the fixtures: {}",
            path.display()
        ));
    }
    eprintln!(
        "bad-input cases per command: {per_command:?} ({} in all)",
        cases.len()
    );
    for cmd in ["info", "import-checkpoint", "embed", "synth", "train"] {
        assert!(
            per_command.contains_key(cmd),
            "no bad-input case for `{cmd}`"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
