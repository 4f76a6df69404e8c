"""rclpy peer for the interop test: subscribes to sensor_msgs/Image on TOPIC_IN and answers each
image with a geometry_msgs/PoseWithCovarianceStamped on TOPIC_OUT that carries facts about the
image (so the Rust side can check the image arrived intact):
  header       copied from the image (frame_id and stamp)
  position     x = width, y = height, z = sum of the pixel bytes
  covariance   [0] = number of bytes, [35] = first byte
Exits after answering N images or after TIMEOUT seconds (exit code 3).

usage: rclpy_peer.py TOPIC_IN TOPIC_OUT N TIMEOUT
"""
import sys
import time

import rclpy
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import Image


def main():
    topic_in, topic_out, wanted, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    rclpy.init()
    node = rclpy.create_node("dasgil_rclpy_peer")
    pub = node.create_publisher(PoseWithCovarianceStamped, topic_out, 10)
    answered = []

    def on_image(msg):
        out = PoseWithCovarianceStamped()
        out.header = msg.header
        data = bytes(msg.data)
        out.pose.pose.position.x = float(msg.width)
        out.pose.pose.position.y = float(msg.height)
        out.pose.pose.position.z = float(sum(data))
        out.pose.pose.orientation.w = 1.0
        cov = [0.0] * 36
        cov[0] = float(len(data))
        cov[35] = float(data[0]) if data else -1.0
        out.pose.covariance = cov
        pub.publish(out)
        answered.append(msg.header.frame_id)

    node.create_subscription(Image, topic_in, on_image, 10)
    print("ready", flush=True)
    deadline = time.monotonic() + timeout
    while len(answered) < wanted and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    # Let the last answer leave before shutting down.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    node.destroy_node()
    rclpy.shutdown()
    sys.exit(0 if len(answered) >= wanted else 3)


if __name__ == "__main__":
    main()
