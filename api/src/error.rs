//! The one error type of the API. Every resolver returns it, so a database error
//! can only reach a client as `INTERNAL` with a generic sentence: its cause goes
//! to the log, never to the response.

use async_graphql::ErrorExtensions;

/// An error as a client sees it: a stable code and a sentence for humans.
///
/// It deliberately does not implement `Display`: async-graphql turns any
/// `Display` into an error message, and that is how internals leak.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    BadInput(String),
    /// A subscriber fell behind the event stream and missed events: it must
    /// subscribe again and read the current state.
    Lagged(String),
    Internal,
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "CONFLICT",
            ApiError::BadInput(_) => "BAD_USER_INPUT",
            ApiError::Lagged(_) => "LAGGED",
            ApiError::Internal => "INTERNAL",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::BadInput(m)
            | ApiError::Lagged(m) => m,
            ApiError::Internal => "internal error; the cause is in the API's log",
        }
    }

    /// The error as async-graphql carries it, with its code in `extensions`.
    pub fn into_graphql(self) -> async_graphql::Error {
        self.into()
    }

    /// Logs `cause` and returns the opaque `Internal` error.
    pub fn internal(cause: impl std::fmt::Debug) -> Self {
        tracing::error!(?cause, "internal error");
        ApiError::Internal
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::internal(err)
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(err: sea_orm::TransactionError<ApiError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(err) => err.into(),
            sea_orm::TransactionError::Transaction(err) => err,
        }
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        async_graphql::Error::new(err.message())
            .extend_with(|_, extensions| extensions.set("code", err.code()))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Most characters of a client's input that an error message quotes.
pub const QUOTE_CHARS: usize = 200;

/// `input` in backticks for an error message, cut to [`QUOTE_CHARS`]
/// characters: a message that quotes input stays a sentence, however large
/// the input.
pub fn quote(input: &str) -> String {
    match cut(input, QUOTE_CHARS) {
        Some(short) => format!("`{short}`"),
        None => format!("`{input}`"),
    }
}

/// `text` cut to `max` characters with a note of its length, or `None` when
/// it is no longer than that.
pub fn cut(text: &str, max: usize) -> Option<String> {
    let (end, _) = text.char_indices().nth(max)?;
    Some(format!("{}… ({} bytes in all)", &text[..end], text.len()))
}
