//! The custom-handler wire format (functions-host.md): the request envelope the host sends and how it reads
//! the handler's answer. Pure data in, data out.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The version this simulator reports in `X-Azure-Functions-HostVersion` and `User-Agent`.
pub const HOST_VERSION: &str = "4.1044.100.0";

pub fn user_agent() -> String {
    format!("Azure-Functions-Host/{HOST_VERSION}")
}

/// `Metadata.sys`: `{MethodName, UtcNow, RandGuid}`.
pub fn sys_metadata(function: &str, now: OffsetDateTime, rand_guid: uuid::Uuid) -> Value {
    json!({"MethodName": function, "UtcNow": format_utc_now(now), "RandGuid": rand_guid.to_string()})
}

/// `{"Data": {binding: value}, "Metadata": {..., "sys": sys}}`.
pub fn envelope(
    binding_name: &str,
    value: Value,
    mut metadata: Map<String, Value>,
    sys: Value,
) -> Value {
    metadata.insert("sys".to_owned(), sys);
    let mut data = Map::new();
    // A plain string reaches the handler JSON-encoded a second time, as the real host does.
    let value = match value {
        Value::String(text) => Value::String(Value::String(text).to_string()),
        other => other,
    };
    data.insert(binding_name.to_owned(), value);
    json!({"Data": Value::Object(data), "Metadata": Value::Object(metadata)})
}

/// `ScheduleStatus` as the host's monitor keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduleStatus {
    pub last: OffsetDateTime,
    pub next: OffsetDateTime,
    pub last_updated: OffsetDateTime,
}

/// The timer trigger's value: `{"Schedule":{"AdjustForDST":true},"ScheduleStatus":...,"IsPastDue":...}`.
pub fn timer_value(status: Option<&ScheduleStatus>, is_past_due: bool) -> Value {
    let status = status.map_or(Value::Null, |status| {
        json!({
            "Last": format_datetime_offset(status.last),
            "Next": format_datetime_offset(status.next),
            "LastUpdated": format_datetime_offset(status.last_updated),
        })
    });
    json!({"Schedule": {"AdjustForDST": true}, "ScheduleStatus": status, "IsPastDue": is_past_due})
}

/// The Event Grid trigger's metadata: the event's `data`.
pub fn event_grid_metadata(event: &Value) -> Map<String, Value> {
    let mut metadata = Map::new();
    metadata.insert(
        "data".to_owned(),
        event.get("data").cloned().unwrap_or(Value::Null),
    );
    metadata
}

/// .NET `DateTime` round-trip with offset, e.g. `2026-01-04T10:15:00+00:00` (fractions only when present).
pub fn format_datetime_offset(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let base = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let fraction = at.nanosecond() / 100; // .NET ticks
    if fraction == 0 {
        format!("{base}+00:00")
    } else {
        format!("{base}.{fraction:07}+00:00")
    }
}

fn format_utc_now(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// What the handler's answer means to the host.
#[derive(Debug, Clone, PartialEq)]
pub enum HandlerAnswer {
    Succeeded {
        logs: Vec<String>,
        outputs: Map<String, Value>,
        return_value: Option<Value>,
    },
    /// Non-2xx: body and Logs are discarded.
    Failed { status: u16 },
    /// 2xx with an empty body: the host waits until `functionTimeout`.
    EmptyBody,
    /// 2xx whose body is not a JSON object.
    Unreadable { reason: String },
}

pub fn read_answer(status: u16, body: &[u8]) -> HandlerAnswer {
    if !(200..300).contains(&status) {
        return HandlerAnswer::Failed { status };
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return HandlerAnswer::EmptyBody;
    }
    let object = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => object,
        Ok(other) => {
            return HandlerAnswer::Unreadable {
                reason: format!("expected a JSON object, got {other}"),
            };
        }
        Err(error) => {
            return HandlerAnswer::Unreadable {
                reason: format!("invalid JSON: {error}"),
            };
        }
    };
    let mut logs = Vec::new();
    let mut outputs = Map::new();
    let mut return_value = None;
    for (key, value) in object {
        if key.eq_ignore_ascii_case("Logs") {
            match value {
                Value::Array(items) => logs.extend(items.into_iter().map(|item| match item {
                    Value::String(text) => text,
                    other => other.to_string(),
                })),
                Value::String(text) => logs.push(text),
                _ => {}
            }
        } else if key.eq_ignore_ascii_case("Outputs") {
            if let Value::Object(map) = value {
                outputs = map;
            }
        } else if key.eq_ignore_ascii_case("ReturnValue") {
            return_value = Some(value);
        }
    }
    HandlerAnswer::Succeeded {
        logs,
        outputs,
        return_value,
    }
}

/// A W3C `traceparent` with fresh ids.
pub fn traceparent(trace_id: u128, span_id: u64) -> String {
    format!("00-{trace_id:032x}-{span_id:016x}-01")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn timer_envelope_matches_the_documented_example() {
        let status = ScheduleStatus {
            last: datetime!(2026-01-04 10:15:00 UTC),
            next: datetime!(2026-01-04 10:20:00 UTC),
            last_updated: datetime!(2026-01-04 10:16:00 UTC),
        };
        let sys = sys_metadata(
            "VerifyAttachments",
            datetime!(2026-01-04 10:20:00.004 UTC),
            uuid::Uuid::nil(),
        );
        let body = envelope("timer", timer_value(Some(&status), false), Map::new(), sys);
        let expected: Value = serde_json::from_str(r#"{"Data":{"timer":{"Schedule":{"AdjustForDST":true},"ScheduleStatus":{"Last":"2026-01-04T10:15:00+00:00","Next":"2026-01-04T10:20:00+00:00","LastUpdated":"2026-01-04T10:16:00+00:00"},"IsPastDue":false}},"Metadata":{"sys":{"MethodName":"VerifyAttachments","UtcNow":"2026-01-04T10:20:00.004Z","RandGuid":"00000000-0000-0000-0000-000000000000"}}}"#).unwrap();
        assert_eq!(body, expected);
    }

    #[test]
    fn strings_are_encoded_twice() {
        let body = envelope("event", Value::String("x".into()), Map::new(), Value::Null);
        assert_eq!(body["Data"]["event"], Value::String("\"x\"".into()));
    }

    #[test]
    fn answers_are_read_case_insensitively() {
        let answer = read_answer(
            200,
            br#"{"logs":["a", "b"], "outputs": {"x": 1}, "returnvalue": 3}"#,
        );
        assert_eq!(
            answer,
            HandlerAnswer::Succeeded {
                logs: vec!["a".into(), "b".into()],
                outputs: serde_json::from_str(r#"{"x":1}"#).unwrap(),
                return_value: Some(Value::from(3))
            }
        );
        assert_eq!(read_answer(204, b""), HandlerAnswer::EmptyBody);
        assert_eq!(
            read_answer(500, br#"{"Logs":["lost"]}"#),
            HandlerAnswer::Failed { status: 500 }
        );
        assert!(matches!(
            read_answer(200, b"[1]"),
            HandlerAnswer::Unreadable { .. }
        ));
        assert!(matches!(
            read_answer(200, b"{}"),
            HandlerAnswer::Succeeded { .. }
        ));
    }

    #[test]
    fn datetime_formats() {
        assert_eq!(
            format_datetime_offset(datetime!(2026-01-04 10:15:00.5 UTC)),
            "2026-01-04T10:15:00.5000000+00:00"
        );
        assert_eq!(
            traceparent(1, 2),
            "00-00000000000000000000000000000001-0000000000000002-01"
        );
    }
}
