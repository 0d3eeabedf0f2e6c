//! The Calendar source: Google Calendar's sync recipe (calendar-api.md §9) as a
//! [`crate::source::SyncSource`] over the [`port::CalendarApi`] port.

pub mod port;
