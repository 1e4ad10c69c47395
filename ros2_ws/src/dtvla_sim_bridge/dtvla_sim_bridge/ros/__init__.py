"""rclpy adapters around `dtvla_sim_bridge.sim`: the sim-bridge node and action-chunk message parsing."""
