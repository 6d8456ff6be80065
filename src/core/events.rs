//! Event Grid and CloudEvents payloads as the Functions host hands them over, and their classification into
//! the few things this project acts on. Pure: no I/O, no clock.
//!
//! # Parsing ([`parse_trigger`])
//! The trigger value is an object, an array, or a string holding either (the host JSON-encodes plain strings a
//! second time). Each element is an Event Grid schema event or a CloudEvents 1.0 event (recognised by
//! `specversion`). The result is one `Result` per element, so one malformed element never sinks the others;
//! only a trigger value that is unusable as a whole (not JSON, not an object or array) is a single error.
//!
//! # Classification ([`classify`])
//! Branches on the event TYPE (compared case-insensitively), never on `data.status`, then on
//! `data.operationName` (case-insensitive). Everything that is not a cluster or registry write/delete is
//! [`Classification::Ignored`] with an [`IgnoreReason`] whose [`IgnoreReason::as_str`] doubles as a metric label.
//!
//! # One pass ([`classify_trigger`])
//! What the handler calls: the same results as [`parse_trigger`] then [`classify`], but each plain event object
//! is read from a borrowed look (`look.rs`: the envelope's scalar fields and five `data` fields), so an
//! irrelevant event (the bulk of the traffic) is never copied; anything unusual goes the full way. A property
//! test (`tests/core_events_fixtures.rs`) holds both ways equal.
//!
//! # Resource ids
//! Ids are cleaned before [`ResourceId::parse`]: whitespace around every `/`-separated segment is removed
//! (Microsoft's published Resource Notifications sample carries `"{subscription-id} /resourceGroups"`).
//! Whitespace INSIDE a segment is kept, so a genuinely odd id still fails to parse rather than being rewritten
//! into another resource's id. No segment of a subscription, resource group, cluster or registry id can
//! legitimately begin or end with whitespace, so trimming cannot merge two distinct resources.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::core::model::{ArmKind, ResourceId, is_guid};

/// The suffix of a Tags API resource (`PUT {resource}/providers/Microsoft.Resources/tags/default`).
pub const TAGS_SUFFIX: &str = "/providers/Microsoft.Resources/tags/default";

const CLUSTER_TYPE: &str = "microsoft.containerservice/managedclusters";
const REGISTRY_TYPE: &str = "microsoft.containerregistry/registries";

/// How many string layers of JSON encoding are unwrapped: one from the host, one more for safety (a value that
/// went through two string-encoding hops). Deeper nesting is not a real delivery shape.
const MAX_STRING_DECODES: usize = 2;

mod look;
mod payloads;

use look::Look;
pub use look::classify_trigger;
pub use payloads::*;

// ---------------------------------------------------------------------------------------------------------
// Envelopes
// ---------------------------------------------------------------------------------------------------------

/// An event in the Event Grid schema (`Azure.Messaging.EventGrid.EventGridEvent`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventGridEvent {
    pub id: String,
    #[serde(default)]
    pub topic: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    pub event_type: String,
    /// Kept as sent: the host may re-format it; see [`EventMetadata::event_time`] for the parsed value.
    #[serde(default)]
    pub event_time: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub data_version: Option<String>,
    #[serde(default)]
    pub metadata_version: Option<String>,
}

/// A CloudEvents 1.0 event (`Azure.Messaging.CloudEvent`), structured mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CloudEvent {
    pub specversion: String,
    pub id: String,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub time: Option<String>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub data: Value,
    #[serde(default)]
    pub dataschema: Option<String>,
    #[serde(default)]
    pub datacontenttype: Option<String>,
}

/// Which envelope an event arrived in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventSchema {
    EventGrid,
    CloudEvents,
}

impl EventSchema {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EventGrid => "event_grid",
            Self::CloudEvents => "cloud_events",
        }
    }
}

/// One parsed event, in whichever envelope it came.
#[derive(Clone, Debug, PartialEq)]
pub enum IncomingEvent {
    EventGrid(EventGridEvent),
    Cloud(CloudEvent),
}

impl IncomingEvent {
    pub fn schema(&self) -> EventSchema {
        match self {
            Self::EventGrid(_) => EventSchema::EventGrid,
            Self::Cloud(_) => EventSchema::CloudEvents,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Self::EventGrid(e) => &e.id,
            Self::Cloud(e) => &e.id,
        }
    }

    pub fn event_type(&self) -> &str {
        match self {
            Self::EventGrid(e) => &e.event_type,
            Self::Cloud(e) => &e.event_type,
        }
    }

    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::EventGrid(e) => e.subject.as_deref(),
            Self::Cloud(e) => e.subject.as_deref(),
        }
    }

    /// `topic` (Event Grid) or `source` (CloudEvents).
    pub fn source(&self) -> Option<&str> {
        match self {
            Self::EventGrid(e) => e.topic.as_deref(),
            Self::Cloud(e) => e.source.as_deref(),
        }
    }

    /// `eventTime` / `time` as sent.
    pub fn time_raw(&self) -> Option<&str> {
        match self {
            Self::EventGrid(e) => e.event_time.as_deref(),
            Self::Cloud(e) => e.time.as_deref(),
        }
    }

    pub fn data(&self) -> &Value {
        match self {
            Self::EventGrid(e) => &e.data,
            Self::Cloud(e) => &e.data,
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Parsing the trigger value
// ---------------------------------------------------------------------------------------------------------

/// Why (part of) a trigger value could not be read as an event. Answered with success and recorded: retrying
/// cannot help. [`EventRejection::as_str`] is the metric label.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventRejection {
    #[error("trigger value is a string that does not hold JSON: {detail}")]
    NotJson { detail: String },
    #[error("trigger value is a {found}, expected an event object or an array of events")]
    NotAnEventOrArray { found: &'static str },
    #[error("trigger value is JSON-encoded more than {MAX_STRING_DECODES} times")]
    TooDeeplyEncoded,
    #[error("event #{index}: is a {found}, expected an object")]
    NotAnObject { index: usize, found: &'static str },
    #[error(
        "event #{index}: has neither `eventType` (Event Grid schema) nor `specversion` (CloudEvents)"
    )]
    UnknownSchema { index: usize },
    #[error("event #{index}: unsupported CloudEvents specversion `{version}` (expected 1.0)")]
    UnsupportedSpecVersion { index: usize, version: String },
    #[error("event #{index}: invalid {schema} envelope: {detail}")]
    InvalidEnvelope {
        index: usize,
        schema: &'static str,
        detail: String,
    },
}

impl EventRejection {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "not_json",
            Self::NotAnEventOrArray { .. } => "not_an_event",
            Self::TooDeeplyEncoded => "too_deeply_encoded",
            Self::NotAnObject { .. } => "not_an_object",
            Self::UnknownSchema { .. } => "unknown_schema",
            Self::UnsupportedSpecVersion { .. } => "unsupported_specversion",
            Self::InvalidEnvelope { .. } => "invalid_envelope",
        }
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Unwraps string layers of JSON encoding (at most [`MAX_STRING_DECODES`]).
fn decode_strings(value: &Value) -> Result<std::borrow::Cow<'_, Value>, EventRejection> {
    let mut current = std::borrow::Cow::Borrowed(value);
    let mut decodes = 0;
    while let Value::String(text) = current.as_ref() {
        if decodes == MAX_STRING_DECODES {
            return Err(EventRejection::TooDeeplyEncoded);
        }
        let parsed: Value = serde_json::from_str(text).map_err(|e| EventRejection::NotJson {
            // serde's message names the line/column and the kind of problem, never the payload itself.
            detail: e.to_string(),
        })?;
        current = std::borrow::Cow::Owned(parsed);
        decodes += 1;
    }
    Ok(current)
}

/// Reads the Functions host's trigger value: an object or array, possibly a string holding JSON. The outer
/// `Err` means the value as a whole is unusable; otherwise there is one entry per event, in delivery order.
pub fn parse_trigger(
    value: &Value,
) -> Result<Vec<Result<IncomingEvent, EventRejection>>, EventRejection> {
    let decoded = decode_strings(value)?;
    match decoded.as_ref() {
        Value::Array(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_element(index, item))
            .collect()),
        Value::Object(_) => Ok(vec![parse_element(0, decoded.as_ref())]),
        other => Err(EventRejection::NotAnEventOrArray {
            found: json_kind(other),
        }),
    }
}

fn parse_element(index: usize, item: &Value) -> Result<IncomingEvent, EventRejection> {
    // An element may itself be a JSON string (a batch of individually encoded events).
    let decoded = match item {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => std::borrow::Cow::Owned(v),
            Err(_) => {
                return Err(EventRejection::NotAnObject {
                    index,
                    found: "string",
                });
            }
        },
        _ => std::borrow::Cow::Borrowed(item),
    };
    let Value::Object(map) = decoded.as_ref() else {
        return Err(EventRejection::NotAnObject {
            index,
            found: json_kind(decoded.as_ref()),
        });
    };
    if let Some(version) = map.get("specversion") {
        let version_text = match version {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if version_text.trim() != "1.0" {
            return Err(EventRejection::UnsupportedSpecVersion {
                index,
                version: truncate(&version_text, 32),
            });
        }
        return CloudEvent::deserialize(decoded.as_ref())
            .map(IncomingEvent::Cloud)
            .map_err(|e| EventRejection::InvalidEnvelope {
                index,
                schema: "CloudEvents",
                detail: e.to_string(),
            });
    }
    if map.contains_key("eventType") {
        return EventGridEvent::deserialize(decoded.as_ref())
            .map(IncomingEvent::EventGrid)
            .map_err(|e| EventRejection::InvalidEnvelope {
                index,
                schema: "Event Grid",
                detail: e.to_string(),
            });
    }
    Err(EventRejection::UnknownSchema { index })
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Classification
// ---------------------------------------------------------------------------------------------------------

/// What an event means for this project.
#[derive(Clone, Debug, PartialEq)]
pub enum Classification {
    /// A cluster was created or updated (incl. its tags). Whatever the schema, the event names the resource and
    /// nothing more: a Resource Notifications body is never handed on (its identity, state and tags could be
    /// forged or stale); the engine reads the cluster from ARM.
    ClusterWrite {
        cluster: ResourceId,
    },
    ClusterDelete {
        cluster: ResourceId,
    },
    /// A registry was created or updated, or its tags changed.
    RegistryWrite {
        registry: ResourceId,
    },
    RegistryDelete {
        registry: ResourceId,
    },
    Ignored {
        reason: IgnoreReason,
    },
}

impl Classification {
    /// A short label for logs and metrics: `cluster_write`, …, or the ignore reason.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ClusterWrite { .. } => "cluster_write",
            Self::ClusterDelete { .. } => "cluster_delete",
            Self::RegistryWrite { .. } => "registry_write",
            Self::RegistryDelete { .. } => "registry_delete",
            Self::Ignored { reason } => reason.as_str(),
        }
    }
}

/// Why an event needs no work. Every variant is a metric label ([`IgnoreReason::as_str`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// `Microsoft.EventGrid.SubscriptionValidationEvent` (answered by the host, not by us).
    SubscriptionValidation,
    /// `…Failure` / `…Cancel` resource event types: nothing changed.
    OperationNotSucceeded,
    /// `Microsoft.Resources.ResourceActionSuccess` (POST actions such as listKeys).
    ResourceAction,
    /// A role assignment write or delete: often our own; must never loop back into work.
    RoleAssignment,
    /// `Microsoft.Resources/deployments/*`: the deployed resources raise their own events.
    Deployment,
    /// A child of a cluster or registry (agent pools, replications, …): does not change who may pull.
    ChildResource,
    /// Any other resource type (storage accounts, the node resource group, …).
    OtherResourceType,
    /// An event type this project does not subscribe to.
    UnsupportedEventType,
    /// The operation's verb does not fit the event type (e.g. a `/write` operation in a delete event).
    OperationMismatch,
    /// The operation names one resource type and `resourceUri` another.
    ResourceUriMismatch,
    /// `data` lacks `operationName` or `resourceUri`/`resourceInfo.id`, or `data` is not an object.
    MalformedData,
    /// `resourceUri` is not an ARM resource id, or not one in the exact shape of a cluster or registry id
    /// (`/subscriptions/{guid}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`): nested providers, a
    /// subscription-level path and extra segments are all refused.
    InvalidResourceId,
}

impl IgnoreReason {
    pub const ALL: [Self; 12] = [
        Self::SubscriptionValidation,
        Self::OperationNotSucceeded,
        Self::ResourceAction,
        Self::RoleAssignment,
        Self::Deployment,
        Self::ChildResource,
        Self::OtherResourceType,
        Self::UnsupportedEventType,
        Self::OperationMismatch,
        Self::ResourceUriMismatch,
        Self::MalformedData,
        Self::InvalidResourceId,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SubscriptionValidation => "subscription_validation",
            Self::OperationNotSucceeded => "operation_not_succeeded",
            Self::ResourceAction => "resource_action",
            Self::RoleAssignment => "role_assignment",
            Self::Deployment => "deployment",
            Self::ChildResource => "child_resource",
            Self::OtherResourceType => "other_resource_type",
            Self::UnsupportedEventType => "unsupported_event_type",
            Self::OperationMismatch => "operation_mismatch",
            Self::ResourceUriMismatch => "resource_uri_mismatch",
            Self::MalformedData => "malformed_data",
            Self::InvalidResourceId => "invalid_resource_id",
        }
    }
}

impl fmt::Display for IgnoreReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the handler logs and measures about an event, whatever its class.
#[derive(Clone, Debug, PartialEq)]
pub struct EventMetadata {
    pub id: String,
    pub event_type: String,
    pub schema: EventSchema,
    /// `eventTime`/`time` when it parses as RFC 3339.
    pub event_time: Option<OffsetDateTime>,
    pub subject: Option<String>,
    pub subscription_id: Option<String>,
    pub tenant_id: Option<String>,
    pub correlation_id: Option<String>,
    pub operation_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClassifiedEvent {
    pub metadata: EventMetadata,
    pub classification: Classification,
}

/// The event types this project distinguishes, matched case-insensitively.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KnownType {
    WriteSuccess,
    DeleteSuccess,
    ActionSuccess,
    NotSucceeded,
    Validation,
    NotificationUpserted,
    NotificationDeleted,
    Other,
}

fn known_type(event_type: &str) -> KnownType {
    const RESOURCE_EVENT: &str = "microsoft.resources.resource";
    let t = event_type.trim();
    let is = |name: &str| t.eq_ignore_ascii_case(name);
    if let Some(rest) = t
        .get(..RESOURCE_EVENT.len())
        .filter(|head| head.eq_ignore_ascii_case(RESOURCE_EVENT))
        .map(|_| &t[RESOURCE_EVENT.len()..])
    {
        let is = |name: &str| rest.eq_ignore_ascii_case(name);
        return if is("writesuccess") {
            KnownType::WriteSuccess
        } else if is("deletesuccess") {
            KnownType::DeleteSuccess
        } else if is("actionsuccess") {
            KnownType::ActionSuccess
        } else if [
            "writefailure",
            "writecancel",
            "deletefailure",
            "deletecancel",
            "actionfailure",
            "actioncancel",
        ]
        .into_iter()
        .any(is)
        {
            KnownType::NotSucceeded
        } else {
            KnownType::Other
        };
    }
    if is("microsoft.eventgrid.subscriptionvalidationevent") {
        KnownType::Validation
    } else if is("microsoft.resourcenotifications.resources.createdorupdated") {
        KnownType::NotificationUpserted
    } else if is("microsoft.resourcenotifications.resources.deleted") {
        KnownType::NotificationDeleted
    } else {
        KnownType::Other
    }
}

/// Removes whitespace around each `/`-separated segment (see the module doc), then parses.
pub fn parse_event_resource_id(raw: &str) -> Option<ResourceId> {
    if raw
        .split('/')
        .all(|segment| segment.trim().len() == segment.len())
    {
        // Nothing to clean (the usual case): no copy.
        return ResourceId::parse(raw).ok();
    }
    let cleaned: Vec<&str> = raw.split('/').map(str::trim).collect();
    ResourceId::parse(&cleaned.join("/")).ok()
}

/// RFC 3339; failing that, an ISO 8601 date-time without offset read as UTC (what .NET writes for a
/// `DateTime` of unspecified kind when the host re-serialises `eventTime`).
pub fn parse_event_time(raw: &str) -> Option<OffsetDateTime> {
    let raw = raw.trim();
    if let Ok(t) = OffsetDateTime::parse(raw, &Rfc3339) {
        return Some(t);
    }
    let without_offset = format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    PrimitiveDateTime::parse(raw, &without_offset)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn parse_time(raw: Option<&str>) -> Option<OffsetDateTime> {
    parse_event_time(raw?)
}

/// Classifies one event and extracts its metadata. Never fails: anything not actionable is `Ignored`.
/// [`classify_trigger`] gives the same results for a whole trigger value without copying the events.
pub fn classify(event: &IncomingEvent) -> ClassifiedEvent {
    classify_look(&event.look())
}

fn classify_look(event: &Look<'_>) -> ClassifiedEvent {
    let kind = known_type(event.event_type);
    let mut metadata = EventMetadata {
        id: event.id.to_owned(),
        event_type: event.event_type.to_owned(),
        schema: event.schema,
        event_time: parse_time(event.time),
        subject: event.subject.map(str::to_owned),
        subscription_id: None,
        tenant_id: None,
        correlation_id: None,
        operation_name: None,
    };
    let classification = match kind {
        KnownType::Validation => ignored(IgnoreReason::SubscriptionValidation),
        KnownType::NotSucceeded => ignored(IgnoreReason::OperationNotSucceeded),
        KnownType::ActionSuccess => ignored(IgnoreReason::ResourceAction),
        KnownType::Other => ignored(IgnoreReason::UnsupportedEventType),
        KnownType::WriteSuccess | KnownType::DeleteSuccess => {
            classify_resource_event(event, kind == KnownType::DeleteSuccess, &mut metadata)
        }
        KnownType::NotificationUpserted | KnownType::NotificationDeleted => {
            classify_notification(event, kind == KnownType::NotificationDeleted)
        }
    };
    // Resource events carry the subscription; otherwise take it from the resource id or the source.
    if metadata.subscription_id.is_none() {
        metadata.subscription_id = match &classification {
            Classification::ClusterWrite { cluster: id, .. }
            | Classification::ClusterDelete { cluster: id }
            | Classification::RegistryWrite { registry: id, .. }
            | Classification::RegistryDelete { registry: id } => {
                Some(id.subscription_id().to_owned())
            }
            Classification::Ignored { .. } => event
                .source
                .and_then(look::event_subscription_id)
                .map(str::to_owned),
        };
    }
    ClassifiedEvent {
        metadata,
        classification,
    }
}

fn ignored(reason: IgnoreReason) -> Classification {
    Classification::Ignored { reason }
}

/// The text trimmed, unless that leaves nothing.
fn non_empty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|s| !s.is_empty())
}

fn classify_resource_event(
    event: &Look<'_>,
    is_delete: bool,
    metadata: &mut EventMetadata,
) -> Classification {
    let Some(data) = event.data.resource() else {
        return ignored(IgnoreReason::MalformedData);
    };
    let owned =
        |field: &Option<std::borrow::Cow<'_, str>>| non_empty(field.as_deref()).map(str::to_owned);
    metadata.subscription_id = owned(&data.subscription_id);
    metadata.tenant_id = owned(&data.tenant_id);
    metadata.correlation_id = owned(&data.correlation_id);
    metadata.operation_name = owned(&data.operation_name);
    let Some(operation) = metadata
        .operation_name
        .as_deref()
        .map(str::to_ascii_lowercase)
    else {
        return ignored(IgnoreReason::MalformedData);
    };
    let Some(uri) = non_empty(data.resource_uri.as_deref()).or_else(|| non_empty(event.subject))
    else {
        return ignored(IgnoreReason::MalformedData);
    };
    let Some((operation_type, verb)) = operation.rsplit_once('/') else {
        return ignored(IgnoreReason::MalformedData);
    };
    let expected_verb = if is_delete { "delete" } else { "write" };

    if operation_type == "microsoft.resources/tags" {
        // Tags API: PUT/PATCH writes and DELETE removes all tags; either way the tagged resource still exists
        // and its tags changed, so both are a write of the target.
        if verb != "write" && verb != "delete" {
            return ignored(IgnoreReason::OperationMismatch);
        }
        let target = strip_tags_suffix(uri);
        let Some(id) = parse_event_resource_id(target) else {
            return ignored(IgnoreReason::InvalidResourceId);
        };
        return match id.resource_type().as_deref() {
            Some(CLUSTER_TYPE) => exact(id, ArmKind::ManagedCluster)
                .map_or_else(invalid_id, |cluster| Classification::ClusterWrite {
                    cluster,
                }),
            Some(REGISTRY_TYPE) => exact(id, ArmKind::Registry)
                .map_or_else(invalid_id, |registry| Classification::RegistryWrite {
                    registry,
                }),
            _ => ignored(IgnoreReason::OtherResourceType),
        };
    }
    if operation_type.starts_with("microsoft.authorization/roleassignments") {
        return ignored(IgnoreReason::RoleAssignment);
    }
    if operation_type.starts_with("microsoft.resources/deployments") {
        return ignored(IgnoreReason::Deployment);
    }
    let is_cluster = operation_type == CLUSTER_TYPE;
    let is_registry = operation_type == REGISTRY_TYPE;
    if !is_cluster && !is_registry {
        let child = [CLUSTER_TYPE, REGISTRY_TYPE].iter().any(|t| {
            operation_type
                .strip_prefix(t)
                .is_some_and(|rest| rest.starts_with('/'))
        });
        return ignored(if child {
            IgnoreReason::ChildResource
        } else {
            IgnoreReason::OtherResourceType
        });
    }
    if verb != expected_verb {
        return ignored(IgnoreReason::OperationMismatch);
    }
    let Some(id) = parse_event_resource_id(uri) else {
        return ignored(IgnoreReason::InvalidResourceId);
    };
    if id.resource_type().as_deref() != Some(operation_type) {
        return ignored(IgnoreReason::ResourceUriMismatch);
    }
    let kind = if is_cluster {
        ArmKind::ManagedCluster
    } else {
        ArmKind::Registry
    };
    let Some(id) = exact(id, kind) else {
        return ignored(IgnoreReason::InvalidResourceId);
    };
    match (is_cluster, is_delete) {
        (true, false) => Classification::ClusterWrite { cluster: id },
        (true, true) => Classification::ClusterDelete { cluster: id },
        (false, false) => Classification::RegistryWrite { registry: id },
        (false, true) => Classification::RegistryDelete { registry: id },
    }
}

/// `uri` without a trailing Tags API suffix (compared case-insensitively).
pub fn strip_tags_suffix(uri: &str) -> &str {
    let trimmed = uri.trim().trim_end_matches('/');
    let suffix_len = TAGS_SUFFIX.len();
    if trimmed.len() >= suffix_len
        && trimmed.is_char_boundary(trimmed.len() - suffix_len)
        && trimmed[trimmed.len() - suffix_len..].eq_ignore_ascii_case(TAGS_SUFFIX)
    {
        &trimmed[..trimmed.len() - suffix_len]
    } else {
        trimmed
    }
}

fn classify_notification(event: &Look<'_>, is_delete: bool) -> Classification {
    // Only `resourceInfo.id` is read: the body's properties and tags are never used (rule 1 of issue 10).
    let Ok(raw_id) = event.data.notification_id(is_delete) else {
        return ignored(IgnoreReason::MalformedData);
    };
    let Some(raw_id) = non_empty(raw_id.as_deref()).or_else(|| non_empty(event.subject)) else {
        return ignored(IgnoreReason::MalformedData);
    };
    let Some(id) = parse_event_resource_id(raw_id) else {
        return ignored(IgnoreReason::InvalidResourceId);
    };
    let kind = match id.resource_type().as_deref() {
        Some(CLUSTER_TYPE) => ArmKind::ManagedCluster,
        Some(REGISTRY_TYPE) => ArmKind::Registry,
        Some(t) if t.starts_with("microsoft.authorization/roleassignments") => {
            return ignored(IgnoreReason::RoleAssignment);
        }
        Some(t)
            if [CLUSTER_TYPE, REGISTRY_TYPE]
                .iter()
                .any(|p| t.strip_prefix(p).is_some_and(|rest| rest.starts_with('/'))) =>
        {
            return ignored(IgnoreReason::ChildResource);
        }
        _ => return ignored(IgnoreReason::OtherResourceType),
    };
    let Some(id) = exact(id, kind) else {
        return ignored(IgnoreReason::InvalidResourceId);
    };
    match (kind, is_delete) {
        (ArmKind::ManagedCluster, false) => Classification::ClusterWrite { cluster: id },
        (ArmKind::ManagedCluster, true) => Classification::ClusterDelete { cluster: id },
        (ArmKind::Registry, false) => Classification::RegistryWrite { registry: id },
        (ArmKind::Registry, true) => Classification::RegistryDelete { registry: id },
    }
}

/// `id` when it is in the exact ARM shape of `kind` with a GUID subscription; `None` otherwise.
fn exact(id: ResourceId, kind: ArmKind) -> Option<ResourceId> {
    (id.is_exact(kind) && is_guid(id.subscription_id())).then_some(id)
}

fn invalid_id() -> Classification {
    ignored(IgnoreReason::InvalidResourceId)
}

/// Seconds from `event_time` to `now` (negative clock skew reads as zero).
pub fn seconds_since(event_time: OffsetDateTime, now: OffsetDateTime) -> f64 {
    (now - event_time).as_seconds_f64().max(0.0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const CLUSTER: &str = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1";
    const REGISTRY: &str = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr1";

    fn eg(event_type: &str, operation: &str, uri: &str) -> Value {
        json!({
            "id": "e1", "topic": "/subscriptions/00000000-0000-0000-0000-0000000000a1", "subject": uri, "eventType": event_type,
            "eventTime": "2026-01-04T10:15:00.1234567Z", "dataVersion": "2", "metadataVersion": "1",
            "data": {"operationName": operation, "resourceUri": uri, "subscriptionId": "00000000-0000-0000-0000-0000000000a1", "tenantId": "t1",
                     "correlationId": "c1", "status": "Succeeded"}
        })
    }

    fn classify_one(v: &Value) -> ClassifiedEvent {
        let events = parse_trigger(v).unwrap();
        assert_eq!(events.len(), 1);
        classify(events[0].as_ref().unwrap())
    }

    #[test]
    fn cluster_write_and_delete() {
        let c = classify_one(&eg(
            "Microsoft.Resources.ResourceWriteSuccess",
            "MICROSOFT.CONTAINERSERVICE/managedClusters/write",
            CLUSTER,
        ));
        assert!(
            matches!(&c.classification, Classification::ClusterWrite { cluster } if cluster.as_str() == CLUSTER)
        );
        assert_eq!(c.metadata.tenant_id.as_deref(), Some("t1"));
        assert_eq!(c.metadata.correlation_id.as_deref(), Some("c1"));
        assert_eq!(c.metadata.event_time.unwrap().nanosecond(), 123_456_700);
        let d = classify_one(&eg(
            "microsoft.resources.resourcedeletesuccess",
            "Microsoft.ContainerService/managedClusters/delete",
            CLUSTER,
        ));
        assert!(matches!(
            d.classification,
            Classification::ClusterDelete { .. }
        ));
    }

    #[test]
    fn tags_api_suffix_is_stripped_and_target_decides() {
        let uri = format!("{REGISTRY}/providers/microsoft.resources/TAGS/default");
        let c = classify_one(&eg(
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Resources/tags/write",
            &uri,
        ));
        assert!(
            matches!(&c.classification, Classification::RegistryWrite { registry, .. } if registry.as_str() == REGISTRY)
        );
        let sa = "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa/providers/Microsoft.Resources/tags/default";
        let c = classify_one(&eg(
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.Resources/tags/write",
            sa,
        ));
        assert_eq!(c.classification, ignored(IgnoreReason::OtherResourceType));
    }

    #[test]
    fn tags_api_delete_is_a_write_of_the_target() {
        // DELETE on the Tags API removes every tag (the opt-in with them); the registry itself remains.
        let uri = format!("{REGISTRY}/providers/Microsoft.Resources/tags/default");
        let c = classify_one(&eg(
            "Microsoft.Resources.ResourceDeleteSuccess",
            "Microsoft.Resources/tags/delete",
            &uri,
        ));
        assert!(matches!(
            c.classification,
            Classification::RegistryWrite { .. }
        ));
        let c = classify_one(&eg(
            "Microsoft.Resources.ResourceActionSuccess",
            "Microsoft.Resources/tags/write",
            &uri,
        ));
        assert_eq!(c.classification, ignored(IgnoreReason::ResourceAction));
    }

    #[test]
    fn irrelevant_operations_have_precise_reasons() {
        let cases = [
            (
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.ContainerService/managedClusters/agentPools/write",
                format!("{CLUSTER}/agentPools/np1"),
                IgnoreReason::ChildResource,
            ),
            (
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.Authorization/roleAssignments/write",
                format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/0b8d"),
                IgnoreReason::RoleAssignment,
            ),
            (
                "Microsoft.Resources.ResourceDeleteSuccess",
                "Microsoft.Authorization/roleAssignments/delete",
                format!("{REGISTRY}/providers/Microsoft.Authorization/roleAssignments/0b8d"),
                IgnoreReason::RoleAssignment,
            ),
            (
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.Resources/deployments/write",
                "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourceGroups/rg/providers/Microsoft.Resources/deployments/d"
                    .to_owned(),
                IgnoreReason::Deployment,
            ),
            (
                "Microsoft.Resources.ResourceWriteFailure",
                "Microsoft.ContainerService/managedClusters/write",
                CLUSTER.to_owned(),
                IgnoreReason::OperationNotSucceeded,
            ),
            (
                "Microsoft.Resources.ResourceActionSuccess",
                "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
                CLUSTER.to_owned(),
                IgnoreReason::ResourceAction,
            ),
            (
                "Microsoft.Resources.ResourceDeleteSuccess",
                "Microsoft.ContainerService/managedClusters/write",
                CLUSTER.to_owned(),
                IgnoreReason::OperationMismatch,
            ),
            (
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.ContainerService/managedClusters/write",
                REGISTRY.to_owned(),
                IgnoreReason::ResourceUriMismatch,
            ),
            (
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.ContainerService/managedClusters/write",
                "not-an-id".to_owned(),
                IgnoreReason::InvalidResourceId,
            ),
            (
                "Microsoft.Storage.BlobCreated",
                "Microsoft.ContainerService/managedClusters/write",
                CLUSTER.to_owned(),
                IgnoreReason::UnsupportedEventType,
            ),
        ];
        for (event_type, operation, uri, reason) in cases {
            let c = classify_one(&eg(event_type, operation, &uri));
            assert_eq!(
                c.classification,
                ignored(reason),
                "{event_type} {operation} {uri}"
            );
        }
    }

    #[test]
    fn per_element_rejections_do_not_sink_the_batch() {
        let good = eg(
            "Microsoft.Resources.ResourceWriteSuccess",
            "Microsoft.ContainerRegistry/registries/write",
            REGISTRY,
        );
        let batch = json!([good, 5, {"id": "x"}, {"specversion": "0.3", "id": "y", "type": "t"}, {"eventType": 1, "id": "z"}]);
        let out = parse_trigger(&Value::String(batch.to_string())).unwrap();
        assert_eq!(out.len(), 5);
        assert!(out[0].is_ok());
        assert_eq!(
            out[1],
            Err(EventRejection::NotAnObject {
                index: 1,
                found: "number"
            })
        );
        assert_eq!(out[2], Err(EventRejection::UnknownSchema { index: 2 }));
        assert!(matches!(
            out[3],
            Err(EventRejection::UnsupportedSpecVersion { index: 3, .. })
        ));
        assert!(matches!(
            out[4],
            Err(EventRejection::InvalidEnvelope { index: 4, .. })
        ));
        assert!(matches!(
            parse_trigger(&json!("{nope")),
            Err(EventRejection::NotJson { .. })
        ));
        assert_eq!(
            parse_trigger(&json!(3)),
            Err(EventRejection::NotAnEventOrArray { found: "number" })
        );
        let triple =
            Value::String(Value::String(Value::String("{}".into()).to_string()).to_string());
        assert_eq!(
            parse_trigger(&triple),
            Err(EventRejection::TooDeeplyEncoded)
        );
    }

    #[test]
    fn event_times_in_the_forms_hosts_send() {
        let utc = |s: &str| parse_event_time(s).map(|t| (t.unix_timestamp(), t.nanosecond()));
        let want = Some((1_767_521_700, 123_456_700));
        assert_eq!(utc("2026-01-04T10:15:00.1234567Z"), want);
        assert_eq!(utc("2026-01-04T11:15:00.1234567+01:00"), want);
        assert_eq!(utc(" 2026-01-04T10:15:00.1234567 "), want);
        assert_eq!(utc("2026-01-04T10:15:00"), Some((1_767_521_700, 0)));
        assert_eq!(utc("04/01/2026 10:15"), None);
        assert_eq!(utc(""), None);
    }

    #[test]
    fn event_ids_with_stray_spaces_are_cleaned_per_segment() {
        let id = parse_event_resource_id(
            "/subscriptions/{sub} /resourceGroups/ rg /providers/Microsoft.ContainerRegistry/registries/acr",
        )
        .unwrap();
        assert_eq!(
            id.as_str(),
            "/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr"
        );
        assert!(
            parse_event_resource_id("/subscriptions/s/resourceGroups/r g")
                .is_some_and(|i| i.name() == "r g")
        );
    }

    #[test]
    fn notification_names_the_resource_and_nothing_more() {
        let v = json!({
            "specversion": "1.0", "id": "n1", "source": "/subscriptions/00000000-0000-0000-0000-0000000000a1", "type": "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
            "time": "2026-01-04T10:15:00Z", "subject": CLUSTER,
            "data": {"resourceInfo": {"id": format!("{CLUSTER} "), "name": "aks1", "type": "Microsoft.ContainerService/managedClusters",
                     "location": "westeurope", "tags": {"env": "prod"}, "properties": {"provisioningState": "Succeeded"}},
                     "operationalInfo": {"resourceEventTime": "2026-01-04T10:15:00Z"}, "apiVersion": "2026-02-01"}
        });
        let c = classify_one(&v);
        let Classification::ClusterWrite { cluster } = c.classification else {
            panic!("{:?}", c.classification)
        };
        assert_eq!(cluster.as_str(), CLUSTER);
        assert_eq!(
            c.metadata.subscription_id.as_deref(),
            Some("00000000-0000-0000-0000-0000000000a1")
        );
        assert_eq!(c.metadata.schema, EventSchema::CloudEvents);
    }

    #[test]
    fn only_the_exact_arm_shape_of_a_cluster_or_registry_id_is_accepted() {
        let g = "00000000-0000-0000-0000-0000000000a1";
        let bad = [
            // nested provider
            format!("/subscriptions/{g}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st/providers/Microsoft.ContainerRegistry/registries/acr"),
            // subscription-level path
            format!("/subscriptions/{g}/providers/Microsoft.ContainerRegistry/registries/acr"),
            // not a GUID subscription
            "/subscriptions/s1/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/acr".to_owned(),
        ];
        for uri in &bad {
            for (event_type, op) in [
                (
                    "Microsoft.Resources.ResourceWriteSuccess",
                    "Microsoft.ContainerRegistry/registries/write",
                ),
                (
                    "Microsoft.Resources.ResourceWriteSuccess",
                    "Microsoft.Resources/tags/write",
                ),
            ] {
                let c = classify_one(&eg(event_type, op, uri));
                assert_eq!(
                    c.classification,
                    Classification::Ignored {
                        reason: IgnoreReason::InvalidResourceId
                    },
                    "{op} {uri}"
                );
            }
            let n = json!({"specversion": "1.0", "id": "n", "type": "Microsoft.ResourceNotifications.Resources.CreatedOrUpdated",
                           "data": {"resourceInfo": {"id": uri}}});
            assert_eq!(
                classify_one(&n).classification,
                Classification::Ignored {
                    reason: IgnoreReason::InvalidResourceId
                },
                "{uri}"
            );
        }
        let upper = REGISTRY
            .to_uppercase()
            .replace("00000000-0000-0000-0000-0000000000A1", g);
        assert!(matches!(
            classify_one(&eg(
                "Microsoft.Resources.ResourceWriteSuccess",
                "Microsoft.ContainerRegistry/registries/write",
                &upper
            ))
            .classification,
            Classification::RegistryWrite { .. }
        ));
    }
}
