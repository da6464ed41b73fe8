//! Arbitrary bytes and strings fed to every parser and validator of the
//! core: none panics, and whatever one accepts keeps the rule it checks.

use std::str::FromStr;
use std::time::Duration;

use greenlight_core::{
    AnyJob, Error, ExecutionId, IdempotencyKey, Jitter, JobId, JobRecord, LearnerId, NewJob,
    PayloadLimits, RetryPolicy, Status, WorkerId, sanitize_error,
};
use proptest::prelude::*;
use serde_json::Value;

/// Any JSON value, nested a few levels, with strings that may hold NUL
/// characters and other control characters.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "\\PC*|[\\x00-\\x1f]{0,4}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,8}|\\x00", inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Whether any string or key in `value` holds a NUL character.
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(key, item)| key.contains('\0') || has_nul(item)),
        _ => false,
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// A refusal is always `InvalidInput` naming a field, never another kind.
fn refused_as_input<T>(result: Result<T, Error>) -> bool {
    match result {
        Ok(_) => false,
        Err(Error::InvalidInput { .. }) => true,
        Err(other) => panic!("expected invalid input, got {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_ids_accept_exactly_the_storable_texts(text in "\\PC{0,120}|.{0,3}\\x00.{0,3}") {
        let storable = |max: usize| !text.is_empty() && text.chars().count() <= max && !text.contains('\0');
        prop_assert_eq!(ExecutionId::new(text.clone()).is_ok(), storable(100));
        prop_assert_eq!(IdempotencyKey::new(text.clone()).is_ok(), storable(200));
        prop_assert_eq!(WorkerId::new(text.clone()).is_ok(), storable(200));
        prop_assert_eq!(ExecutionId::from_str(&text).is_ok(), storable(100));
    }

    #[test]
    fn uuid_ids_and_statuses_parse_or_refuse_without_panicking(text in "\\PC{0,40}") {
        if let Ok(id) = LearnerId::from_str(&text) {
            prop_assert_eq!(LearnerId::from_str(&id.to_string()).ok(), Some(id));
        }
        if let Ok(id) = JobId::from_str(&text) {
            prop_assert_eq!(JobId::from_str(&id.to_string()).ok(), Some(id));
        }
        if let Ok(status) = Status::from_str(&text) {
            prop_assert_eq!(status.as_str(), text.as_str());
        }
    }

    #[test]
    fn payload_checks_accept_only_storable_json(value in json(), max_bytes in 0usize..2_000, max_depth in 0usize..8) {
        let limits = PayloadLimits { max_bytes, max_depth };
        let size = serde_json::to_vec(&value).expect("any value serialises").len();
        let storable = !has_nul(&value) && depth(&value) <= max_depth && size <= max_bytes;
        let container = value.is_object() || value.is_array();
        prop_assert_eq!(!refused_as_input(limits.check_result(&value)), storable);
        prop_assert_eq!(!refused_as_input(limits.check_request(&value)), storable && container);
    }

    #[test]
    fn new_jobs_refuse_every_bad_field_with_invalid_input(
        payload in json(),
        max_retries in any::<i64>(),
        execution_id in proptest::option::of("\\PC{0,110}|\\x00"),
        key in proptest::option::of("\\PC{0,10}|\\x00"),
    ) {
        let mut builder = NewJob::builder(LearnerId::random(), payload.clone()).max_retries(max_retries);
        if let Some(id) = &execution_id {
            builder = builder.execution_id(id.clone());
        }
        if let Some(key) = &key {
            builder = builder.idempotency_key(key.clone());
        }
        let valid = PayloadLimits::default().check_request(&payload).is_ok()
            && (0..=100).contains(&max_retries)
            && execution_id.as_ref().is_none_or(|id| ExecutionId::new(id.clone()).is_ok())
            && key.as_ref().is_none_or(|key| IdempotencyKey::new(key.clone()).is_ok());
        match builder.build() {
            Ok(job) => {
                prop_assert!(valid, "accepted a job with a bad field");
                prop_assert_eq!(i64::from(job.max_retries()), max_retries);
                prop_assert_eq!(job.request_payload(), &payload);
            }
            refused => prop_assert!(refused_as_input(refused) && !valid),
        }
    }

    #[test]
    fn arbitrary_bytes_never_deserialise_into_an_impossible_job(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(job) = serde_json::from_slice::<AnyJob>(&bytes) {
            // Whatever parses is a job of one of the four states.
            prop_assert!(Status::ALL.contains(&job.status()));
        }
        if let Ok(record) = serde_json::from_slice::<JobRecord>(&bytes) {
            let _ = AnyJob::try_from(record);
        }
        let _ = std::str::from_utf8(&bytes).map(Status::from_str);
    }

    #[test]
    fn json_shaped_text_never_deserialises_into_an_impossible_job(value in json()) {
        let text = value.to_string();
        if let Ok(job) = serde_json::from_str::<AnyJob>(&text) {
            prop_assert!(Status::ALL.contains(&job.status()));
        }
    }

    #[test]
    fn retry_policies_are_built_or_refused_never_broken(
        base_ms in any::<u64>(),
        multiplier in any::<f64>(),
        cap_ms in any::<u64>(),
        jitter in any::<f64>(),
        failure in any::<u32>(),
    ) {
        let base = Duration::from_millis(base_ms);
        let cap = Duration::from_millis(cap_ms);
        match RetryPolicy::new(base, multiplier, cap, jitter) {
            Ok(policy) => {
                prop_assert!(policy.delay_before_jitter(failure) <= cap);
                let jittered = policy.delay(failure, Jitter::for_attempt(JobId::random(), failure));
                prop_assert!(jittered <= cap);
            }
            // Refused: a clear invalid input, never a panic.
            refused => prop_assert!(refused_as_input(refused)),
        }
    }

    #[test]
    fn error_messages_are_always_storable(message in "\\PC{0,64}|[\\x00\\s]{0,16}") {
        let stored = sanitize_error(&message);
        prop_assert!(!stored.contains('\0'));
        prop_assert!(!stored.trim().is_empty());
        prop_assert!(stored.chars().count() <= greenlight_core::MAX_ERROR_CHARS);
    }
}
