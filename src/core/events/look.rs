//! The cheap look at an event that classification needs: the envelope's scalar fields and the five `data`
//! fields it reads, borrowed from the delivered JSON value. Nothing is copied and `claims`, `authorization`,
//! `httpRequest` or a notification's resource body are never touched, so an irrelevant event (the bulk of the
//! traffic) costs a few map look-ups and the metadata strings.
//!
//! The look is taken only where it reads exactly what the typed models ([`EventGridEvent`], [`CloudEvent`],
//! the payloads) would: an element that is not a plain event object with string-typed envelope fields goes the
//! full way ([`parse_trigger`] then [`classify`]), so rejections and their wording are the typed ones.
//! `tests/core_events_fixtures.rs` checks over random and published events that both ways agree.

use std::borrow::Cow;

#[allow(clippy::wildcard_imports)]
use super::*;

static NULL: Value = Value::Null;

/// What classification reads from one event, whichever way it arrived.
pub(super) struct Look<'a> {
    pub(super) schema: EventSchema,
    pub(super) id: &'a str,
    pub(super) event_type: &'a str,
    pub(super) subject: Option<&'a str>,
    /// `topic` (Event Grid) or `source` (CloudEvents).
    pub(super) source: Option<&'a str>,
    pub(super) time: Option<&'a str>,
    pub(super) data: Data<'a>,
}

/// How `data` is read.
#[derive(Clone, Copy)]
pub(super) enum Data<'a> {
    /// Through the typed payload models: the reference reading.
    Typed(&'a Value),
    /// Straight from the JSON object; any other shape is read the typed way.
    Borrowed(&'a Value),
}

/// The fields of a Resource Write/Delete `data` that classification reads (as the lenient models read them:
/// a field of another JSON type is absent).
pub(super) struct ResourceFields<'a> {
    pub(super) tenant_id: Option<Cow<'a, str>>,
    pub(super) subscription_id: Option<Cow<'a, str>>,
    pub(super) correlation_id: Option<Cow<'a, str>>,
    pub(super) operation_name: Option<Cow<'a, str>>,
    pub(super) resource_uri: Option<Cow<'a, str>>,
}

impl<'a> Data<'a> {
    /// `data` as a Resource Write/Delete payload; `None` when it does not read as one (not an object).
    pub(super) fn resource(self) -> Option<ResourceFields<'a>> {
        match self {
            Self::Borrowed(Value::Object(map)) => {
                let text = |key: &str| map.get(key).and_then(Value::as_str).map(Cow::Borrowed);
                Some(ResourceFields {
                    tenant_id: text("tenantId"),
                    subscription_id: text("subscriptionId"),
                    correlation_id: text("correlationId"),
                    operation_name: text("operationName"),
                    resource_uri: text("resourceUri"),
                })
            }
            Self::Borrowed(value) | Self::Typed(value) => {
                // Both data types have the same fields; the write type reads either.
                let data = ResourceWriteSuccessEventData::deserialize(value).ok()?;
                Some(ResourceFields {
                    tenant_id: data.tenant_id.map(Cow::Owned),
                    subscription_id: data.subscription_id.map(Cow::Owned),
                    correlation_id: data.correlation_id.map(Cow::Owned),
                    operation_name: data.operation_name.map(Cow::Owned),
                    resource_uri: data.resource_uri.map(Cow::Owned),
                })
            }
        }
    }

    /// `data.resourceInfo.id` of a Resource Notifications event (only that is ever read: rule 1 of issue 10);
    /// `Err` when `data` does not read as the payload.
    pub(super) fn notification_id(self, deleted: bool) -> Result<Option<Cow<'a, str>>, ()> {
        match self {
            Self::Borrowed(value @ Value::Object(map)) => match map.get("resourceInfo") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(info)) => {
                    Ok(info.get("id").and_then(Value::as_str).map(Cow::Borrowed))
                }
                // A resource body in another shape: whatever the typed models make of it.
                Some(_) => Self::Typed(value).notification_id(deleted),
            },
            Self::Borrowed(value) | Self::Typed(value) => {
                let id = if deleted {
                    ResourceNotificationsResourceDeletedEventData::deserialize(value)
                        .map_err(drop)?
                        .resource_info
                        .and_then(|i| i.id)
                } else {
                    ResourceNotificationsResourceUpdatedEventData::deserialize(value)
                        .map_err(drop)?
                        .resource_info
                        .and_then(|i| i.id)
                };
                Ok(id.map(Cow::Owned))
            }
        }
    }
}

impl IncomingEvent {
    /// The look at a parsed event: the reference reading of `data`.
    pub(super) fn look(&self) -> Look<'_> {
        Look {
            schema: self.schema(),
            id: self.id(),
            event_type: self.event_type(),
            subject: self.subject(),
            source: self.source(),
            time: self.time_raw(),
            data: Data::Typed(self.data()),
        }
    }
}

/// An optional envelope field as the typed models accept it: absent or `null` is `None`, a string is itself,
/// anything else makes the typed envelope fail (`Err`).
fn optional<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Result<Option<&'a str>, ()> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(()),
    }
}

fn required<'a>(map: &'a serde_json::Map<String, Value>, key: &str) -> Result<&'a str, ()> {
    map.get(key).and_then(Value::as_str).ok_or(())
}

impl<'a> Look<'a> {
    /// The look at an event object whose envelope the typed models would read without error; `None` for
    /// anything else (a string, another JSON type, a field of the wrong type, an unknown schema, a CloudEvents
    /// version other than 1.0): those go the full way.
    pub(super) fn from_value(item: &'a Value) -> Option<Self> {
        let Value::Object(map) = item else {
            return None;
        };
        let data = Data::Borrowed(map.get("data").unwrap_or(&NULL));
        let look = if let Some(version) = map.get("specversion") {
            if version.as_str().map(str::trim) != Some("1.0") {
                return None;
            }
            for key in ["dataschema", "datacontenttype"] {
                optional(map, key).ok()?;
            }
            Look {
                schema: EventSchema::CloudEvents,
                id: required(map, "id").ok()?,
                event_type: required(map, "type").ok()?,
                subject: optional(map, "subject").ok()?,
                source: optional(map, "source").ok()?,
                time: optional(map, "time").ok()?,
                data,
            }
        } else if map.contains_key("eventType") {
            for key in ["dataVersion", "metadataVersion"] {
                optional(map, key).ok()?;
            }
            Look {
                schema: EventSchema::EventGrid,
                id: required(map, "id").ok()?,
                event_type: required(map, "eventType").ok()?,
                subject: optional(map, "subject").ok()?,
                source: optional(map, "topic").ok()?,
                time: optional(map, "eventTime").ok()?,
                data,
            }
        } else {
            return None;
        };
        Some(look)
    }
}

/// [`parse_trigger`] and [`classify`] in one pass, with the same results: each plain event object is
/// classified from a borrowed look (nothing copied); any other element goes the full way.
pub fn classify_trigger(
    value: &Value,
) -> Result<Vec<Result<ClassifiedEvent, EventRejection>>, EventRejection> {
    let decoded = decode_strings(value)?;
    let one = |index: usize, item: &Value| match Look::from_value(item) {
        Some(look) => Ok(classify_look(&look)),
        None => parse_element(index, item).map(|event| classify(&event)),
    };
    match decoded.as_ref() {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, item)| one(i, item))
            .collect()),
        Value::Object(_) => Ok(vec![one(0, decoded.as_ref())]),
        other => Err(EventRejection::NotAnEventOrArray {
            found: json_kind(other),
        }),
    }
}

/// The subscription of an event's resource id, as `parse_event_resource_id(raw)` would give it
/// (`id.subscription_id()`), without building the id: an ignored event (the bulk) takes its subscription from
/// its `topic`/`source` this way, and building the id was most of the cost of ignoring it.
pub(super) fn event_subscription_id(raw: &str) -> Option<&str> {
    // The id's segments as `parse_event_resource_id` cleans them, then `ResourceId::parse`'s rules: trailing
    // empty segments dropped, one leading `/`, `subscriptions/{id}` first, no empty segment.
    let segments = || raw.split('/').map(str::trim);
    let kept = segments()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .last()?
        .0
        + 1;
    let mut it = segments().take(kept);
    let mut first = it.next()?;
    if first.is_empty() {
        first = it.next()?;
    }
    if !first.eq_ignore_ascii_case("subscriptions") {
        return None;
    }
    let subscription = it.next().filter(|s| !s.is_empty())?;
    if it.any(str::is_empty) {
        return None;
    }
    Some(subscription)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_subscription_id_reads_as_the_parsed_id() {
        let cases = [
            "",
            "/",
            "//",
            " ",
            "/subscriptions",
            "/subscriptions/",
            "/subscriptions/s1",
            "subscriptions/s1",
            "/subscriptions/s1/",
            "/subscriptions/s1//",
            "/Subscriptions/S1/resourceGroups/rg",
            " /subscriptions / s1 / resourceGroups/rg ",
            "/subscriptions/ /rg",
            "/subscriptions//rg",
            "//subscriptions/s1",
            "/subscriptions/s1/resourceGroups//x",
            "/subscriptions/s1/resourceGroups/ r g /x/",
            "/providers/Microsoft.Management/managementGroups/mg",
            "/subscriptionsX/s1",
            "/subscriptions/{subscription-id}/resourceGroups/{resource-group}/providers/Microsoft.Storage/storageAccounts/{name}",
            "\t/subscriptions/s1\n",
            "/subscriptions/s1/ / ",
            "/subscriptions/s1/x/ /",
        ];
        for raw in cases {
            let reference = parse_event_resource_id(raw);
            assert_eq!(
                event_subscription_id(raw),
                reference.as_ref().map(ResourceId::subscription_id),
                "{raw:?}"
            );
        }
    }
}
