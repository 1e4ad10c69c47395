"""dtvla_sim_bridge: the LIBERO simulator wrapper (`sim/`, no ROS) and the ROS 2 sim-bridge node (`ros/`)."""
