//! Placeholder: see ARCHITECTURE.md.
fn main() {}
