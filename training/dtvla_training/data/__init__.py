"""CoT-annotated robot data in the LeRobot v2.1 layout: reading, chunking, augmentation, norm stats."""
