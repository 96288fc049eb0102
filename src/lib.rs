//! goflow facade (filled in below).
