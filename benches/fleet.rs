//! Placeholder; the fleet benchmark is being written.
fn main() {}
