//! mailsync: library.
