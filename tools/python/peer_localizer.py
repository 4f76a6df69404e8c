"""A peer of dasgil_node for benchmarks (benches/node_latency.rs): the same job written the
usual way, rclpy + PyTorch eager. It subscribes to sensor_msgs/Image topics (sensor-data QoS),
resizes each frame bicubically to the model's input, normalises it, runs the generator's encoder
up to the map's deepest descriptor layer, scales and concatenates the layers as the map does,
finds the top-K map entries of the topic's camera by L1 (torch.cdist) and publishes the best
entry's pose as geometry_msgs/PoseWithCovarianceStamped on `pose_prior` with the frame's stamp.

    python peer_localizer.py --map M --checkpoint C --topics /cam0/image_raw,/cam1/image_raw \
        --cameras c0,c1 [--threads 2]
"""
import argparse
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dasgil_torch import load_dasgil_checkpoint  # noqa: E402

import rclpy  # noqa: E402
from geometry_msgs.msg import PoseWithCovarianceStamped  # noqa: E402
from rclpy.qos import qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--map", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--topics", required=True)
    p.add_argument("--cameras", required=True)
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    net, h, w = load_dasgil_checkpoint(a.checkpoint)

    with safe_open(a.map, "pt") as f:
        meta = json.loads(f.metadata()["dasgil.map"])
        desc = f.get_tensor("descriptors").float()
        poses = f.get_tensor("poses").numpy()
    layers = meta["encoder"]["layers"]  # [[layer, weight], ...]
    deepest = max(int(layer) for layer, _ in layers)
    rows = {}
    for i, cam in enumerate(meta["cameras"]):
        rows.setdefault(cam, []).append(i)
    by_camera = {c: (torch.tensor(r), desc[r]) for c, r in rows.items()}

    rclpy.init()
    node = rclpy.create_node("peer_localizer")
    pub = node.create_publisher(PoseWithCovarianceStamped, "pose_prior", 10)

    def handler(camera):
        idx, d = by_camera[camera]

        def on_image(msg):
            img = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)[:, : msg.width * 3]
            x = torch.from_numpy(img.reshape(msg.height, msg.width, 3).copy()).permute(2, 0, 1)
            x = x.float().unsqueeze(0) / 255.0
            x = F.interpolate(x, size=(h, w), mode="bicubic", align_corners=False)
            x = (x - 0.5) / 0.5
            with torch.no_grad():
                feats = net.encode(x, deepest)
                q = torch.cat(
                    [feats[int(layer) - 1].reshape(1, -1) * (float(wt) / feats[int(layer) - 1].numel())
                     for layer, wt in layers], 1)
                dist = torch.cdist(q, d, p=1)[0]
                best = torch.topk(dist, min(a.top_k, len(dist)), largest=False).indices
            pose = poses[int(idx[best[0]])]
            out = PoseWithCovarianceStamped()
            out.header.stamp = msg.header.stamp
            out.header.frame_id = "map"
            out.pose.pose.position.x, out.pose.pose.position.y, out.pose.pose.position.z = map(float, pose[:3])
            (out.pose.pose.orientation.w, out.pose.pose.orientation.x,
             out.pose.pose.orientation.y, out.pose.pose.orientation.z) = map(float, pose[3:])
            out.pose.covariance = [1.0 if i % 7 == 0 else 0.0 for i in range(36)]
            pub.publish(out)

        return on_image

    for topic, cam in zip(a.topics.split(","), a.cameras.split(",")):
        node.create_subscription(Image, topic, handler(cam), qos_profile_sensor_data)
    node.get_logger().info("peer localizer ready")
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
