//! The Application Insights exporter (opentelemetry-application-insights) and the HTTP client it posts through.
//!
//! With the instrumentation key the exporter is used as published: `POST <IngestionEndpoint>/v2/track`. With
//! Microsoft Entra authentication ([`AppInsightsAuth::Entra`]) the exporter is built from the connection string
//! without its `Authorization` field (the crate refuses any value but `ikey`), and the client adds
//! `Authorization: Bearer <token>` and posts to `/v2.1/track` instead: the crate always appends `v2/track`, the
//! Entra-authenticated ingestion API is `v2.1/track` (the path the Azure Monitor SDKs use; `v2/track` answers
//! 400 on a resource with local authentication off). Sources in docs/telemetry.md.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

use super::config::{AppInsightsAuth, AppInsightsConnectionString};
use super::counting::Counters;
use super::entra::EntraAuth;
use super::{TelemetryError, scrub};
use crate::azure::{ManagedIdentityOptions, managed_identity_credential};

/// The path the exporter posts to, and the one Microsoft Entra authenticated ingestion takes.
const IKEY_TRACK: &str = "/v2/track";
const ENTRA_TRACK: &str = "/v2.1/track";

/// The client the Application Insights exporter posts through: the telemetry HTTP client, plus the bearer token
/// and the Entra path under Microsoft Entra authentication. `Debug` shows no token.
#[derive(Clone)]
pub(crate) struct IngestionClient {
    http: reqwest::blocking::Client,
    entra: Option<Arc<EntraAuth>>,
}

impl std::fmt::Debug for IngestionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestionClient")
            .field("entra", &self.entra.is_some())
            .finish_non_exhaustive()
    }
}

/// `…/v2/track` → `…/v2.1/track`, query kept; any other URI unchanged.
fn entra_track_uri(uri: &http::Uri) -> http::Uri {
    let Some(base) = uri.path().strip_suffix(IKEY_TRACK) else {
        return uri.clone();
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{base}{ENTRA_TRACK}?{q}"),
        None => format!("{base}{ENTRA_TRACK}"),
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(pq) => parts.path_and_query = Some(pq),
        Err(_) => return uri.clone(),
    }
    http::Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

#[async_trait::async_trait]
impl HttpClient for IngestionClient {
    async fn send_bytes(&self, mut request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let Some(entra) = &self.entra else {
            return self.http.send_bytes(request).await;
        };
        // An error here is a failed export the exporter retries (with backoff) and the SDK reports; nothing is
        // sent without a token, since ingestion would refuse it anyway.
        let token = entra.bearer()?;
        let mut value = http::HeaderValue::from_str(&format!("Bearer {}", token.secret()))
            .map_err(|_| "the Microsoft Entra token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        *request.uri_mut() = entra_track_uri(request.uri());
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
        let response = self.http.send_bytes(request).await?;
        entra.observe(response.status().as_u16());
        Ok(response)
    }
}

pub(crate) type AppInsightsExporter = opentelemetry_application_insights::Exporter<IngestionClient>;

/// The exporter `auth` calls for, and its token source under Microsoft Entra authentication. Neither an
/// `Authorization` value this handler does not know nor a credential that cannot be built stops telemetry: the
/// Application Insights exporter alone stays off, and one line on stderr says why (OTLP continues).
pub(crate) fn for_config(
    cs: &AppInsightsConnectionString,
    auth: &AppInsightsAuth,
    http: &reqwest::blocking::Client,
    credential: Option<Arc<dyn TokenCredential>>,
    counters: &Arc<Counters>,
    secrets: &[String],
) -> Result<(Option<AppInsightsExporter>, Option<Arc<EntraAuth>>), TelemetryError> {
    let off = |why: &str| {
        eprintln!(
            "acr-autoattach: Application Insights exporter disabled: {}; other exporters (OTLP) continue.",
            scrub(why, secrets)
        );
        Ok((None, None))
    };
    let entra = match auth {
        AppInsightsAuth::InstrumentationKey => None,
        AppInsightsAuth::Unsupported(value) => {
            return off(&format!(
                "the connection string asks for Authorization={value}, which is neither ikey nor AAD"
            ));
        }
        AppInsightsAuth::Entra { client_id, scope } => {
            let credential = match credential {
                Some(c) => c,
                None => match managed_identity_credential(&ManagedIdentityOptions {
                    user_assigned_client_id: client_id.clone(),
                    no_retry: false,
                }) {
                    Ok(c) => c,
                    Err(e) => {
                        return off(&format!(
                            "the managed identity credential for Microsoft Entra authentication cannot be \
                             built: {e}"
                        ));
                    }
                },
            };
            match EntraAuth::new(credential, scope.clone(), counters.clone()) {
                Ok(a) => Some(Arc::new(a)),
                Err(e) => return off(&format!("the token runtime cannot start: {e}")),
            }
        }
    };
    let exporter = exporter(cs, auth, http.clone(), entra.clone(), secrets)?;
    Ok((Some(exporter), entra))
}

/// The exporter for `cs`, posting through `http` (with `entra` under Microsoft Entra authentication).
fn exporter(
    cs: &AppInsightsConnectionString,
    auth: &AppInsightsAuth,
    http: reqwest::blocking::Client,
    entra: Option<Arc<EntraAuth>>,
    secrets: &[String],
) -> Result<AppInsightsExporter, TelemetryError> {
    let err = |signal: &'static str, e: &dyn std::fmt::Display| TelemetryError::Exporter {
        exporter: "application_insights",
        signal,
        detail: scrub(&e.to_string(), secrets),
    };
    let connection_string = match auth {
        AppInsightsAuth::Entra { .. } => cs.for_entra_exporter(),
        _ => cs.expose().to_owned(),
    };
    let client = IngestionClient { http, entra };
    let exporter = opentelemetry_application_insights::Exporter::new_from_connection_string(
        connection_string,
        client,
    )
    .map_err(|e| err("all", &e))?;
    // The exporter upgrades http:// ingestion endpoints to https://. A plain-http endpoint is only ever a
    // local test receiver, so keep it as given there and nowhere else.
    match cs.ingestion_endpoint() {
        Some(endpoint) if is_loopback_http(endpoint) => {
            #[allow(deprecated)]
            let exporter = exporter
                .with_endpoint(endpoint.trim_end_matches('/'))
                .map_err(|e| err("all", &e))?;
            Ok(exporter)
        }
        _ => Ok(exporter),
    }
}

pub(crate) fn is_loopback_http(endpoint: &str) -> bool {
    url::Url::parse(endpoint).is_ok_and(|u| {
        u.scheme() == "http"
            && matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip.is_loopback()
            )
            || u.scheme() == "http"
                && matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || u.scheme() == "http" && u.host_str() == Some("localhost")
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_entra_path_replaces_only_the_track_suffix() {
        let uri: http::Uri = "https://westeurope-5.in.applicationinsights.azure.com/v2/track"
            .parse()
            .unwrap();
        assert_eq!(
            entra_track_uri(&uri).to_string(),
            "https://westeurope-5.in.applicationinsights.azure.com/v2.1/track"
        );
        let prefixed: http::Uri = "http://127.0.0.1:9/ingest/v2/track?x=1".parse().unwrap();
        assert_eq!(
            entra_track_uri(&prefixed).to_string(),
            "http://127.0.0.1:9/ingest/v2.1/track?x=1"
        );
        let other: http::Uri = "https://live.example/QuickPulseService.svc/post"
            .parse()
            .unwrap();
        assert_eq!(entra_track_uri(&other), other);
    }

    #[test]
    fn the_client_debug_shows_no_token() {
        let client = IngestionClient {
            http: reqwest::blocking::Client::builder().build().unwrap(),
            entra: None,
        };
        assert_eq!(
            format!("{client:?}"),
            "IngestionClient { entra: false, .. }"
        );
    }
}
