//! mailsync-emulator: Google API emulator.
