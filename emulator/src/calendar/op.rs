//! The routed Calendar v3 operation ([`Op`]): what `calendar::route` resolves a request to.

#[derive(Debug, Clone)]
pub enum Op {
    CalendarList,
    EventsList(String),
    EventsGet(String, String),
    EventsWatch(String),
    EventsInsert(String),
    EventsPatch(String, String),
    EventsDelete(String, String),
    ChannelsStop,
}
