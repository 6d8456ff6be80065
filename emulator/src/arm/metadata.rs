//! `GET /metadata/endpoints`: ARM's anonymous cloud metadata, which `az cloud register --endpoint-resource-manager`
//! reads to learn the other endpoints. The emulator's cloud names itself for ARM and Microsoft Graph (at the
//! origin the client used) and keeps the public cloud's audiences, login endpoint and suffixes.

use http::{Method, StatusCode};
use serde_json::json;

use super::{Outcome, Request};

pub(crate) fn metadata_endpoints(req: &Request<'_>) -> Outcome {
    if *req.method != Method::GET {
        return Outcome::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The metadata endpoint answers GET only.",
        );
    }
    let origin = format!("{}/", req.origin);
    Outcome::json(
        StatusCode::OK,
        json!({
            "name": "AzureCloud",
            "portal": "https://portal.azure.com",
            "resourceManager": origin,
            "microsoftGraphResourceId": origin,
            "graph": "https://graph.windows.net/",
            "graphAudience": "https://graph.windows.net/",
            "gallery": "https://gallery.azure.com/",
            "batch": "https://batch.core.windows.net/",
            "media": "https://rest.media.azure.net",
            "sqlManagement": "https://management.core.windows.net:8443/",
            "activeDirectoryDataLake": "https://datalake.azure.net/",
            "authentication": {
                "loginEndpoint": "https://login.microsoftonline.com",
                "audiences": ["https://management.core.windows.net/", "https://management.azure.com/"],
                "tenant": "common",
                "identityProvider": "AAD",
            },
            "suffixes": {
                "acrLoginServer": "azurecr.io",
                "keyVaultDns": "vault.azure.net",
                "storage": "core.windows.net",
                "sqlServerHostname": "database.windows.net",
            },
        }),
    )
}
