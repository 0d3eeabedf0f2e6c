//! Unit tests of the IMAP source against a fake port.
