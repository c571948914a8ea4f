//! Errors as Kinesis sends them: `{"__type", "message"}`, 400 for the client's mistakes,
//! 500 for ours, 503 for "retry shortly".

use super::wire::{encode, Format, Value};
use crate::error::{Error, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KinesisError {
    pub status: u16,
    pub kind: &'static str,
    pub message: String,
}

impl KinesisError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        KinesisError { status, kind, message: message.into() }
    }
    pub fn serialization(message: impl Into<String>) -> Self {
        Self::new(400, "SerializationException", message)
    }
    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "ValidationException", message)
    }
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(400, "InvalidArgumentException", message)
    }
    pub fn unknown_operation(message: impl Into<String>) -> Self {
        Self::new(400, "UnknownOperationException", message)
    }

    pub fn body(&self, format: Format) -> Vec<u8> {
        encode(
            format,
            &Value::map([("__type", Value::str(self.kind)), ("message", Value::str(&self.message))]),
        )
    }
}

impl From<Error> for KinesisError {
    fn from(e: Error) -> Self {
        let status = match e.kind {
            ErrorKind::Internal => 500,
            ErrorKind::Unavailable => 503,
            _ => 400,
        };
        KinesisError::new(status, e.kind.kinesis_type(), e.message)
    }
}

impl From<tonic::Status> for KinesisError {
    fn from(s: tonic::Status) -> Self {
        Error::from(s).into()
    }
}
