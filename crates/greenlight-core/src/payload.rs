//! Checks on the JSON a job carries.

use serde_json::Value;

use crate::Error;

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
