#!/usr/bin/env python3
"""Writes an Extended CMU-Seasons-layout slice (a synthetic world from `dasgil-tools synth cmu`,
or the real data) as a rosbag2 recording, the way a robot would have recorded it: one image topic
per camera, the vehicle's motion on /tf and the cameras' mounting on /tf_static (REP 105:
map -> odom -> base_link -> <camera>_optical_frame), or the poses on a pose topic instead.
So `build-map --bag` can be tried, and is tested, before a user has a recording of their own.

  .venv/bin/python tools/python/world_to_bag.py --root ~/.cache/dasgil/cmu_slice --slice 2 \
      --out cmu_slice_database [--storage mcap|sqlite3] [--transport raw|compressed] \
      [--poses tf|odometry|pose-stamped|pose-with-covariance] [--part database|query] \
      [--wheel-odometry /wheel/odom [--odometry-scale-error 0.02] [--odometry-heading-drift 0.5]]

Topics: /<camera>/image_raw (sensor_msgs/Image, rgb8) or /<camera>/image_raw/compressed
(sensor_msgs/CompressedImage, the JPEG files' bytes, format "rgb8; jpeg compressed rgb8"),
frame <camera>_optical_frame, stamped with the time in the image name (microseconds), and
/<camera>/camera_info (sensor_msgs/CameraInfo with the same header, as a camera driver publishes
it: K and plumb_bob D = k1 k2 p1 p2 0 from the data set's intrinsics.txt, and P, a rectified
camera's, K's with the principal point half a pixel to the right (so a reader that takes P for
the raw images is caught); --no-camera-info leaves it out). TF:
map -> odom identity (static); odom -> base_link at 50 Hz over the drive, interpolated between
the images' poses (translation linearly, rotation by slerp), so a frame's pose is only exact at
its own stamp when the lookup interpolates; base_link -> <camera>_optical_frame static, a fixed
mounting per camera. With --poses odometry|pose-stamped|pose-with-covariance, /odom or /pose
carries base_link in map at the same 50 Hz instead of /tf, and the mounting is printed for
--base-from-camera.
With --wheel-odometry TOPIC, the recording also holds what a robot's own odometry would report
(nav_msgs/Odometry, frame wheel_odom, child base_link, 50 Hz, from the origin at the start of
each drive): the true motion, its distances scaled by 1 + --odometry-scale-error and its
heading walking off by --odometry-heading-drift degrees per square-root metre (seeded), for
`evaluate --bag ... --filter sequence --odometry-topic TOPIC` and the node's `odometry_topic`.

Format: ground-truth-database-images-slice<N>.txt (query: camera-poses/*.txt) lines `name qw qx qy qz cx cy cz` (world->camera rotation,
camera centre), images under slice<N>/database|query/ (../shared/reference/dataset-formats.md).
Stamps more than 5 s apart are separate drives (the query conditions): no pose between them.
"""
import argparse
import os
import shutil
import sys

import numpy as np

try:
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
except ImportError:  # pragma: no cover
    sys.exit("world_to_bag.py: the rosbags package is missing; run tools/setup.sh")

RATE_HZ = 50.0
DRIVE_GAP_S = 5.0


def quat_to_mat(w, x, y, z):
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def mat_to_quat(r):
    """(w, x, y, z) of a rotation matrix."""
    t = np.trace(r)
    if t > 0:
        s = np.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    return q / np.linalg.norm(q)


def slerp(q0, q1, w):
    q0, q1 = np.asarray(q0, float), np.asarray(q1, float)
    d = float(np.dot(q0, q1))
    if d < 0:
        q1, d = -q1, -d
    if d > 0.9995:
        q = q0 + w * (q1 - q0)
        return q / np.linalg.norm(q)
    th = np.arccos(d)
    return (np.sin((1 - w) * th) * q0 + np.sin(w * th) * q1) / np.sin(th)


def read_poses(path):
    """name -> 4x4 world_from_cam."""
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 8:
                sys.exit(f"{path}:{n}: expected `name qw qx qy qz cx cy cz`, found {len(parts)} fields")
            name = parts[0]
            qw, qx, qy, qz, cx, cy, cz = map(float, parts[1:])
            cam_from_world = quat_to_mat(qw, qx, qy, qz)
            t = np.eye(4)
            t[:3, :3] = cam_from_world.T
            t[:3, 3] = [cx, cy, cz]
            out[name] = t
    return out


def parse_name(name):
    """img_<index>_<camera>_<16 digits>us.jpg -> (camera, microseconds)."""
    stem = name[len("img_"):-len("us.jpg")]
    _, camera, us = stem.split("_")
    return camera, int(us)


# The mounting of each camera on base_link (x forward, y left, z up): optical frame z forward.
# base_link_from_optical rotation: optical x (right) = -y base, optical y (down) = -z base,
# optical z (forward) = +x base; then a yaw per camera and a lever arm.
def base_from_optical(camera):
    r = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]], float)
    k = int(camera[1:]) if camera[1:].isdigit() else 0
    yaw = np.deg2rad(-30.0 if k == 1 else 0.0)
    rz = np.array([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]])
    t = np.eye(4)
    t[:3, :3] = rz @ r
    t[:3, 3] = [1.2, -0.3 * k, 1.6]
    return t


def wheel_odometry(a, ts, w, times, interp, header, pose):
    """(ns, connection, bytes) of the drifting odometry at every pose time, restarting at the
    origin where a drive starts (a gap over DRIVE_GAP_S)."""
    T = ts.types
    conn = w.add_connection(a.wheel_odometry, "nav_msgs/msg/Odometry", typestore=ts)
    Msg = T["nav_msgs/msg/Odometry"]
    Vec3 = T["geometry_msgs/msg/Vector3"]
    cov = np.zeros(36)
    rng = np.random.default_rng(a.odometry_seed)
    sigma = np.deg2rad(a.odometry_heading_drift)
    out, odom, prev, prev_ns = [], None, None, None
    for ns in times:
        truth = interp(ns)
        if prev_ns is None or ns - prev_ns > DRIVE_GAP_S * 1e9:
            odom = np.eye(4)
        else:
            step = np.linalg.inv(prev) @ truth
            step[:3, 3] *= 1.0 + a.odometry_scale_error
            yaw = rng.normal(0.0, sigma * np.sqrt(np.linalg.norm(step[:3, 3])))
            c, s = np.cos(yaw), np.sin(yaw)
            turn = np.eye(4)
            turn[:2, :2] = [[c, -s], [s, c]]
            odom = odom @ step @ turn
        prev, prev_ns = truth, ns
        zero = Vec3(x=0.0, y=0.0, z=0.0)
        m = Msg(header=header(ns, "wheel_odom"), child_frame_id="base_link",
                pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose(odom), covariance=cov),
                twist=T["geometry_msgs/msg/TwistWithCovariance"](
                    twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=cov))
        out.append((ns, conn, ts.serialize_cdr(m, "nav_msgs/msg/Odometry")))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", required=True, help="the data set folder (holds slice<N>/)")
    ap.add_argument("--slice", type=int, required=True)
    ap.add_argument("--out", required=True, help="the recording folder to create (must not exist)")
    ap.add_argument("--part", choices=["database", "query"], default="database")
    ap.add_argument("--cameras", default="c0,c1")
    ap.add_argument("--storage", choices=["mcap", "sqlite3"], default="mcap")
    ap.add_argument("--transport", choices=["raw", "compressed"], default="raw")
    ap.add_argument("--poses", choices=["tf", "odometry", "pose-stamped", "pose-with-covariance"],
                    default="tf")
    ap.add_argument("--wheel-odometry", metavar="TOPIC",
                    help="also record drifting wheel odometry (nav_msgs/Odometry) on this topic")
    ap.add_argument("--odometry-scale-error", type=float, default=0.02, metavar="E",
                    help="the wheel odometry's distances are 1 + E times the true ones")
    ap.add_argument("--odometry-heading-drift", type=float, default=0.5, metavar="DEG",
                    help="its heading's random walk, degrees per square-root metre driven")
    ap.add_argument("--odometry-seed", type=int, default=0)
    ap.add_argument("--no-camera-info", action="store_true",
                    help="record no /<camera>/camera_info (a recording without intrinsics)")
    ap.add_argument("--trim-poses", type=float, default=0.0, metavar="S",
                    help="record no pose in the first and last S seconds (frames outside the span)")
    ap.add_argument("--tf-topic", default="/tf",
                    help="the TF topic (a namespaced robot's /ROBOT/tf); static transforms on "
                         "TOPIC_static")
    ap.add_argument("--compression", choices=["none", "message", "file"], default="none",
                    help="zstd per message or per file, as `ros2 bag record --compression-mode "
                         "message|file --compression-format zstd` writes it")
    a = ap.parse_args()

    from PIL import Image  # noqa: imported late: only this script needs it

    slice_dir = os.path.join(a.root, f"slice{a.slice}")
    if a.part == "database":
        gt = os.path.join(slice_dir, f"ground-truth-database-images-slice{a.slice}.txt")
        if not os.path.isfile(gt):
            sys.exit(f"{gt}: missing (is --root an Extended CMU-Seasons layout with slice {a.slice}?)")
        poses = read_poses(gt)
    else:
        gt = os.path.join(slice_dir, "camera-poses")
        files = sorted(f for f in os.listdir(gt) if f.endswith(".txt")) if os.path.isdir(gt) else []
        if not files:
            sys.exit(f"{gt}: no query ground truth (*.txt) for slice {a.slice}")
        poses = {}
        for f in files:
            poses.update(read_poses(os.path.join(gt, f)))
    cameras = a.cameras.split(",")
    # camera -> (width, height, fx, fy, cx, cy, k1, k2, p1, p2) from intrinsics.txt.
    lenses = {}
    if not a.no_camera_info:
        path = os.path.join(a.root, "intrinsics.txt")
        if not os.path.isfile(path):
            sys.exit(f"{path}: missing (the cameras' intrinsics for camera_info; --no-camera-info "
                     "records none)")
        with open(path) as f:
            for n, line in enumerate(f, 1):
                parts = line.split()
                if not parts or parts[0].startswith("#"):
                    continue
                if len(parts) != 12 or parts[1] != "OPENCV":
                    sys.exit(f"{path}:{n}: expected `camera OPENCV width height fx fy cx cy k1 k2 "
                             f"p1 p2`, found `{line.strip()}`")
                lenses[parts[0]] = [int(parts[2]), int(parts[3])] + [float(v) for v in parts[4:]]
        missing = [c for c in cameras if c not in lenses]
        if missing:
            sys.exit(f"{path}: no intrinsics for camera(s) {', '.join(missing)}")
    frames = []  # (stamp_ns, camera, name, world_from_cam)
    for name, t in poses.items():
        cam, us = parse_name(name)
        if cam in cameras:
            frames.append((us * 1000, cam, name, t))
    frames.sort(key=lambda f: (f[0], f[1]))
    if not frames:
        sys.exit(f"{gt}: no {a.part} image of cameras {a.cameras}")

    # base_link's pose at each image stamp, from the first camera (mounted as
    # base_from_optical says); every other camera's mounting is measured from the data (the
    # rig is rigid: checked to 1 mm) so the TF chain gives back its poses.
    first = cameras[0]
    base = {}
    for stamp, cam, _, t in frames:
        if cam == first:
            base[stamp] = t @ np.linalg.inv(base_from_optical(first))
    if not base:
        sys.exit(f"{gt}: no {a.part} image of camera {first}, which carries base_link")
    mount = {first: base_from_optical(first)}
    for stamp, cam, name, t in frames:
        if cam == first or stamp not in base:
            continue
        m = np.linalg.inv(base[stamp]) @ t
        if cam not in mount:
            mount[cam] = m
        elif np.abs(m - mount[cam]).max() > 1e-3:
            sys.exit(f"{name}: camera {cam} moves against {first} (not a rigid rig); "
                     "write one camera per recording")
    if set(mount) != set(cameras):
        sys.exit(f"{gt}: cameras {sorted(set(cameras) - set(mount))} never share a stamp with {first}")
    stamps = sorted(base)

    ts = get_typestore(Stores.ROS2_JAZZY)
    T = ts.types
    Time = T["builtin_interfaces/msg/Time"]
    Header = T["std_msgs/msg/Header"]
    Vector3 = T["geometry_msgs/msg/Vector3"]
    Quaternion = T["geometry_msgs/msg/Quaternion"]
    Transform = T["geometry_msgs/msg/Transform"]
    TransformStamped = T["geometry_msgs/msg/TransformStamped"]
    TFMessage = T["tf2_msgs/msg/TFMessage"]
    Point = T["geometry_msgs/msg/Point"]
    Pose = T["geometry_msgs/msg/Pose"]

    def header(ns, frame):
        return Header(stamp=Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    def quat(m):
        w, x, y, z = mat_to_quat(m[:3, :3])
        return Quaternion(x=x, y=y, z=z, w=w)

    def transform(m):
        return Transform(translation=Vector3(x=m[0, 3], y=m[1, 3], z=m[2, 3]), rotation=quat(m))

    def pose(m):
        return Pose(position=Point(x=m[0, 3], y=m[1, 3], z=m[2, 3]), orientation=quat(m))

    def interp(ns):
        """base_link in map at ns, between the image stamps around it."""
        i = int(np.searchsorted(stamps, ns))
        if i < len(stamps) and stamps[i] == ns:
            return base[ns]
        a0, a1 = base[stamps[i - 1]], base[stamps[i]]
        w = (ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        m = np.eye(4)
        m[:3, 3] = (1 - w) * a0[:3, 3] + w * a1[:3, 3]
        qw, qx, qy, qz = slerp(mat_to_quat(a0[:3, :3]), mat_to_quat(a1[:3, :3]), w)
        m[:3, :3] = quat_to_mat(qw, qx, qy, qz)
        return m

    # Pose messages at 50 Hz over the drive, on a grid that misses the image stamps (13 ms
    # after the first), so a frame's pose is interpolated between two messages; with
    # --trim-poses S none in the first and last S seconds.
    # Image stamps more than DRIVE_GAP_S apart belong to separate drives (the query conditions
    # are other days): no pose is recorded between drives.
    step = int(1e9 / RATE_HZ)
    drives, start = [], 0
    for i in range(1, len(stamps) + 1):
        if i == len(stamps) or stamps[i] - stamps[i - 1] > DRIVE_GAP_S * 1e9:
            drives.append((stamps[start], stamps[i - 1]))
            start = i
    trim = int(a.trim_poses * 1e9)
    times = set()
    for s0, s1 in drives:
        grid = {s0, s1} | set(range(s0 + 13_000_000, s1, step))
        times |= {t for t in grid if s0 + trim <= t <= s1 - trim}
    times = sorted(times)
    if not times:
        sys.exit(f"--trim-poses {a.trim_poses}: no pose message would be left")

    plugin = StoragePlugin.MCAP if a.storage == "mcap" else StoragePlugin.SQLITE3
    if os.path.exists(a.out):
        sys.exit(f"{a.out}: exists; give --out a folder that does not exist yet (a recording "
                 "is written into a new folder, never into an existing one)")
    try:
        writer = Writer(a.out, version=9, storage_plugin=plugin)
        if a.compression != "none":
            mode = {"message": CompressionMode.MESSAGE, "file": CompressionMode.FILE}
            writer.set_compression(mode[a.compression], CompressionFormat.ZSTD)
        with writer as w:
            image_conn = {}
            for cam in cameras:
                if a.transport == "raw":
                    image_conn[cam] = w.add_connection(f"/{cam}/image_raw", "sensor_msgs/msg/Image", typestore=ts)
                else:
                    image_conn[cam] = w.add_connection(
                        f"/{cam}/image_raw/compressed", "sensor_msgs/msg/CompressedImage", typestore=ts)
            info_conn = {cam: w.add_connection(f"/{cam}/camera_info", "sensor_msgs/msg/CameraInfo",
                                               typestore=ts) for cam in lenses if cam in cameras}
            msgs = []  # (ns, conn, bytes)
            if a.poses == "tf":
                tf = w.add_connection(a.tf_topic, "tf2_msgs/msg/TFMessage", typestore=ts)
                tf_static = w.add_connection(a.tf_topic + "_static", "tf2_msgs/msg/TFMessage",
                                             typestore=ts)
                statics = [TransformStamped(header=header(times[0], "map"), child_frame_id="odom",
                                            transform=transform(np.eye(4)))]
                for cam in cameras:
                    statics.append(TransformStamped(header=header(times[0], "base_link"),
                                                    child_frame_id=f"{cam}_optical_frame",
                                                    transform=transform(mount[cam])))
                msgs.append((times[0], tf_static, ts.serialize_cdr(TFMessage(transforms=statics),
                                                                     TFMessage.__msgtype__)))
                for ns in times:
                    m = TFMessage(transforms=[TransformStamped(header=header(ns, "odom"),
                                                               child_frame_id="base_link",
                                                               transform=transform(interp(ns)))])
                    msgs.append((ns, tf, ts.serialize_cdr(m, TFMessage.__msgtype__)))
            else:
                kind = {"odometry": ("/odom", "nav_msgs/msg/Odometry"),
                        "pose-stamped": ("/pose", "geometry_msgs/msg/PoseStamped"),
                        "pose-with-covariance": ("/pose", "geometry_msgs/msg/PoseWithCovarianceStamped")}[a.poses]
                conn = w.add_connection(kind[0], kind[1], typestore=ts)
                Msg = T[kind[1]]
                PoseWithCovariance = T["geometry_msgs/msg/PoseWithCovariance"]
                cov = np.zeros(36)
                for ns in times:
                    p = pose(interp(ns))
                    if a.poses == "odometry":
                        Twist = T["geometry_msgs/msg/Twist"]
                        TwistWithCovariance = T["geometry_msgs/msg/TwistWithCovariance"]
                        m = Msg(header=header(ns, "map"), child_frame_id="base_link",
                                pose=PoseWithCovariance(pose=p, covariance=cov),
                                twist=TwistWithCovariance(twist=Twist(linear=Vector3(x=0, y=0, z=0),
                                                                      angular=Vector3(x=0, y=0, z=0)),
                                                          covariance=cov))
                    elif a.poses == "pose-stamped":
                        m = Msg(header=header(ns, "map"), pose=p)
                    else:
                        m = Msg(header=header(ns, "map"), pose=PoseWithCovariance(pose=p, covariance=cov))
                    msgs.append((ns, conn, ts.serialize_cdr(m, kind[1])))
                for cam in cameras:
                    b = mount[cam]
                    qw, qx, qy, qz = mat_to_quat(b[:3, :3])
                    print(f"--base-from-camera for {cam}: \"{b[0, 3]:.6f} {b[1, 3]:.6f} {b[2, 3]:.6f} "
                          f"{qx:.9f} {qy:.9f} {qz:.9f} {qw:.9f}\"")
            if a.wheel_odometry:
                msgs.extend(wheel_odometry(a, ts, w, times, interp, header, pose))
            Image_ = T["sensor_msgs/msg/Image"]
            Compressed = T["sensor_msgs/msg/CompressedImage"]
            CameraInfo = T["sensor_msgs/msg/CameraInfo"]
            RegionOfInterest = T["sensor_msgs/msg/RegionOfInterest"]

            def camera_info(h, cam):
                width, height, fx, fy, cx, cy, k1, k2, p1, p2 = lenses[cam]
                k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], dtype=np.float64)
                p = np.array([fx, 0, cx + 0.5, 0, 0, fy, cy, 0, 0, 0, 1, 0], dtype=np.float64)
                m = CameraInfo(header=h, height=height, width=width, distortion_model="plumb_bob",
                               d=np.array([k1, k2, p1, p2, 0.0], dtype=np.float64), k=k,
                               r=np.eye(3, dtype=np.float64).reshape(-1), p=p, binning_x=0, binning_y=0,
                               roi=RegionOfInterest(x_offset=0, y_offset=0, height=0, width=0,
                                                    do_rectify=False))
                return ts.serialize_cdr(m, CameraInfo.__msgtype__)

            for stamp, cam, name, _ in frames:
                path = os.path.join(slice_dir, a.part, name)
                h = header(stamp, f"{cam}_optical_frame")
                if a.transport == "raw":
                    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
                    m = Image_(header=h, height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                               is_bigendian=0, step=rgb.shape[1] * 3, data=rgb.reshape(-1))
                    data = ts.serialize_cdr(m, Image_.__msgtype__)
                else:
                    with open(path, "rb") as f:
                        jpeg = np.frombuffer(f.read(), dtype=np.uint8)
                    m = Compressed(header=h, format="rgb8; jpeg compressed rgb8", data=jpeg)
                    data = ts.serialize_cdr(m, Compressed.__msgtype__)
                # Recorded a little after the exposure, as a driver's frames arrive.
                msgs.append((stamp + 20_000_000, image_conn[cam], data))
                if cam in info_conn:
                    msgs.append((stamp + 20_000_000, info_conn[cam], camera_info(h, cam)))
            msgs.sort(key=lambda m: m[0])
            for ns, conn, data in msgs:
                w.write(conn, ns, data)
    except BaseException as e:
        # Interrupted (Ctrl-C) or failed: no half-written recording is left to be read as one.
        shutil.rmtree(a.out, ignore_errors=True)
        if isinstance(e, KeyboardInterrupt):
            print(f"world_to_bag.py: interrupted; {a.out} removed (no recording was written)",
                  file=sys.stderr)
            sys.exit(130)
        raise
    odometry = f", wheel odometry on {a.wheel_odometry}" if a.wheel_odometry else ""
    odometry += "" if info_conn else ", no camera_info"
    compressed = f", zstd per {a.compression}" if a.compression != "none" else ""
    print(f"{a.out}: {len(frames)} frames of {','.join(cameras)} ({a.transport}, {a.storage}"
          f"{compressed}, poses by {a.poses}{odometry})")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("world_to_bag.py: interrupted (no recording was written)", file=sys.stderr)
        sys.exit(130)
