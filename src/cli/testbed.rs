//! The whole topology of design.md on loopback, in one process: the Azure emulator (ARM, Graph, tokens,
//! Resource Graph), the Event Grid publisher subscribed as infra subscribes it, and the Functions host
//! simulator running `acr-autoattach serve` as its custom handler. The demo and the integration tests use it;
//! the handler is reached only through the host, and Azure only through the emulator.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use azure_emulator::admin::ArmAdmin;
use azure_emulator::eventgrid::{EventSchema, EventSubscription, Publisher, PublisherConfig};
use azure_emulator::functions_host::{FunctionsHost, HostOptions, InvocationRecord, RunningHost};
use azure_emulator::{Emulator, EmulatorConfig, RunningEmulator, StatsSnapshot};

/// The function app as it is deployed (docs/app-root.md), embedded so the testbed needs no checkout.
const HOST_JSON: &str = include_str!("../../host.json");
const ON_RESOURCE_EVENT: &str = include_str!("../../function-app/OnResourceEvent/function.json");
const VERIFY_ATTACHMENTS: &str = include_str!("../../function-app/VerifyAttachments/function.json");

#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    #[error("emulator: {0}")]
    Emulator(String),
    #[error("functions host: {0}")]
    Host(String),
    #[error("event grid: {0}")]
    EventGrid(String),
    #[error("app root: {0}")]
    AppRoot(#[from] std::io::Error),
}

/// How to build the testbed.
#[derive(Debug, Clone)]
pub struct TestbedOptions {
    pub emulator: EmulatorConfig,
    /// The handler process: program and arguments (`[…/acr-autoattach, serve]`).
    pub handler_command: Vec<String>,
    /// App settings beyond the emulator's endpoints (AUTOATTACH_*, OTEL_*, …).
    pub settings: BTreeMap<String, String>,
    pub publisher: PublisherConfig,
    pub schema: EventSchema,
    /// Fire the timer on its schedule (tests run it through the admin API instead).
    pub run_timers: bool,
}

impl TestbedOptions {
    /// Fast, deterministic settings for tests: clusters provision in 300 ms, Event Grid's retry schedule runs
    /// 100× faster (first retry after 100 ms), the readiness budget is 3 s.
    pub fn for_tests(handler_command: Vec<String>) -> Self {
        let mut emulator = EmulatorConfig::for_tests();
        emulator.settings.cluster_provisioning_ms = 300;
        let mut publisher = PublisherConfig::scaled(0.01, Duration::from_secs(20));
        publisher.seed = 7;
        let settings = [
            ("AUTOATTACH_READY_TIMEOUT_SECS", "3"),
            ("AUTOATTACH_VERIFY_SCHEDULE", "0 0 0 1 1 *"),
            ("AUTOATTACH_TOKEN_NO_RETRY", "true"),
            ("RUST_LOG", "warn"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        Self {
            emulator,
            handler_command,
            settings,
            publisher,
            schema: EventSchema::EventGridSchema,
            run_timers: false,
        }
    }

    #[must_use]
    pub fn setting(mut self, key: &str, value: &str) -> Self {
        self.settings.insert(key.to_owned(), value.to_owned());
        self
    }
}

/// A running topology. Dropping it stops everything (the host kills the handler process).
pub struct Testbed {
    pub emulator: RunningEmulator,
    pub host: RunningHost,
    pub publisher: Publisher,
    /// An ARM client acting as the emulator's admin (a person with Owner).
    pub admin: ArmAdmin,
    app_root: AppRoot,
}

/// A temporary app root, removed on drop.
struct AppRoot(PathBuf);

impl Drop for AppRoot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes the deployable layout (host.json and one folder per function) into a fresh directory.
pub fn assemble_app_root(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir.join("OnResourceEvent"))?;
    std::fs::create_dir_all(dir.join("VerifyAttachments"))?;
    std::fs::write(dir.join("host.json"), HOST_JSON)?;
    std::fs::write(dir.join("OnResourceEvent/function.json"), ON_RESOURCE_EVENT)?;
    std::fs::write(
        dir.join("VerifyAttachments/function.json"),
        VERIFY_ATTACHMENTS,
    )?;
    Ok(())
}

impl Testbed {
    pub async fn start(options: TestbedOptions) -> Result<Self, TestbedError> {
        let emulator = Emulator::start(options.emulator.clone())
            .await
            .map_err(|e| TestbedError::Emulator(e.to_string()))?;
        let dir = std::env::temp_dir().join(format!(
            "acr-autoattach-app-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let app_root = AppRoot(dir);
        assemble_app_root(&app_root.0)?;

        let mut settings: BTreeMap<String, String> = emulator.env().into_iter().collect();
        settings.extend(options.settings.clone());
        let mut host_options = HostOptions::new(&app_root.0);
        host_options.handler_command = Some(options.handler_command.clone());
        host_options.settings = settings;
        host_options.run_timers = options.run_timers;
        let host = FunctionsHost::start(host_options)
            .await
            .map_err(|e| TestbedError::Host(e.to_string()))?;
        host.wait_ready()
            .await
            .map_err(|e| TestbedError::Host(e.to_string()))?;

        let publisher = Publisher::start(&emulator.bus(), options.publisher.clone());
        let mut subscription = EventSubscription::as_infra_configures(
            "acr-autoattach",
            host.eventgrid_webhook_url("OnResourceEvent"),
        );
        subscription.schema = options.schema;
        if options.schema == EventSchema::ResourceNotifications {
            // Resource Notifications events have their own types and no operationName.
            subscription.included_event_types = Vec::new();
            subscription.operation_name_filter = None;
        }
        publisher
            .subscribe(subscription)
            .await
            .map_err(|e| TestbedError::EventGrid(e.to_string()))?;

        let admin = ArmAdmin::new(emulator.base_url(), emulator.control().admin_token());
        Ok(Self {
            emulator,
            host,
            publisher,
            admin,
            app_root,
        })
    }

    pub fn app_root(&self) -> &Path {
        &self.app_root.0
    }

    /// Waits until Event Grid has nothing in flight (deliveries and retries done, or dead-lettered).
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        self.publisher.wait_idle(timeout).await
    }

    /// Runs VerifyAttachments now through the host's admin API.
    pub async fn run_timer(&self) -> Result<InvocationRecord, TestbedError> {
        self.host
            .invoke_timer("VerifyAttachments")
            .await
            .map_err(|e| TestbedError::Host(e.to_string()))
    }

    /// The emulator's request statistics.
    pub fn stats(&self) -> StatsSnapshot {
        self.emulator.control().stats()
    }

    pub async fn shutdown(self) {
        self.host.shutdown().await;
        self.emulator.shutdown().await;
    }
}
