//! The Azure client: ARM, Resource Graph and Microsoft Graph over one shared HTTP client, with tokens from
//! `azure_identity`, a deadline on every call, retries, a client-side rate limiter and request accounting.
//!
//! ```ignore
//! let client = AzureClient::new(ClientOptions::new(arm, graph, credential))?;
//! let azure = client.with_deadline(deadline);          // every call below ends before `deadline`
//! let cluster = azure.get_cluster(&cluster_id).await?;
//! ```

mod arm;
pub mod error;
mod graph;
pub mod graph_groups;
pub mod http;
pub mod inventory;
pub mod ops;
pub mod ratelimit;
pub mod resource_graph;
pub mod retry;
pub mod span;
pub mod token;
pub mod wire;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use url::Url;

pub use arm::{AssignmentFilter, DeleteOutcome, PutOutcome, api_versions};
pub use error::AzureError;
pub use graph_groups::{DirectoryObject, GraphGroup, GroupOutcome, MemberChange};
pub use http::{ClientStats, Operation, RequestContext, RequestObserver};
pub use inventory::{Inventory, InventoryOptions, InventorySource};
pub use ops::{AzureConnect, AzureOps, WriteBudget};
pub use ratelimit::{BucketSpec, RateLimits, WindowSpec};
pub use retry::RetryPolicy;
pub use token::{
    ARM_SCOPE, GRAPH_SCOPE, MONITOR_SCOPE, ManagedIdentityOptions, TokenClaims, TokenSource,
    developer_tools_credential, managed_identity_credential,
};
pub use wire::{Subscription, cluster_from_arm, registry_from_arm, role_assignment_from_arm};

use http::Transport;
use ratelimit::RateLimiter;

pub const PUBLIC_ARM_ENDPOINT: &str = "https://management.azure.com/";
pub const PUBLIC_GRAPH_ENDPOINT: &str = "https://graph.microsoft.com/";

/// How to build an [`AzureClient`].
#[derive(Clone)]
pub struct ClientOptions {
    pub arm_endpoint: Url,
    pub graph_endpoint: Url,
    /// Defaults to the ARM endpoint (where Resource Graph lives in Azure).
    pub resource_graph_endpoint: Option<Url>,
    pub credential: Arc<dyn TokenCredential>,
    pub retry: RetryPolicy,
    pub rate_limits: RateLimits,
    /// Requests in flight at once, across all callers of the client.
    pub max_concurrency: usize,
    pub user_agent: String,
    /// Pages followed per list before giving up (a runaway `nextLink` chain).
    pub max_pages: usize,
    /// `$top` of Microsoft Graph lists (members, `transitiveMemberOf`, groups): 1 to 999, Graph's maximum.
    pub graph_page_size: u16,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("arm_endpoint", &self.arm_endpoint.as_str())
            .field("graph_endpoint", &self.graph_endpoint.as_str())
            .field(
                "resource_graph_endpoint",
                &self.resource_graph_endpoint.as_ref().map(Url::as_str),
            )
            .field("retry", &self.retry)
            .field("rate_limits", &self.rate_limits)
            .field("max_concurrency", &self.max_concurrency)
            .field("user_agent", &self.user_agent)
            .field("max_pages", &self.max_pages)
            .field("graph_page_size", &self.graph_page_size)
            .finish_non_exhaustive()
    }
}

impl ClientOptions {
    pub fn new(
        arm_endpoint: Url,
        graph_endpoint: Url,
        credential: Arc<dyn TokenCredential>,
    ) -> Self {
        Self {
            arm_endpoint,
            graph_endpoint,
            resource_graph_endpoint: None,
            credential,
            retry: RetryPolicy::default(),
            rate_limits: RateLimits::default(),
            max_concurrency: 16,
            user_agent: concat!("acr-autoattach/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_pages: 2_000,
            graph_page_size: 999,
            observer: None,
        }
    }

    /// Public Azure endpoints.
    pub fn azure_public(credential: Arc<dyn TokenCredential>) -> Result<Self, AzureError> {
        let parse = |s: &str| Url::parse(s).map_err(|e| AzureError::InvalidRequest(e.to_string()));
        Ok(Self::new(
            parse(PUBLIC_ARM_ENDPOINT)?,
            parse(PUBLIC_GRAPH_ENDPOINT)?,
            credential,
        ))
    }

    /// The managed identity of the function app (user-assigned when `AZURE_CLIENT_ID` is set), against
    /// the given endpoints.
    pub fn managed_identity(
        arm_endpoint: Url,
        graph_endpoint: Url,
        identity: &ManagedIdentityOptions,
    ) -> Result<Self, AzureError> {
        Ok(Self::new(
            arm_endpoint,
            graph_endpoint,
            managed_identity_credential(identity)?,
        ))
    }

    /// An operator's `az login` session (`DeveloperToolsCredential`).
    pub fn developer_tools(arm_endpoint: Url, graph_endpoint: Url) -> Result<Self, AzureError> {
        Ok(Self::new(
            arm_endpoint,
            graph_endpoint,
            developer_tools_credential()?,
        ))
    }
}

pub(crate) struct Inner {
    pub transport: Transport,
    pub arm: Url,
    pub graph: Url,
    pub resource_graph: Url,
    pub max_pages: usize,
    pub graph_page_size: u16,
}

/// The shared client. Clone freely: clones share the HTTP pool, tokens, buckets and statistics.
#[derive(Clone)]
pub struct AzureClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for AzureClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureClient")
            .field("arm", &self.inner.arm.as_str())
            .finish_non_exhaustive()
    }
}

impl AzureClient {
    pub fn new(options: ClientOptions) -> Result<Self, AzureError> {
        let http = reqwest::Client::builder()
            .user_agent(options.user_agent.clone())
            .connect_timeout(Duration::from_secs(10))
            .pool_idle_timeout(Duration::from_mins(1))
            // A redirect could carry the bearer token elsewhere; ARM does not redirect these calls.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AzureError::Connect(format!("cannot build the HTTP client: {e}")))?;
        let resource_graph = options
            .resource_graph_endpoint
            .clone()
            .unwrap_or_else(|| options.arm_endpoint.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport {
                    http,
                    tokens: TokenSource::new(options.credential),
                    retry: options.retry,
                    limiter: RateLimiter::new(options.rate_limits),
                    semaphore: Semaphore::new(options.max_concurrency.max(1)),
                    stats: Mutex::new(ClientStats::default()),
                    observer: options.observer,
                },
                arm: options.arm_endpoint,
                graph: options.graph_endpoint,
                resource_graph,
                max_pages: options.max_pages.max(1),
                graph_page_size: options.graph_page_size.clamp(1, 999),
            }),
        })
    }

    /// A handle whose calls all end before `ctx.deadline`.
    pub fn scoped(&self, ctx: RequestContext) -> ScopedClient {
        ScopedClient {
            client: self.clone(),
            ctx: Arc::new(ctx),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    pub fn with_deadline(&self, deadline: Instant) -> ScopedClient {
        self.scoped(RequestContext::new(deadline))
    }

    /// Every request sent so far, by operation and status class.
    pub fn stats(&self) -> ClientStats {
        self.inner.transport.stats()
    }

    pub(crate) fn limiter(&self) -> &RateLimiter {
        &self.inner.transport.limiter
    }

    /// Who the ARM token says we are (fetched on demand), for the tenant check and diagnostics.
    pub async fn identity(&self, deadline: Instant) -> Result<TokenClaims, AzureError> {
        let (_, claims) = self
            .inner
            .transport
            .tokens
            .token(ARM_SCOPE, deadline)
            .await?;
        Ok(claims)
    }
}

/// A per-invocation view of the client: the deadline and correlation id, and a count of the requests sent
/// through this handle (for "requests per run" figures).
#[derive(Clone)]
pub struct ScopedClient {
    client: AzureClient,
    ctx: Arc<RequestContext>,
    sent: Arc<AtomicU64>,
}

impl fmt::Debug for ScopedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopedClient")
            .field("ctx", &self.ctx)
            .finish_non_exhaustive()
    }
}

impl ScopedClient {
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    pub fn deadline(&self) -> Instant {
        self.ctx.deadline
    }

    pub fn client(&self) -> &AzureClient {
        &self.client
    }

    /// HTTP requests (attempts, retries included) sent through this handle and its clones.
    pub fn requests_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// The same client, counter and correlation id, with an earlier deadline (never a later one).
    #[must_use]
    pub fn narrowed(&self, deadline: Instant) -> ScopedClient {
        ScopedClient {
            client: self.client.clone(),
            ctx: Arc::new(RequestContext {
                deadline: deadline.min(self.ctx.deadline),
                invocation_id: self.ctx.invocation_id.clone(),
            }),
            sent: self.sent.clone(),
        }
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.client.inner
    }

    pub(crate) async fn execute(&self, call: &http::Call<'_>) -> Result<http::Reply, AzureError> {
        self.client
            .inner
            .transport
            .execute(&self.ctx, &self.sent, call)
            .await
    }
}
