"""Recorded runs: rosbag2 MCAP bags written from raw messages, read back, replayed against a checkpoint (no rclpy)."""
