"""Launch the DASGIL node with config/localize.yaml.

    ros2 launch dasgil localize.launch.py map:=/path/to/cmu_slice.map.safetensors
    ros2 launch dasgil localize.launch.py map:=... config:=/path/to/my.yaml image_topic:=/cam0/image_raw
    ros2 launch dasgil localize.launch.py map:=... image_topics:=/cam0/image_raw,/cam1/image_raw \
        camera_ids:=c0,c1 transport:=compressed log_level:=warn
    ros2 launch dasgil localize.launch.py map:=... filter:=sequence odometry_topic:=/odom
    ros2 launch dasgil localize.launch.py map:=... off_map_threshold:=1
    ros2 launch dasgil localize.launch.py map:=... centring:=none
    ros2 launch dasgil localize.launch.py map:=... prior_topic:=/gnss/pose gate_radius:=10 gate_sigmas:=4
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def _node(context):
    params = [LaunchConfiguration("config").perform(context)]
    # Launch arguments left empty keep the YAML's values.
    overrides = {}
    map_file = LaunchConfiguration("map").perform(context)
    if map_file:
        overrides["map"] = map_file
    checkpoint = LaunchConfiguration("checkpoint").perform(context)
    if checkpoint:
        overrides["checkpoint"] = checkpoint
    image_topic = LaunchConfiguration("image_topic").perform(context)
    if image_topic:
        overrides["image_topics"] = [image_topic]
    # Comma-separated lists (a launch argument is a string); a YAML-style list in brackets
    # (`camera_ids:=[c0,c1]`, `['c0', 'c1']`) is read as the same list.
    for name in ("image_topics", "camera_ids"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value.startswith("[") and value.endswith("]"):
            value = value[1:-1]
        if value:
            items = [v.strip().strip("'\"").strip() for v in value.split(",")]
            overrides[name] = [v for v in items if v]
    for name in ("transport", "filter", "odometry_topic", "prior_topic", "centring"):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    # Numbers (the node checks their ranges and names the parameter).
    for name, expected in (
        ("off_map_threshold", "a number from 0 to 1 (1: never)"),
        ("gate_radius", "metres > 0"),
        ("gate_sigmas", "standard deviations from 0 to 100"),
    ):
        value = LaunchConfiguration(name).perform(context)
        if value:
            try:
                overrides[name] = float(value)
            except ValueError:
                raise RuntimeError(f"launch argument {name}: expected {expected}, found {value!r}") from None
    if overrides:
        params.append(overrides)
    return [
        Node(
            package="dasgil",
            executable="dasgil_node",
            name="dasgil_localizer",
            output="screen",
            parameters=params,
            arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level").perform(context)],
        )
    ]


def generate_launch_description():
    default_config = os.path.join(get_package_share_directory("dasgil"), "config", "localize.yaml")
    return LaunchDescription(
        [
            DeclareLaunchArgument("config", default_value=default_config, description="node parameters (YAML)"),
            DeclareLaunchArgument("map", default_value="", description="descriptor map (dasgil-tools build-map); overrides the YAML"),
            DeclareLaunchArgument("checkpoint", default_value="", description="generator checkpoint; overrides the YAML"),
            DeclareLaunchArgument("image_topic", default_value="", description="one camera topic; overrides image_topics"),
            DeclareLaunchArgument("image_topics", default_value="", description="camera topics, comma-separated; overrides image_topics"),
            DeclareLaunchArgument("camera_ids", default_value="", description="map camera of each topic, comma-separated (e.g. c0,c1)"),
            DeclareLaunchArgument("transport", default_value="", description="raw or compressed; overrides the YAML"),
            DeclareLaunchArgument("filter", default_value="", description="none or sequence; overrides the YAML"),
            DeclareLaunchArgument("odometry_topic", default_value="", description="nav_msgs/Odometry topic for filter sequence; overrides the YAML"),
            DeclareLaunchArgument(
                "centring",
                default_value="",
                description="auto, running or none (descriptors centred by the map's and each camera's recent frames' means; running needs metric cosine and a map not built with --compress, auto centres where the map allows it); overrides the YAML",
            ),
            DeclareLaunchArgument(
                "off_map_threshold",
                default_value="",
                description="with filter sequence: withhold priors while the probability of being off the map is at least this (1: never); overrides the YAML",
            ),
            DeclareLaunchArgument(
                "prior_topic",
                default_value="",
                description="geometry_msgs/PoseWithCovarianceStamped in the map frame (e.g. GNSS) that gates the search; overrides the YAML",
            ),
            DeclareLaunchArgument(
                "gate_radius", default_value="", description="the gate's radius for a prior without a covariance (m); overrides the YAML"
            ),
            DeclareLaunchArgument(
                "gate_sigmas",
                default_value="",
                description="standard deviations of the prior's covariance the gate adds to gate_radius; overrides the YAML",
            ),
            DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
            OpaqueFunction(function=_node),
        ]
    )
