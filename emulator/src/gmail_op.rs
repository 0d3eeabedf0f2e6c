//! The routed Gmail v1 operation ([`Op`], with [`ThreadAction`] for thread writes): what
//! `gmail::route` resolves a request to.

/// What a thread-level write does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThreadAction {
    Modify,
    Trash,
    Untrash,
    Delete,
}

/// A routed Gmail operation.
#[derive(Debug, Clone)]
pub enum Op {
    Profile(String),
    LabelsList(String),
    LabelsGet(String, String),
    LabelsCreate(String),
    LabelsPatch(String, String, bool),
    LabelsDelete(String, String),
    MessagesList(String),
    ThreadsList(String),
    ThreadsGet(String, String),
    ThreadsModify(String, String, ThreadAction),
    MessagesGet(String, String),
    AttachmentsGet(String, String, String),
    Modify(String, String),
    Trash(String, String),
    Untrash(String, String),
    Delete(String, String),
    BatchModify(String),
    HistoryList(String),
    Watch(String),
    Stop(String),
}
