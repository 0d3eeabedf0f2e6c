//! The control socket: line-delimited JSON requests and replies over a Unix socket.
