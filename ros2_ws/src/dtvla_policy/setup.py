"""ament_python package for the DeepThinkVLA policy (model runtime, inference engine, ROS node)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dtvla_policy"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        # Single sources live at the repository root; setup.py runs from this folder.
        (f"share/{PACKAGE}/launch", glob("../../../launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("../../../config/*.yaml") + glob("../../../config/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dtvla developers",
    maintainer_email="dev@dtvla.dev",
    description="DeepThinkVLA policy: hybrid-decoder runtime, inference engine and ROS 2 policy node.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "dtvla-tiny-checkpoint = dtvla_policy.model.tiny_checkpoint:main",
            "dtvla-infer = dtvla_policy.inference.cli:main",
            "policy_node = dtvla_policy.ros.policy_node:main",
            "dtvla-sim = dtvla_policy.ros.sim_launcher:main",
            "dtvla-foxglove = dtvla_policy.ros.foxglove_bridge:main",
            "dtvla-record = dtvla_policy.ros.recorder_node:main",
            "dtvla-replay = dtvla_policy.recording.replay_cli:main",
        ],
    },
)
