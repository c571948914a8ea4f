//! The two body formats of the Kinesis API, `application/x-amz-json-1.1` and
//! `application/x-amz-cbor-1.1`, decoded into one value tree and encoded back in the
//! request's format. They differ only in blobs (base64 strings / byte strings) and
//! timestamps (epoch seconds with fractional milliseconds / epoch milliseconds).

use super::error::KinesisError;
use base64::Engine;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Cbor,
}

impl Format {
    /// CBOR when the request says so; JSON otherwise (as Kinesis answers any other type).
    pub fn of_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(ct) if ct.contains("cbor") => Format::Cbor,
            _ => Format::Json,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/x-amz-json-1.1",
            Format::Cbor => "application/x-amz-cbor-1.1",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    List(Vec<Value>),
    Map(Vec<(String, Value)>),
}

impl Value {
    /// A map from `(name, value)` pairs, leaving out absent (`Null`) members as AWS does.
    pub fn map<const N: usize>(fields: [(&str, Value); N]) -> Value {
        Value::Map(
            fields.into_iter().filter(|(_, v)| *v != Value::Null).map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    pub fn opt_str(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Null, |s| Value::Str(s.into()))
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "a byte string",
            Value::Timestamp(_) => "a timestamp",
            Value::List(_) => "a list",
            Value::Map(_) => "a structure",
        }
    }
}

/// Decodes a request body; an empty body is an empty structure.
pub fn decode(format: Format, body: &[u8]) -> Result<Value, KinesisError> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Value::Map(Vec::new()));
    }
    match format {
        Format::Json => serde_json::from_slice::<serde_json::Value>(body)
            .map(from_json)
            .map_err(|e| KinesisError::serialization(format!("The request body is not valid JSON: {e}"))),
        Format::Cbor => ciborium::de::from_reader::<ciborium::Value, _>(body)
            .map_err(|e| KinesisError::serialization(format!("The request body is not valid CBOR: {e}")))
            .and_then(from_cbor),
    }
}

fn from_json(v: serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i.into()),
            (_, Some(u)) => Value::Int(u.into()),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Str(s),
        J::Array(a) => Value::List(a.into_iter().map(from_json).collect()),
        J::Object(o) => Value::Map(o.into_iter().map(|(k, v)| (k, from_json(v))).collect()),
    }
}

fn from_cbor(v: ciborium::Value) -> Result<Value, KinesisError> {
    use ciborium::Value as C;
    Ok(match v {
        C::Null => Value::Null,
        C::Bool(b) => Value::Bool(b),
        C::Integer(i) => Value::Int(i.into()),
        C::Float(f) => Value::Float(f),
        C::Text(s) => Value::Str(s),
        C::Bytes(b) => Value::Bytes(b),
        C::Array(a) => Value::List(a.into_iter().map(from_cbor).collect::<Result<_, _>>()?),
        C::Map(m) => Value::Map(
            m.into_iter()
                .map(|(k, v)| match k {
                    C::Text(k) => Ok((k, from_cbor(v)?)),
                    _ => Err(KinesisError::serialization("CBOR map keys must be text strings")),
                })
                .collect::<Result<_, _>>()?,
        ),
        // Tag 1, epoch time: SDKs send seconds, some milliseconds; a value past year
        // 5138 as seconds is taken as milliseconds.
        C::Tag(1, inner) => match *inner {
            C::Integer(i) => {
                let i = i128::from(i);
                Value::Timestamp(if i.abs() > 100_000_000_000 { i as i64 } else { (i * 1000) as i64 })
            }
            C::Float(f) => Value::Timestamp((f * 1000.0).round() as i64),
            _ => return Err(KinesisError::serialization("CBOR tag 1 (epoch time) must hold a number")),
        },
        C::Tag(_, inner) => from_cbor(*inner)?,
        _ => return Err(KinesisError::serialization("unsupported CBOR value")),
    })
}

/// Encodes a response body in the request's format.
pub fn encode(format: Format, v: &Value) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec(&to_json(v)).expect("JSON values always encode"),
        Format::Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(&to_cbor(v), &mut out).expect("CBOR values always encode");
            out
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Null => J::Null,
        Value::Bool(b) => J::Bool(*b),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(i) => J::from(i),
            Err(_) => J::from(*i as f64),
        },
        Value::Float(f) => J::from(*f),
        Value::Str(s) => J::String(s.clone()),
        Value::Bytes(b) => J::String(base64::engine::general_purpose::STANDARD.encode(b)),
        Value::Timestamp(ms) => J::from(*ms as f64 / 1000.0),
        Value::List(l) => J::Array(l.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(m.iter().map(|(k, v)| (k.clone(), to_json(v))).collect()),
    }
}

fn to_cbor(v: &Value) -> ciborium::Value {
    use ciborium::Value as C;
    match v {
        Value::Null => C::Null,
        Value::Bool(b) => C::Bool(*b),
        Value::Int(i) => match i64::try_from(*i) {
            Ok(i) => C::Integer(i.into()),
            Err(_) => C::Float(*i as f64),
        },
        Value::Float(f) => C::Float(*f),
        Value::Str(s) => C::Text(s.clone()),
        Value::Bytes(b) => C::Bytes(b.clone()),
        Value::Timestamp(ms) => C::Integer((*ms).into()),
        Value::List(l) => C::Array(l.iter().map(to_cbor).collect()),
        Value::Map(m) => C::Map(m.iter().map(|(k, v)| (C::Text(k.clone()), to_cbor(v))).collect()),
    }
}

/// The members of one request structure, taken out by name with their types checked.
/// A member of the wrong type is a `SerializationException`, as in Kinesis; absent and
/// `null` members are `None`. Unknown members are ignored.
#[derive(Clone)]
pub struct Input {
    members: Vec<(String, Value)>,
    /// Where this structure sits in the request, for messages (`records.3.member`).
    path: String,
}

impl Input {
    pub fn new(v: Value) -> Result<Input, KinesisError> {
        Self::at(v, String::new())
    }

    fn at(v: Value, path: String) -> Result<Input, KinesisError> {
        match v {
            Value::Map(members) => Ok(Input { members, path }),
            other => Err(KinesisError::serialization(format!(
                "Expected a structure{}, found {}",
                if path.is_empty() { String::new() } else { format!(" at '{path}'") },
                other.type_name()
            ))),
        }
    }

    /// The camelCase name Kinesis uses for a member in validation messages.
    pub fn field(&self, name: &str) -> String {
        let mut c = name.chars();
        let camel = c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default();
        if self.path.is_empty() {
            camel
        } else {
            format!("{}.{camel}", self.path)
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let i = self.members.iter().position(|(k, _)| k == name)?;
        match self.members.swap_remove(i).1 {
            Value::Null => None,
            v => Some(v),
        }
    }

    fn wrong(&self, name: &str, expected: &str, got: &Value) -> KinesisError {
        KinesisError::serialization(format!(
            "Value at '{}' must be {expected}, not {}",
            self.field(name),
            got.type_name()
        ))
    }

    pub fn string(&mut self, name: &str) -> Result<Option<String>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong(name, "a string", &v)),
        }
    }

    pub fn int(&mut self, name: &str) -> Result<Option<i64>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Int(i)) => i64::try_from(i).map(Some).map_err(|_| {
                KinesisError::serialization(format!("Value at '{}' is out of range", self.field(name)))
            }),
            Some(v) => Err(self.wrong(name, "an integer", &v)),
        }
    }

    pub fn bool(&mut self, name: &str) -> Result<Option<bool>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.wrong(name, "a boolean", &v)),
        }
    }

    /// A blob: base64 text in JSON, a byte string in CBOR.
    pub fn blob(&mut self, name: &str) -> Result<Option<Vec<u8>>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Bytes(b)) => Ok(Some(b)),
            Some(Value::Str(s)) => {
                base64::engine::general_purpose::STANDARD.decode(s.as_bytes()).map(Some).map_err(|e| {
                    KinesisError::serialization(format!(
                        "Value at '{}' is not valid base64: {e}",
                        self.field(name)
                    ))
                })
            }
            Some(v) => Err(self.wrong(name, "a blob", &v)),
        }
    }

    /// A timestamp in milliseconds: epoch seconds (fractional) in JSON, epoch
    /// milliseconds in CBOR (or a tag-1 epoch time).
    pub fn timestamp(&mut self, name: &str, format: Format) -> Result<Option<i64>, KinesisError> {
        match (self.take(name), format) {
            (None, _) => Ok(None),
            (Some(Value::Timestamp(ms)), _) => Ok(Some(ms)),
            (Some(Value::Int(s)), Format::Json) => Ok(Some((s as i64).saturating_mul(1000))),
            (Some(Value::Float(s)), _) => Ok(Some((s * 1000.0).round() as i64)),
            (Some(Value::Int(ms)), Format::Cbor) => Ok(Some(ms as i64)),
            (Some(v), _) => Err(self.wrong(name, "a timestamp", &v)),
        }
    }

    /// A list of structures.
    pub fn structures(&mut self, name: &str) -> Result<Option<Vec<Input>>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::List(items)) => {
                let base = self.field(name);
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Input::at(v, format!("{base}.{}.member", i + 1)))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Some)
            }
            Some(v) => Err(self.wrong(name, "a list", &v)),
        }
    }

    pub fn strings(&mut self, name: &str) -> Result<Option<Vec<String>>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::List(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s),
                    v => Err(self.wrong(name, "a list of strings", &v)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(name, "a list", &v)),
        }
    }

    pub fn structure(&mut self, name: &str) -> Result<Option<Input>, KinesisError> {
        let path = self.field(name);
        self.take(name).map(|v| Input::at(v, path)).transpose()
    }

    /// A map of strings to strings (tags).
    pub fn string_map(&mut self, name: &str) -> Result<Option<Vec<(String, String)>>, KinesisError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::Map(m)) => m
                .into_iter()
                .map(|(k, v)| match v {
                    Value::Str(s) => Ok((k, s)),
                    v => Err(self.wrong(name, "a map of strings", &v)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(v) => Err(self.wrong(name, "a map", &v)),
        }
    }
}

/// Constraint violations collected over a whole request, reported together (up to 10)
/// in Kinesis' `ValidationException` wording.
#[derive(Default)]
pub struct Violations(Vec<String>);

impl Violations {
    fn add(&mut self, value: Option<&str>, field: &str, constraint: &str) {
        let value = match value {
            Some(v) => format!("'{v}'"),
            None => "null".to_string(),
        };
        self.0.push(format!("Value {value} at '{field}' failed to satisfy constraint: {constraint}"));
    }

    /// A required member: reports it when missing.
    pub fn required<T>(&mut self, field: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            self.add(None, field, "Member must not be null");
        }
        v
    }

    /// Length in characters within `[min, max]`.
    pub fn length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let n = value.chars().count();
        let shown: String = value.chars().take(256).collect();
        if n < min {
            self.add(Some(&shown), field, &format!("Member must have length greater than or equal to {min}"));
        }
        if n > max {
            self.add(Some(&shown), field, &format!("Member must have length less than or equal to {max}"));
        }
    }

    /// A blob's length in bytes within `[min, max]`.
    pub fn blob_length(&mut self, field: &str, value: &[u8], min: usize, max: usize) {
        let shown = format!("java.nio.HeapByteBuffer[pos=0 lim={0} cap={0}]", value.len());
        if value.len() < min {
            self.add(Some(&shown), field, &format!("Member must have length greater than or equal to {min}"));
        }
        if value.len() > max {
            self.add(Some(&shown), field, &format!("Member must have length less than or equal to {max}"));
        }
    }

    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min {
            self.add(
                Some(&value.to_string()),
                field,
                &format!("Member must have value greater than or equal to {min}"),
            );
        }
        if value > max {
            self.add(
                Some(&value.to_string()),
                field,
                &format!("Member must have value less than or equal to {max}"),
            );
        }
    }

    /// Matches `pattern` (shown in the message), checked by `ok`.
    pub fn pattern(&mut self, field: &str, value: &str, pattern: &str, ok: impl Fn(&str) -> bool) {
        if !ok(value) {
            self.add(
                Some(value),
                field,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            );
        }
    }

    pub fn one_of(&mut self, field: &str, value: &str, allowed: &[&str]) {
        if !allowed.contains(&value) {
            self.add(
                Some(value),
                field,
                &format!("Member must satisfy enum value set: [{}]", allowed.join(", ")),
            );
        }
    }

    pub fn list_length(&mut self, field: &str, n: usize, min: usize, max: usize) {
        if n < min || n > max {
            self.add(
                Some(&format!("{n} items")),
                field,
                &format!(
                    "Member must have length less than or equal to {max} and greater than or equal to {min}"
                ),
            );
        }
    }

    /// `Ok` when nothing was violated, else the `ValidationException` listing up to 10.
    pub fn finish(self) -> Result<(), KinesisError> {
        if self.0.is_empty() {
            return Ok(());
        }
        let n = self.0.len();
        let listed: Vec<&str> = self.0.iter().take(10).map(String::as_str).collect();
        Err(KinesisError::validation(format!(
            "{n} validation error{} detected: {}",
            if n == 1 { "" } else { "s" },
            listed.join("; ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_cbor_decode_to_the_same_tree_except_blobs_and_times() {
        let json = br#"{"StreamName":"s","Data":"aGk=","N":5,"Timestamp":1700000000.25}"#;
        let mut cbor = Vec::new();
        let c = ciborium::Value::Map(vec![
            (ciborium::Value::Text("StreamName".into()), ciborium::Value::Text("s".into())),
            (ciborium::Value::Text("Data".into()), ciborium::Value::Bytes(b"hi".to_vec())),
            (ciborium::Value::Text("N".into()), ciborium::Value::Integer(5.into())),
            (
                ciborium::Value::Text("Timestamp".into()),
                ciborium::Value::Integer(1_700_000_000_250i64.into()),
            ),
        ]);
        ciborium::ser::into_writer(&c, &mut cbor).unwrap();
        for (format, body) in [(Format::Json, &json[..]), (Format::Cbor, &cbor[..])] {
            let mut input = Input::new(decode(format, body).unwrap()).unwrap();
            assert_eq!(input.string("StreamName").unwrap().as_deref(), Some("s"));
            assert_eq!(input.blob("Data").unwrap().as_deref(), Some(&b"hi"[..]));
            assert_eq!(input.int("N").unwrap(), Some(5));
            assert_eq!(input.timestamp("Timestamp", format).unwrap(), Some(1_700_000_000_250));
            assert_eq!(input.string("Missing").unwrap(), None);
        }
    }

    #[test]
    fn responses_encode_blobs_and_times_per_format() {
        let v = Value::map([
            ("Data", Value::Bytes(b"hi".to_vec())),
            ("At", Value::Timestamp(1_500)),
            ("No", Value::Null),
        ]);
        let json: serde_json::Value = serde_json::from_slice(&encode(Format::Json, &v)).unwrap();
        assert_eq!(json, serde_json::json!({"Data": "aGk=", "At": 1.5}));
        let back: ciborium::Value = ciborium::de::from_reader(&encode(Format::Cbor, &v)[..]).unwrap();
        assert_eq!(
            back,
            ciborium::Value::Map(vec![
                (ciborium::Value::Text("Data".into()), ciborium::Value::Bytes(b"hi".to_vec())),
                (ciborium::Value::Text("At".into()), ciborium::Value::Integer(1_500.into())),
            ])
        );
    }

    #[test]
    fn wrong_types_and_bad_base64_are_serialization_errors() {
        let mut input =
            Input::new(decode(Format::Json, br#"{"ShardCount":"3","Data":"***"}"#).unwrap()).unwrap();
        assert_eq!(input.int("ShardCount").unwrap_err().kind, "SerializationException");
        assert_eq!(input.blob("Data").unwrap_err().kind, "SerializationException");
        assert_eq!(decode(Format::Json, b"{\"a\":").unwrap_err().kind, "SerializationException");
        assert_eq!(decode(Format::Cbor, &[0xff, 0x00]).unwrap_err().kind, "SerializationException");
        assert!(Input::new(decode(Format::Json, b"[1]").unwrap()).is_err());
        assert_eq!(decode(Format::Json, b"").unwrap(), Value::Map(vec![]));
    }

    #[test]
    fn violations_are_listed_together_in_kinesis_wording() {
        let mut v = Violations::default();
        v.required::<String>("streamName", None);
        v.range("shardCount", 0, 1, 100_000);
        assert_eq!(
            v.finish().unwrap_err().message,
            "2 validation errors detected: Value null at 'streamName' failed to satisfy constraint: Member must not be null; \
             Value '0' at 'shardCount' failed to satisfy constraint: Member must have value greater than or equal to 1"
        );
        let mut v = Violations::default();
        for i in 0..12 {
            v.length(&format!("f{i}"), "", 1, 2);
        }
        let msg = v.finish().unwrap_err().message;
        assert!(msg.starts_with("12 validation errors detected"), "{msg}");
        assert_eq!(msg.matches("Value ''").count(), 10);
        let mut list =
            Input::new(decode(Format::Json, br#"{"Records":[{"A":1},{"A":2}]}"#).unwrap()).unwrap();
        let items = list.structures("Records").unwrap().unwrap();
        assert_eq!(items[1].field("PartitionKey"), "records.2.member.partitionKey");
    }
}
