//! Shared helpers for the ARM emulator tests: a started emulator plus a small HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

pub const CLUSTERS: &str = "2026-02-01";
pub const REGISTRIES: &str = "2025-11-01";
pub const ASSIGNMENTS: &str = "2022-04-01";
pub const GROUPS: &str = "2024-11-01";

pub struct Harness {
    pub emu: RunningEmulator,
    pub http: reqwest::Client,
    pub sub: String,
}

pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Harness {
    pub async fn start(config: EmulatorConfig) -> Self {
        let emu = Emulator::start(config).await.unwrap();
        let sub = emu.subscriptions()[0].clone();
        Self {
            emu,
            http: reqwest::Client::new(),
            sub,
        }
    }

    pub async fn default() -> Self {
        Self::start(EmulatorConfig::for_tests()).await
    }

    pub fn url(&self, path_and_query: &str) -> String {
        if path_and_query.starts_with("http") {
            path_and_query.to_owned()
        } else {
            format!("{}{path_and_query}", self.emu.base_url())
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        token: Option<&str>,
        path: &str,
        body: Option<&Value>,
    ) -> Answer {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        self.send(reqwest::Method::GET, Some(token), path, None)
            .await
    }
    pub async fn put(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PUT, Some(token), path, Some(body))
            .await
    }
    pub async fn patch(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::PATCH, Some(token), path, Some(body))
            .await
    }
    pub async fn delete(&self, token: &str, path: &str) -> Answer {
        self.send(reqwest::Method::DELETE, Some(token), path, None)
            .await
    }
    pub async fn post(&self, token: &str, path: &str, body: &Value) -> Answer {
        self.send(reqwest::Method::POST, Some(token), path, Some(body))
            .await
    }

    pub fn admin(&self) -> String {
        self.emu.admin_token()
    }

    pub fn rg_id(&self, rg: &str) -> String {
        format!("/subscriptions/{}/resourceGroups/{rg}", self.sub)
    }

    pub fn cluster_id(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
            self.rg_id(rg)
        )
    }

    pub fn registry_id(&self, rg: &str, name: &str) -> String {
        format!(
            "{}/providers/Microsoft.ContainerRegistry/registries/{name}",
            self.rg_id(rg)
        )
    }

    pub async fn create_rg(&self, rg: &str) {
        let a = self
            .put(
                &self.admin(),
                &format!("{}?api-version={GROUPS}", self.rg_id(rg)),
                &json!({"location": "westeurope"}),
            )
            .await;
        assert!(a.status == 201 || a.status == 200, "{}", a.body);
    }

    pub async fn create_cluster(&self, rg: &str, name: &str, tags: Value) -> Answer {
        self.put(
            &self.admin(),
            &format!("{}?api-version={CLUSTERS}", self.cluster_id(rg, name)),
            &json!({
                "location": "westeurope",
                "tags": tags,
                "identity": {"type": "SystemAssigned"},
                "properties": {"dnsPrefix": name, "agentPoolProfiles": [{"name": "nodepool1", "count": 1, "vmSize": "Standard_DS2_v2", "mode": "System"}]}
            }),
        )
        .await
    }

    pub async fn create_registry(&self, rg: &str, name: &str, tags: Value) -> Answer {
        self.put(
            &self.admin(),
            &format!("{}?api-version={REGISTRIES}", self.registry_id(rg, name)),
            &json!({"location": "westeurope", "tags": tags, "sku": {"name": "Standard"}}),
        )
        .await
    }

    /// Polls the cluster until it is `Succeeded` (or panics after ~5 s).
    pub async fn wait_succeeded(&self, rg: &str, name: &str) -> Value {
        for _ in 0..100 {
            let a = self
                .get(
                    &self.admin(),
                    &format!("{}?api-version={CLUSTERS}", self.cluster_id(rg, name)),
                )
                .await;
            if a.body["properties"]["provisioningState"] == "Succeeded" {
                return a.body;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("cluster {name} never succeeded");
    }
}

/// Reads a shared spec file in place; under CI=true a missing file fails loudly, otherwise the test skips.
pub fn shared(relative: &str) -> Option<String> {
    let path = format!("{}/../../shared/{relative}", env!("CARGO_MANIFEST_DIR"));
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "shared file {path} missing under CI: {e}"
            );
            eprintln!("skipping: shared file {path} is missing ({e})");
            None
        }
    }
}

pub fn shared_dir(relative: &str) -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from(format!(
        "{}/../../shared/{relative}",
        env!("CARGO_MANIFEST_DIR")
    ));
    if path.is_dir() {
        Some(path)
    } else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "shared directory {} missing under CI",
            path.display()
        );
        eprintln!("skipping: shared directory {} is missing", path.display());
        None
    }
}
