//! The JSON a job carries, and the checks on it.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::Error;

/// A JSON document that a job's copies share instead of copying.
///
/// Every transition of a job hands back a new value, and stores and
/// workers keep copies of the job they hold; with the request payload
/// behind an [`Arc`], those copies cost a reference count, not a walk of
/// the whole document. It reads as the [`Value`] it holds (through
/// [`Deref`]), compares equal to one, and serialises exactly as one.
///
/// ```
/// use greenlight_core::Payload;
/// use serde_json::json;
///
/// let payload = Payload::from(json!({"language": "python", "code": "print(1)"}));
/// let copy = payload.clone(); // no copy of the document
/// assert_eq!(copy["language"], "python");
/// assert_eq!(copy, json!({"language": "python", "code": "print(1)"}));
/// assert_eq!(serde_json::to_string(&copy)?, r#"{"code":"print(1)","language":"python"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(Arc<Value>);

impl Payload {
    /// The document.
    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The document, copied only if another job still shares it.
    pub fn into_value(self) -> Value {
        Arc::unwrap_or_clone(self.0)
    }
}

impl Deref for Payload {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.0
    }
}

impl AsRef<Value> for Payload {
    fn as_ref(&self) -> &Value {
        &self.0
    }
}

impl From<Value> for Payload {
    fn from(value: Value) -> Self {
        Self(Arc::new(value))
    }
}

impl From<Payload> for Value {
    fn from(payload: Payload) -> Self {
        payload.into_value()
    }
}

impl PartialEq<Value> for Payload {
    fn eq(&self, other: &Value) -> bool {
        *self.0 == *other
    }
}

impl PartialEq<Payload> for Value {
    fn eq(&self, other: &Payload) -> bool {
        *self == *other.0
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As the document itself: the sharing is an implementation detail.
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl Serialize for Payload {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Payload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(Self::from)
    }
}

/// Bounds on the JSON a job carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadLimits {
    /// The largest payload accepted, in bytes of compact JSON.
    /// Default: 1 MiB, far above a code submission and small enough that a
    /// claim of a hundred jobs stays a modest read.
    pub max_bytes: usize,
    /// The deepest nesting of arrays and objects accepted. Default: 64,
    /// deep enough for any real request and shallow enough that recursive
    /// code reading the payload cannot overflow its stack.
    pub max_depth: usize,
}

impl Default for PayloadLimits {
    fn default() -> Self {
        Self { max_bytes: 1024 * 1024, max_depth: 64 }
    }
}

impl PayloadLimits {
    /// Checks a request payload: it must be a JSON object or array, within
    /// the limits, with no NUL character in any string or key (PostgreSQL's
    /// `jsonb` refuses `\u0000`).
    ///
    /// ```
    /// use greenlight_core::PayloadLimits;
    /// use serde_json::json;
    ///
    /// let limits = PayloadLimits::default();
    /// assert!(limits.check_request(&json!({"language": "python"})).is_ok());
    /// assert!(limits.check_request(&json!("just a string")).is_err());
    /// ```
    pub fn check_request(&self, payload: &Value) -> Result<(), Error> {
        const FIELD: &str = "request_payload";
        if !(payload.is_object() || payload.is_array()) {
            return Err(Error::invalid(FIELD, "must be a JSON object or array"));
        }
        self.check(FIELD, payload)
    }

    /// Checks a result: any JSON value, within the limits, with no NUL
    /// character in any string or key.
    pub fn check_result(&self, result: &Value) -> Result<(), Error> {
        self.check("result_payload", result)
    }

    fn check(&self, field: &'static str, value: &Value) -> Result<(), Error> {
        check_tree(field, value, 0, self.max_depth)?;
        // Depth is checked first, so serialising cannot recurse without
        // bound. Serialising into a counting sink costs no allocation.
        let mut counter = ByteCounter(0);
        serde_json::to_writer(&mut counter, value)
            .map_err(|error| Error::invalid(field, format!("cannot be serialised: {error}")))?;
        if counter.0 > self.max_bytes {
            return Err(Error::invalid(
                field,
                format!("is {} bytes, at most {} allowed", counter.0, self.max_bytes),
            ));
        }
        Ok(())
    }
}

fn check_tree(field: &'static str, value: &Value, depth: usize, max: usize) -> Result<(), Error> {
    match value {
        Value::Array(items) => {
            if depth >= max {
                return Err(too_deep(field, max));
            }
            items.iter().try_for_each(|item| check_tree(field, item, depth + 1, max))
        }
        Value::Object(map) => {
            if depth >= max {
                return Err(too_deep(field, max));
            }
            map.iter().try_for_each(|(key, item)| {
                if key.contains('\0') {
                    return Err(nul(field));
                }
                check_tree(field, item, depth + 1, max)
            })
        }
        Value::String(text) if text.contains('\0') => Err(nul(field)),
        _ => Ok(()),
    }
}

fn too_deep(field: &'static str, max: usize) -> Error {
    Error::invalid(field, format!("nests deeper than {max} levels"))
}

fn nul(field: &'static str) -> Error {
    Error::invalid(field, "must not contain a NUL character (\\u0000)")
}

struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The longest error message kept, in characters. Executors hand over
/// whatever they caught (a stderr tail, a panic message); the queue keeps
/// the start, which names the problem, and drops the rest.
pub const MAX_ERROR_CHARS: usize = 8 * 1024;

/// Makes an error message storable: NUL characters, which PostgreSQL
/// refuses in text, are dropped, the text is cut to [`MAX_ERROR_CHARS`], and
/// an empty message becomes "unknown error" (a failed job always says why).
pub fn sanitize_error(message: &str) -> String {
    let text: String = message.chars().filter(|&c| c != '\0').take(MAX_ERROR_CHARS).collect();
    if text.trim().is_empty() { "unknown error".to_owned() } else { text }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_payload_reads_compares_and_serialises_as_its_value() {
        let value = json!({"code": "print(1)", "tests": [1, 2]});
        let payload = Payload::from(value.clone());
        let copy = payload.clone();

        assert!(Arc::ptr_eq(&payload.0, &copy.0), "a copy shares the document");
        assert_eq!(payload, value);
        assert_eq!(value, payload);
        assert_eq!(payload.as_value(), &value);
        assert_eq!(AsRef::<Value>::as_ref(&payload), &value);
        assert_eq!(payload["tests"][1], 2);
        assert_eq!(format!("{payload:?}"), format!("{value:?}"));
        assert_eq!(payload.to_string(), value.to_string());

        let text = serde_json::to_string(&payload).expect("serialise");
        assert_eq!(text, serde_json::to_string(&value).expect("serialise"));
        let back: Payload = serde_json::from_str(&text).expect("deserialise");
        assert_eq!(back, payload);

        // Taking the value out copies only while another job shares it.
        assert_eq!(Value::from(copy), value);
        assert_eq!(payload.into_value(), value);
    }
}
