"""ament_python package for the LIBERO simulator wrapper, the ROS 2 sim bridge and the eval harness."""

from setuptools import find_packages, setup

PACKAGE = "dtvla_sim_bridge"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="dtvla developers",
    maintainer_email="dev@dtvla.dev",
    description="LIBERO simulator wrapper, ROS 2 sim bridge and evaluation harness.",
    license="MIT",
    entry_points={
        "console_scripts": [
            "sim_bridge_node = dtvla_sim_bridge.ros.sim_bridge_node:main",
            "dtvla-eval = dtvla_sim_bridge.eval.cli:main",
            "dtvla-expert-eval = dtvla_sim_bridge.eval.expert_eval:main",
        ],
    },
)
