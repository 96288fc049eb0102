//! Procedural macros of goflow. Use them through the `goflow` crate.
