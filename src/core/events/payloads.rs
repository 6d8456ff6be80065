//! The data payloads of the resource events this project reads (Azure.Messaging.EventGrid.SystemEvents:
//! Resource Write/Delete and Resource Notifications), as hand-written serde models. An event is a hint: these
//! fields name a resource and are never trusted for anything else.

#[allow(clippy::wildcard_imports)]
use super::*;

/// `data.authorization` of a resource event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceAuthorization {
    #[serde(default, deserialize_with = "lenient")]
    pub scope: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub action: Option<String>,
    #[serde(default, deserialize_with = "string_map")]
    pub evidence: BTreeMap<String, String>,
}

/// `data.httpRequest` of a resource event (often absent on creates).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceHttpRequest {
    #[serde(default, deserialize_with = "lenient")]
    pub client_request_id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub client_ip_address: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub method: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub url: Option<String>,
}

/// Azure defines one data type per resource event type with identical fields; so do we, from one template.
macro_rules! resource_event_data {
    ($(#[$doc:meta] $name:ident),+ $(,)?) => {$(
        #[$doc]
        ///
        /// Every field is optional and a field of the wrong JSON type reads as absent: a malformed detail must not
        /// hide the fields that matter.
        #[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
        #[serde(rename_all = "camelCase")]
        pub struct $name {
            #[serde(default, deserialize_with = "lenient")]
            pub tenant_id: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub subscription_id: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub resource_group: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub resource_provider: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub resource_uri: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub operation_name: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub status: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub authorization: Option<ResourceAuthorization>,
            #[serde(default, deserialize_with = "string_map")]
            pub claims: BTreeMap<String, String>,
            #[serde(default, deserialize_with = "lenient")]
            pub correlation_id: Option<String>,
            #[serde(default, deserialize_with = "lenient")]
            pub http_request: Option<ResourceHttpRequest>,
        }
    )+};
}

resource_event_data!(
    /// `data` of `Microsoft.Resources.ResourceWriteSuccess`.
    ResourceWriteSuccessEventData,
    /// `data` of `Microsoft.Resources.ResourceDeleteSuccess`.
    ResourceDeleteSuccessEventData,
);

/// `data.resourceInfo` of `Microsoft.ResourceNotifications.Resources.CreatedOrUpdated`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceNotificationsResourceUpdatedDetails {
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub location: Option<String>,
    #[serde(default, deserialize_with = "string_map")]
    pub tags: BTreeMap<String, String>,
    #[serde(default)]
    pub properties: Value,
}

/// `data.operationalInfo` of a Resource Notifications event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceNotificationsOperationalDetails {
    #[serde(default, deserialize_with = "lenient")]
    pub resource_event_time: Option<String>,
}

/// `data` of `Microsoft.ResourceNotifications.Resources.CreatedOrUpdated`: carries the resource body.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceNotificationsResourceUpdatedEventData {
    #[serde(default, deserialize_with = "lenient")]
    pub resource_info: Option<ResourceNotificationsResourceUpdatedDetails>,
    #[serde(default, deserialize_with = "lenient")]
    pub operational_info: Option<ResourceNotificationsOperationalDetails>,
    #[serde(default, deserialize_with = "lenient")]
    pub api_version: Option<String>,
}

/// `data.resourceInfo` of `Microsoft.ResourceNotifications.Resources.Deleted`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourceNotificationsResourceDeletedDetails {
    #[serde(default, deserialize_with = "lenient")]
    pub id: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    pub name: Option<String>,
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    pub resource_type: Option<String>,
}

/// `data` of `Microsoft.ResourceNotifications.Resources.Deleted`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceNotificationsResourceDeletedEventData {
    #[serde(default, deserialize_with = "lenient")]
    pub resource_info: Option<ResourceNotificationsResourceDeletedDetails>,
    #[serde(default, deserialize_with = "lenient")]
    pub operational_info: Option<ResourceNotificationsOperationalDetails>,
}

/// A field that does not have the expected shape reads as absent instead of failing the whole payload.
fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// A string map (claims, evidence, tags): scalars are kept as their text, nested values and non-objects dropped.
fn string_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    let value = Value::deserialize(deserializer)?;
    let Value::Object(map) = value else {
        return Ok(BTreeMap::new());
    };
    Ok(map
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k, s)),
            Value::Number(n) => Some((k, n.to_string())),
            Value::Bool(b) => Some((k, b.to_string())),
            Value::Null | Value::Array(_) | Value::Object(_) => None,
        })
        .collect())
}
