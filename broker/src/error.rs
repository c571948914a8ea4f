//! Errors a client sees. Each kind carries the Kinesis exception name a Kinesis user
//! would recognise and maps onto one gRPC status code.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ErrorKind {
    /// A field breaks a size, range or pattern rule (Kinesis `ValidationException`).
    Validation,
    /// A well-formed request that cannot be honoured as asked.
    InvalidArgument,
    ResourceNotFound,
    ResourceInUse,
    LimitExceeded,
    ProvisionedThroughputExceeded,
    ExpiredIterator,
    /// No leader is known yet or a peer is unreachable: safe to retry.
    Unavailable,
    Internal,
}

impl ErrorKind {
    /// The Kinesis exception name.
    pub fn kinesis_type(self) -> &'static str {
        match self {
            ErrorKind::Validation => "ValidationException",
            ErrorKind::InvalidArgument => "InvalidArgumentException",
            ErrorKind::ResourceNotFound => "ResourceNotFoundException",
            ErrorKind::ResourceInUse => "ResourceInUseException",
            ErrorKind::LimitExceeded => "LimitExceededException",
            ErrorKind::ProvisionedThroughputExceeded => "ProvisionedThroughputExceededException",
            ErrorKind::ExpiredIterator => "ExpiredIteratorException",
            ErrorKind::Unavailable => "ServiceUnavailableException",
            ErrorKind::Internal => "InternalFailureException",
        }
    }

    fn code(self) -> tonic::Code {
        match self {
            ErrorKind::Validation | ErrorKind::InvalidArgument => tonic::Code::InvalidArgument,
            ErrorKind::ResourceNotFound => tonic::Code::NotFound,
            ErrorKind::ResourceInUse => tonic::Code::FailedPrecondition,
            ErrorKind::LimitExceeded | ErrorKind::ProvisionedThroughputExceeded => {
                tonic::Code::ResourceExhausted
            }
            ErrorKind::ExpiredIterator => tonic::Code::FailedPrecondition,
            ErrorKind::Unavailable => tonic::Code::Unavailable,
            ErrorKind::Internal => tonic::Code::Internal,
        }
    }

    fn from_kinesis_type(name: &str) -> Option<Self> {
        use ErrorKind::*;
        [
            Validation,
            InvalidArgument,
            ResourceNotFound,
            ResourceInUse,
            LimitExceeded,
            ProvisionedThroughputExceeded,
            ExpiredIterator,
            Unavailable,
            Internal,
        ]
        .into_iter()
        .find(|k| k.kinesis_type() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    /// Set when the request must be retried elsewhere (AlreadyExists has no Kinesis
    /// exception of its own: Kinesis answers ResourceInUseException).
    pub already_exists: bool,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The gRPC metadata key carrying the Kinesis exception name.
pub const ERROR_TYPE_HEADER: &str = "x-freshet-error-type";

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), already_exists: false }
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Validation, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceNotFound, message)
    }
    pub fn in_use(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceInUse, message)
    }
    pub fn already_exists(message: impl Into<String>) -> Self {
        Error { already_exists: true, ..Self::new(ErrorKind::ResourceInUse, message) }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn stream_not_found(stream: &str) -> Self {
        Self::not_found(format!("Stream {stream} under account {} not found.", crate::ACCOUNT_ID))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.kinesis_type(), self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        let code = if e.already_exists { tonic::Code::AlreadyExists } else { e.kind.code() };
        let mut status = tonic::Status::new(code, e.message);
        if let Ok(v) = e.kind.kinesis_type().parse() {
            status.metadata_mut().insert(ERROR_TYPE_HEADER, v);
        }
        status
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        let kind = s
            .metadata()
            .get(ERROR_TYPE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(ErrorKind::from_kinesis_type)
            .unwrap_or(match s.code() {
                tonic::Code::InvalidArgument => ErrorKind::InvalidArgument,
                tonic::Code::NotFound => ErrorKind::ResourceNotFound,
                tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => ErrorKind::Unavailable,
                tonic::Code::ResourceExhausted => ErrorKind::LimitExceeded,
                _ => ErrorKind::Internal,
            });
        Error {
            kind,
            message: s.message().to_string(),
            already_exists: s.code() == tonic::Code::AlreadyExists,
        }
    }
}
