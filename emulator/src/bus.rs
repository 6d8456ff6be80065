//! The seam between the ARM emulator and the Event Grid publisher: every successful ARM write, delete or
//! action is published here once, and each subscriber (an Event Grid system-topic subscription) gets its own
//! unbounded queue, so a slow subscriber never slows ARM down.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// The kind of ARM operation, which selects the event type
/// (`Microsoft.Resources.Resource{Write,Delete,Action}Success`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ArmOperationKind {
    Write,
    Delete,
    Action,
}

/// One successful ARM operation, carrying what Azure's subscription system topic puts into the event's `data`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ArmEvent {
    pub kind: ArmOperationKind,
    /// The resource the operation acted on, as the caller spelled it (for the Tags API:
    /// `{resource}/providers/Microsoft.Resources/tags/default`, as Azure sends it).
    pub resource_uri: String,
    /// e.g. `Microsoft.ContainerService/managedClusters/write`.
    pub operation_name: String,
    pub subscription_id: String,
    pub tenant_id: String,
    /// `x-ms-correlation-request-id` of the request, or a new UUID.
    pub correlation_id: String,
    /// The caller's token claims (`oid`, `appid`, `tid`, ...), as the event's `claims` string map.
    pub claims: std::collections::BTreeMap<String, String>,
    /// `authorization.action` (same as `operation_name` for writes and deletes) and `authorization.scope`.
    pub authorization_action: String,
    pub authorization_scope: String,
    /// HTTP method and URL of the request (`data.httpRequest`).
    pub http_method: String,
    pub url: String,
    pub time: OffsetDateTime,
    /// The resource body after the operation (for Azure Resource Notifications events); `None` on delete.
    pub resource_body: Option<serde_json::Value>,
}

/// Fan-out of [`ArmEvent`]s to any number of subscribers.
#[derive(Clone, Default)]
pub struct EventBus {
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<ArmEvent>>>>,
}

impl EventBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new subscriber receives every event published from now on.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ArmEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().push(tx);
        rx
    }

    /// Publishes to every live subscriber; closed subscribers are dropped.
    pub fn publish(&self, event: &ArmEvent) {
        self.lock().retain(|tx| tx.send(event.clone()).is_ok());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<mpsc::UnboundedSender<ArmEvent>>> {
        // A poisoned lock only means another thread panicked mid-push; the Vec is still valid.
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
