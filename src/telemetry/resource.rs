//! The OpenTelemetry resource: who exports (service, version, host), and the Functions app it runs as
//! (`cloud.*`, `faas.*` as the current semantic conventions name them).

#[allow(clippy::wildcard_imports)]
use super::*;

/// What the resource says about this process (besides `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// The function app's name (`WEBSITE_SITE_NAME`): the `<app>` of each invocation span's
    /// `faas.name` = `<app>/<function>`.
    pub faas_name: String,
    /// `faas.instance`: this instance of the app.
    pub faas_instance: String,
    pub service_version: String,
    /// `cloud.resource_id` of the function app, when the App Service variables name it
    /// (`/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Web/sites/{app}`).
    pub app_resource_id: Option<String>,
}

impl ProcessInfo {
    /// From the App Service variables the Functions host passes on (`WEBSITE_SITE_NAME`,
    /// `WEBSITE_INSTANCE_ID`, `WEBSITE_OWNER_NAME`, `WEBSITE_RESOURCE_GROUP`), falling back to the worker id
    /// and the process id.
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let site = get("WEBSITE_SITE_NAME");
        let app_resource_id = match (
            &site,
            get("WEBSITE_OWNER_NAME"),
            get("WEBSITE_RESOURCE_GROUP"),
        ) {
            (Some(site), Some(owner), Some(group)) => app_resource_id(site, &owner, &group),
            _ => None,
        };
        Self {
            faas_name: site.unwrap_or_else(|| config::DEFAULT_SERVICE_NAME.to_owned()),
            faas_instance: get("WEBSITE_INSTANCE_ID")
                .or_else(|| get("FUNCTIONS_CUSTOMHANDLER_WORKER_ID"))
                .unwrap_or_else(|| format!("pid-{}", std::process::id())),
            service_version: env!("CARGO_PKG_VERSION").to_owned(),
            app_resource_id,
        }
    }

    /// `faas.name` of an invocation of `function`: `<app>/<function>`, as the conventions require for Azure.
    pub fn function_name(&self, function: &str) -> String {
        format!("{}/{function}", self.faas_name)
    }

    /// `cloud.resource_id` of `function`, when the app's id is known.
    pub fn function_resource_id(&self, function: &str) -> Option<String> {
        self.app_resource_id
            .as_ref()
            .map(|app| format!("{app}/functions/{function}"))
    }
}

/// The function app's ARM id from `WEBSITE_OWNER_NAME` (`{subscription}+{group}-{region}webspace[-Linux]`,
/// of which only the subscription before `+` is used), `WEBSITE_RESOURCE_GROUP` and the site name. `None`
/// when the owner name does not start with a subscription GUID.
fn app_resource_id(site: &str, owner: &str, group: &str) -> Option<String> {
    let subscription = owner.split('+').next().unwrap_or_default().trim();
    let is_guid = subscription.len() == 36
        && subscription
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == '-');
    (is_guid && !group.contains('/') && !site.contains('/')).then(|| {
        format!("/subscriptions/{subscription}/resourceGroups/{group}/providers/Microsoft.Web/sites/{site}")
    })
}

/// The resource every signal carries. Precedence (later wins): built-in attributes, `OTEL_RESOURCE_ATTRIBUTES`,
/// `OTEL_SERVICE_NAME` (or its default) for `service.name`.
pub fn build_resource(config: &TelemetryConfig, info: &ProcessInfo) -> Resource {
    let mut attrs = vec![
        KeyValue::new("service.version", info.service_version.clone()),
        KeyValue::new("cloud.provider", "azure"),
        KeyValue::new("cloud.platform", "azure.functions"),
        KeyValue::new("faas.instance", info.faas_instance.clone()),
    ];
    if let Some(id) = &info.app_resource_id {
        attrs.push(KeyValue::new("cloud.resource_id", id.clone()));
    }
    for (k, v) in &config.resource_attributes {
        if k != "service.name" {
            attrs.push(KeyValue::new(k.clone(), v.clone()));
        }
    }
    // `OTEL_RESOURCE_ATTRIBUTES` may name the service when `OTEL_SERVICE_NAME` is unset (specification order).
    let explicit_name_in_attrs = config
        .resource_attributes
        .iter()
        .rev()
        .find(|(k, _)| k == "service.name")
        .map(|(_, v)| v.clone());
    let service_name = if config.service_name == config::DEFAULT_SERVICE_NAME {
        explicit_name_in_attrs.unwrap_or_else(|| config.service_name.clone())
    } else {
        config.service_name.clone()
    };
    Resource::builder_empty()
        .with_detector(Box::new(
            opentelemetry_sdk::resource::TelemetryResourceDetector,
        ))
        .with_attributes(attrs)
        .with_service_name(service_name)
        .build()
}
