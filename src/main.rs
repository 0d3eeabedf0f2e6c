//! mailsync binary.
fn main() {}
