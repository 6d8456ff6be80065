//! Starting and stopping the server: the bound listener, the shutdown channel, the environment a handler needs.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{EmulatorControl, EmulatorError, router};
use crate::app::App;
use crate::bus::EventBus;
use crate::config::EmulatorConfig;
use crate::tls::{self, TlsListener};

/// Entry point: `Emulator::start(config).await`.
pub struct Emulator;

impl Emulator {
    /// Binds 127.0.0.1:`config.port` (0 = a free port) and serves until the returned handle is dropped.
    pub async fn start(config: EmulatorConfig) -> Result<RunningEmulator, EmulatorError> {
        Self::start_with_bus(config, EventBus::new()).await
    }

    /// As [`Emulator::start`], publishing ARM events on an existing bus.
    pub async fn start_with_bus(
        config: EmulatorConfig,
        bus: EventBus,
    ) -> Result<RunningEmulator, EmulatorError> {
        let port = config.port;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| EmulatorError::Bind { port, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind { port, source })?;
        let tls = if config.tls {
            let material = tls::generate()?;
            let (dir, owned) = match &config.tls_dir {
                Some(dir) => (dir.clone(), false),
                None => (
                    std::env::temp_dir().join(format!(
                        "azure-emulator-{}-{}",
                        std::process::id(),
                        addr.port()
                    )),
                    true,
                ),
            };
            let ca_file = tls::write_ca(&dir, &material.ca_pem)?;
            Some((material, ca_file, owned.then_some(dir)))
        } else {
            None
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let app = App::new(config, format!("{scheme}://{addr}"), bus);
        let router = router(app.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async move {
            let _ = rx.await;
        };
        let (task, ca) = match tls {
            None => (
                tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await;
                }),
                None,
            ),
            Some((material, ca_file, owned_dir)) => {
                let listener = TlsListener::new(listener, material.config)
                    .map_err(|source| EmulatorError::Bind { port, source })?;
                let task = tokio::spawn(async move {
                    let _ = axum::serve(listener, router)
                        .with_graceful_shutdown(shutdown)
                        .await;
                });
                (
                    task,
                    Some(CaFile {
                        path: ca_file,
                        pem: material.ca_pem,
                        owned_dir,
                    }),
                )
            }
        };
        Ok(RunningEmulator {
            control: EmulatorControl { app },
            addr,
            ca,
            shutdown: Some(tx),
            task: Some(task),
        })
    }
}

/// The CA of a TLS emulator: its PEM, the file holding it, and the folder to remove on stop (when ours).
struct CaFile {
    path: PathBuf,
    pem: String,
    owned_dir: Option<PathBuf>,
}

/// A running emulator. Dropping it stops the server.
pub struct RunningEmulator {
    control: EmulatorControl,
    addr: SocketAddr,
    ca: Option<CaFile>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for RunningEmulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningEmulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl RunningEmulator {
    /// The file holding the CA that signed the server's certificate (TLS only).
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.ca.as_ref().map(|c| c.path.clone())
    }

    /// The CA's PEM (TLS only): what a client adds to its trusted roots.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca.as_ref().map(|c| c.pem.clone())
    }

    /// `http://127.0.0.1:PORT` (`https://…` with TLS) — ARM, Resource Graph and Graph are all served here.
    pub fn base_url(&self) -> String {
        self.control.app.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn bus(&self) -> EventBus {
        self.control.app.bus.clone()
    }

    /// The environment a handler needs (endpoint variables and the identity header secret).
    pub fn env(&self) -> Vec<(String, String)> {
        let base = self.base_url();
        let app = &self.control.app;
        let mut env = vec![
            ("AUTOATTACH_ARM_ENDPOINT".to_owned(), base.clone()),
            ("AUTOATTACH_GRAPH_ENDPOINT".to_owned(), base.clone()),
            (
                "AUTOATTACH_RESOURCE_GRAPH_ENDPOINT".to_owned(),
                base.clone(),
            ),
            ("IDENTITY_ENDPOINT".to_owned(), format!("{base}/msi/token")),
            ("IDENTITY_HEADER".to_owned(), app.identity_header.clone()),
            (
                "AZURE_TENANT_ID".to_owned(),
                app.config.default_tenant.clone(),
            ),
        ];
        if app.config.handler_user_assigned {
            env.push(("AZURE_CLIENT_ID".to_owned(), app.handler_client_id.clone()));
        }
        if let Some(ca) = &self.ca {
            // The CA a client must trust: named for scripts, and as the bundle rustls-native-certs (the handler's
            // reqwest) and Python's requests read, so a handler started with this environment trusts the emulator.
            let path = ca.path.display().to_string();
            for key in [
                "AZURE_EMULATOR_CA_FILE",
                "SSL_CERT_FILE",
                "REQUESTS_CA_BUNDLE",
            ] {
                env.push((key.to_owned(), path.clone()));
            }
        }
        env
    }

    /// A cloneable control handle (outlives nothing: it keeps state, not the server, alive).
    pub fn control(&self) -> EmulatorControl {
        self.control.clone()
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Deref for RunningEmulator {
    type Target = EmulatorControl;

    fn deref(&self) -> &EmulatorControl {
        &self.control
    }
}

impl Drop for RunningEmulator {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
        if let Some(dir) = self.ca.as_ref().and_then(|c| c.owned_dir.as_ref()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
