//! Port implementations other than Google's: the test provider that drives the actor tree in
//! integration tests (and lets an admin try the daemon without any account).

pub mod test_provider;
