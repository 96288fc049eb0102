//! The goflow runtime. Use it through the `goflow` crate.
