//! The request engine every operation goes through: token, client-side rate limit, bounded concurrency,
//! deadline-bounded attempts, retries, accounting and one tracing span per HTTP request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;
use url::Url;

use super::error::{AzureError, error_from_status, truncate};
use super::ratelimit::{
    LimitKey, MAX_SERVER_PAUSE, RateLimiter, RequestClass, parse_quota_resets_after, pause_end,
};
use super::retry::{Decision, RetryPolicy, parse_retry_after};
use super::token::{ARM_SCOPE, GRAPH_SCOPE, TokenSource};

/// Every request is counted under one of these stable labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    GetCluster,
    ListClusters,
    ListRegistries,
    GetRegistry,
    ListRoleAssignments,
    PutRoleAssignment,
    DeleteRoleAssignment,
    GetRoleDefinition,
    ListSubscriptions,
    GraphServicePrincipal,
    GraphFindGroup,
    GraphCreateGroup,
    GraphGroupOwners,
    GraphAddMember,
    GraphRemoveMember,
    GraphListMembers,
    GraphTransitiveMembers,
    GraphTransitiveMemberOf,
    ResourceGraph,
}

impl Operation {
    pub const ALL: [Self; 19] = [
        Self::GetCluster,
        Self::ListClusters,
        Self::ListRegistries,
        Self::GetRegistry,
        Self::ListRoleAssignments,
        Self::PutRoleAssignment,
        Self::DeleteRoleAssignment,
        Self::GetRoleDefinition,
        Self::ListSubscriptions,
        Self::GraphServicePrincipal,
        Self::GraphFindGroup,
        Self::GraphCreateGroup,
        Self::GraphGroupOwners,
        Self::GraphAddMember,
        Self::GraphRemoveMember,
        Self::GraphListMembers,
        Self::GraphTransitiveMembers,
        Self::GraphTransitiveMemberOf,
        Self::ResourceGraph,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::GetCluster => "get_cluster",
            Self::ListClusters => "list_clusters",
            Self::ListRegistries => "list_registries",
            Self::GetRegistry => "get_registry",
            Self::ListRoleAssignments => "list_role_assignments",
            Self::PutRoleAssignment => "put_role_assignment",
            Self::DeleteRoleAssignment => "delete_role_assignment",
            Self::GetRoleDefinition => "get_role_definition",
            Self::ListSubscriptions => "list_subscriptions",
            Self::GraphServicePrincipal => "graph_service_principal",
            Self::GraphFindGroup => "graph_find_group",
            Self::GraphCreateGroup => "graph_create_group",
            Self::GraphGroupOwners => "graph_group_owners",
            Self::GraphAddMember => "graph_add_member",
            Self::GraphRemoveMember => "graph_remove_member",
            Self::GraphListMembers => "graph_list_members",
            Self::GraphTransitiveMembers => "graph_transitive_members",
            Self::GraphTransitiveMemberOf => "graph_transitive_member_of",
            Self::ResourceGraph => "resource_graph",
        }
    }
}

/// Told about every HTTP request the client sends (one call per attempt).
pub trait RequestObserver: Send + Sync {
    /// `status` is `None` when no response arrived (connection error, timeout).
    fn on_request(
        &self,
        operation: &'static str,
        status: Option<u16>,
        throttled: bool,
        elapsed: Duration,
    );
}

/// `2xx`, `3xx`, `4xx`, `429`, `5xx` or `no_response`.
pub fn status_class(status: Option<u16>) -> &'static str {
    match status {
        None => "no_response",
        Some(429) => "429",
        Some(s) if (200..300).contains(&s) => "2xx",
        Some(s) if (300..400).contains(&s) => "3xx",
        Some(s) if (400..500).contains(&s) => "4xx",
        Some(_) => "5xx",
    }
}

/// A snapshot of the requests a client sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// operation → status class → requests.
    pub requests: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// Attempts that were repeats of a failed one.
    pub retries: u64,
    /// Requests that had to wait for the client-side rate limiter, and the total wait.
    pub rate_limited_waits: u64,
    pub rate_limited_wait_ms: u64,
}

impl ClientStats {
    pub fn total(&self) -> u64 {
        self.requests.values().flat_map(BTreeMap::values).sum()
    }

    pub fn operation(&self, op: Operation) -> u64 {
        self.requests
            .get(op.as_str())
            .map_or(0, |m| m.values().sum())
    }

    /// Requests answered 429.
    pub fn throttled(&self) -> u64 {
        self.requests.values().filter_map(|m| m.get("429")).sum()
    }

    pub fn by_class(&self, class: &str) -> u64 {
        self.requests.values().filter_map(|m| m.get(class)).sum()
    }
}

/// The deadline (and correlation id) of one invocation; every call made under it ends before it.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub deadline: Instant,
    /// The Functions invocation id, sent as `x-ms-correlation-request-id` when it is a GUID.
    pub invocation_id: Option<String>,
}

impl RequestContext {
    pub fn new(deadline: Instant) -> Self {
        Self {
            deadline,
            invocation_id: None,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    Arm,
    ResourceGraph,
    Graph,
}

pub(crate) struct Call<'a> {
    pub op: Operation,
    pub method: Method,
    pub url: Url,
    pub body: Option<&'a serde_json::Value>,
    pub audience: Audience,
    /// Only a role-assignment PUT may see `PrincipalNotFound` as "try again later".
    pub retry_principal_not_found: bool,
}

#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self, op: Operation) -> Result<serde_json::Value, AzureError> {
        serde_json::from_slice(&self.body).map_err(|e| AzureError::Decode {
            operation: op.as_str(),
            message: truncate(&e.to_string(), 200),
        })
    }
}

/// Bodies larger than this are refused rather than buffered.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What sends requests: the HTTP client, tokens, retry policy, rate limits and the concurrency cap.
pub(crate) struct Transport {
    pub http: reqwest::Client,
    pub tokens: TokenSource,
    pub retry: RetryPolicy,
    pub limiter: RateLimiter,
    pub semaphore: Semaphore,
    pub stats: Mutex<ClientStats>,
    pub observer: Option<Arc<dyn RequestObserver>>,
}

/// The client-side budget a call draws from: ARM's bucket per principal, subscription and read/write class,
/// Resource Graph's quota per principal; Graph has none here.
fn limit_key(call: &Call<'_>, object_id: Option<&str>) -> Option<LimitKey> {
    match call.audience {
        Audience::ResourceGraph => Some(LimitKey::ResourceGraph {
            principal: object_id.unwrap_or("unknown").to_ascii_lowercase(),
        }),
        Audience::Arm => Some(LimitKey::arm(
            object_id,
            &subscription_of(call.url.path()),
            RequestClass::for_method(&call.method),
        )),
        Audience::Graph => None,
    }
}

/// The subscription a request counts against (ARM throttles per subscription); `""` for tenant-level calls.
pub(crate) fn subscription_of(path: &str) -> String {
    let mut segs = path.trim_start_matches('/').split('/');
    match (segs.next(), segs.next()) {
        (Some(first), Some(sub)) if first.eq_ignore_ascii_case("subscriptions") => {
            sub.to_ascii_lowercase()
        }
        _ => String::new(),
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `retry-after-ms` / `x-ms-retry-after-ms` (Azure) take precedence over `Retry-After`. Capped at
/// [`MAX_SERVER_PAUSE`]: no answer can make the client wait longer than that.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = header_str(headers, name).and_then(|v| v.trim().parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms).min(MAX_SERVER_PAUSE));
        }
    }
    header_str(headers, "retry-after")
        .and_then(|v| parse_retry_after(v, now))
        .map(|d| d.min(MAX_SERVER_PAUSE))
}

impl Transport {
    fn record(&self, op: Operation, status: Option<u16>, elapsed: Duration) {
        {
            let mut stats = self
                .stats
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *stats
                .requests
                .entry(op.as_str())
                .or_default()
                .entry(status_class(status))
                .or_default() += 1;
        }
        if let Some(observer) = &self.observer {
            observer.on_request(op.as_str(), status, status == Some(429), elapsed);
        }
    }

    fn bump(&self, f: impl FnOnce(&mut ClientStats)) {
        f(&mut self
            .stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends `call` until it succeeds (2xx), fails for good, or the deadline would pass.
    pub async fn execute(
        &self,
        ctx: &RequestContext,
        sent: &AtomicU64,
        call: &Call<'_>,
    ) -> Result<Reply, AzureError> {
        let scope = match call.audience {
            Audience::Arm | Audience::ResourceGraph => ARM_SCOPE,
            Audience::Graph => GRAPH_SCOPE,
        };
        let mut attempt: u32 = 0;
        let mut refreshed_token = false;
        loop {
            attempt += 1;
            if Instant::now() >= ctx.deadline {
                return Err(AzureError::DeadlineExceeded {
                    during: "starting a request",
                });
            }
            let outcome = self.attempt(ctx, sent, call, scope, attempt).await;
            let error = match outcome {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if matches!(error, AzureError::PrincipalNotFound { .. })
                && !call.retry_principal_not_found
            {
                return Err(error);
            }
            // A 401 may be a token revoked or expired early: one more try with a fresh token (the cached
            // one was dropped), as the SDKs' bearer-token policies do.
            if matches!(error, AzureError::Unauthorized { .. }) && !refreshed_token {
                refreshed_token = true;
                self.bump(|s| s.retries += 1);
                continue;
            }
            match self
                .retry
                .decide(&error, attempt, Instant::now(), ctx.deadline)
            {
                Decision::RetryAfter(wait) => {
                    tracing::debug!(
                        azure.operation = call.op.as_str(),
                        error.type = error.kind(),
                        wait_ms = wait.as_millis() as u64,
                        attempt,
                        "retrying Azure request"
                    );
                    self.bump(|s| s.retries += 1);
                    tokio::time::sleep(wait).await;
                }
                Decision::GiveUp => return Err(error),
            }
        }
    }

    async fn attempt(
        &self,
        ctx: &RequestContext,
        sent: &AtomicU64,
        call: &Call<'_>,
        scope: &'static str,
        attempt: u32,
    ) -> Result<Reply, AzureError> {
        let (token, claims) = self.tokens.token(scope, ctx.deadline).await?;
        let key = limit_key(call, claims.object_id.as_deref());
        if let Some(key) = &key {
            self.wait_for_budget(key, ctx.deadline).await?;
        }
        let permit = tokio::time::timeout_at(ctx.deadline, self.semaphore.acquire())
            .await
            .map_err(|_| AzureError::DeadlineExceeded {
                during: "waiting for a free connection slot",
            })
            .and_then(|p| p.map_err(|_| AzureError::Connect("the client is shutting down".into())));
        let start = Instant::now();
        let left = ctx.deadline.saturating_duration_since(start);
        let _permit = match permit {
            Ok(_) if left.is_zero() => Err(AzureError::DeadlineExceeded {
                during: "starting a request",
            }),
            other => other,
        }
        .inspect_err(|_| self.no_answer(key.as_ref()))?;
        let deadline_bound = left < self.retry.per_request_timeout;
        let timeout = left.min(self.retry.per_request_timeout);

        let request = self.build_request(call, token.secret(), ctx, timeout);

        let span = super::span::request_span(call.op, call.method.as_str(), &call.url, attempt - 1);
        sent.fetch_add(1, Ordering::Relaxed);
        let result = async {
            let response = request.send().await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = read_body(response).await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        }
        .instrument(span.clone())
        .await;
        let elapsed = start.elapsed();

        let (status, headers, body) = match result {
            Ok(ok) => ok,
            Err(e) => {
                // A body-read failure after headers still counts as "no response" for accounting.
                self.record(call.op, None, elapsed);
                self.no_answer(key.as_ref());
                let error = if e.is_timeout() {
                    if deadline_bound {
                        AzureError::DeadlineExceeded {
                            during: "waiting for Azure to answer",
                        }
                    } else {
                        AzureError::Timeout
                    }
                } else {
                    // Refused, reset, TLS or a broken body: no usable answer, retried alike.
                    AzureError::Connect(truncate(&without_url(&e), 200))
                };
                super::span::record_answer(&span, None, error.kind());
                return Err(error);
            }
        };
        super::span::record_answer(&span, Some(status), "");
        self.record(call.op, Some(status), elapsed);
        if body.len() > MAX_BODY_BYTES {
            return Err(AzureError::Decode {
                operation: call.op.as_str(),
                message: "answer too large".into(),
            });
        }

        self.judge_answer(scope, key.as_ref(), status, &headers, body)
            .await
    }

    /// Waits for the client-side budget of `key` (ARM's buckets, Resource Graph's quota), counting the wait.
    async fn wait_for_budget(&self, key: &LimitKey, deadline: Instant) -> Result<(), AzureError> {
        let waited = self.limiter.acquire(key, deadline).await?;
        if !waited.is_zero() {
            self.bump(|s| {
                s.rate_limited_waits += 1;
                s.rate_limited_wait_ms += waited.as_millis() as u64;
            });
        }
        Ok(())
    }

    /// The HTTP request of one attempt: bearer token, client and correlation ids, body, timeout.
    fn build_request(
        &self,
        call: &Call<'_>,
        token: &str,
        ctx: &RequestContext,
        timeout: Duration,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(call.method.clone(), call.url.clone())
            .bearer_auth(token)
            .header("x-ms-client-request-id", uuid::Uuid::new_v4().to_string())
            .timeout(timeout);
        if let Some(id) = ctx
            .invocation_id
            .as_deref()
            .and_then(|i| uuid::Uuid::parse_str(i).ok())
        {
            request = request.header("x-ms-correlation-request-id", id.to_string());
        }
        if let Some(body) = call.body {
            request = request.json(body);
        } else if call.method == Method::PUT || call.method == Method::POST {
            request = request.header(reqwest::header::CONTENT_LENGTH, "0");
        }
        request
    }

    /// An answer's verdict: the budget Azure says is left, then 2xx is the reply and anything else an error
    /// (a 401 drops the cached token; a 429 pauses the bucket until Azure's `Retry-After`).
    async fn judge_answer(
        &self,
        scope: &'static str,
        key: Option<&LimitKey>,
        status: u16,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Reply, AzureError> {
        let now = Instant::now();
        if let Some(key) = key {
            self.observe_quota(key, status, headers, now);
        }
        if (200..300).contains(&status) {
            return Ok(Reply { status, body });
        }
        let wait = retry_after(headers, SystemTime::now());
        let error = error_from_status(status, &body, wait);
        if status == 401 {
            self.tokens.invalidate(scope).await;
        }
        if status == 429
            && let (Some(key), Some(wait)) = (key, wait)
        {
            self.limiter.block_until(key, now, pause_end(now, wait));
        }
        Err(error)
    }

    /// A request under `key` got no answer: if it was its bucket's probe, another caller probes.
    fn no_answer(&self, key: Option<&LimitKey>) {
        if let Some(key) = key {
            self.limiter.no_answer(key, Instant::now());
        }
    }

    /// What an answer says about the budget left. ARM's `x-ms-ratelimit-remaining-subscription-*` bounds the
    /// bucket (a 429 without it means none left); any answer confirms the bucket, ending its probe.
    fn observe_quota(&self, key: &LimitKey, status: u16, headers: &HeaderMap, now: Instant) {
        match key {
            LimitKey::Arm { class, .. } => {
                let remaining = header_str(headers, class.remaining_header())
                    .and_then(|v| v.trim().parse::<f64>().ok())
                    .or((status == 429).then_some(0.0));
                self.limiter.observe_answer(key, now, remaining);
            }
            LimitKey::ResourceGraph { .. } => {
                let remaining = header_str(headers, "x-ms-user-quota-remaining")
                    .and_then(|v| v.trim().parse::<i64>().ok());
                let resets = header_str(headers, "x-ms-user-quota-resets-after")
                    .and_then(parse_quota_resets_after);
                match (remaining, resets) {
                    (Some(remaining), Some(resets)) if remaining <= 0 => {
                        self.limiter.block_until(key, now, pause_end(now, resets));
                    }
                    (Some(remaining), Some(resets)) => {
                        let remaining = usize::try_from(remaining).unwrap_or(usize::MAX);
                        self.limiter
                            .observe_window_quota(key, now, remaining, resets);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// reqwest's error text includes the URL; ours must not (a query could carry something sensitive).
fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), url.path());
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

async fn read_body(mut response: reqwest::Response) -> Result<Bytes, reqwest::Error> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = response.chunk().await? {
        if buf.len() + chunk.len() > MAX_BODY_BYTES {
            // Stop reading; the caller sees an over-long body and refuses it.
            buf.extend_from_slice(&chunk);
            break;
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Appends query parameters percent-encoded with `%20` for spaces (not `+`, which OData filters would read
/// literally on some servers).
pub(crate) fn set_query(url: &mut Url, pairs: &[(&str, &str)]) {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                url::form_urlencoded::byte_serialize(s.as_bytes())
                    .collect::<String>()
                    .replace('+', "%20")
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect();
    url.set_query(Some(&encoded.join("&")));
}

/// `base` + `path` (the base may carry a path prefix of its own).
pub(crate) fn join(base: &Url, path: &str) -> Result<Url, AzureError> {
    if path.contains(['?', '#']) || path.split('/').any(|seg| seg == "..") {
        return Err(AzureError::InvalidRequest(format!("unsafe path `{path}`")));
    }
    let mut url = base.clone();
    let prefix = base.path().trim_end_matches('/');
    url.set_path(&format!("{prefix}/{}", path.trim_start_matches('/')));
    url.set_query(None);
    Ok(url)
}

/// Same scheme, host and port: a `nextLink` must not carry our token anywhere else.
pub(crate) fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subscription_keys_and_status_classes() {
        assert_eq!(
            subscription_of("/subscriptions/ABC/resourceGroups/x"),
            "abc"
        );
        assert_eq!(subscription_of("/subscriptions"), "");
        assert_eq!(
            subscription_of("/providers/Microsoft.ResourceGraph/resources"),
            ""
        );
        assert_eq!(status_class(Some(201)), "2xx");
        assert_eq!(status_class(Some(429)), "429");
        assert_eq!(status_class(Some(404)), "4xx");
        assert_eq!(status_class(Some(503)), "5xx");
        assert_eq!(status_class(None), "no_response");
    }

    #[test]
    fn urls_are_joined_and_queries_encoded() {
        let base = Url::parse("http://127.0.0.1:8080/arm/").unwrap();
        let mut u = join(
            &base,
            "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments",
        )
        .unwrap();
        set_query(
            &mut u,
            &[
                ("api-version", "2022-04-01"),
                ("$filter", "principalId eq 'a+b'"),
            ],
        );
        assert_eq!(
            u.as_str(),
            "http://127.0.0.1:8080/arm/subscriptions/s/providers/Microsoft.Authorization/roleAssignments?api-version=2022-04-01&%24filter=principalId%20eq%20%27a%2Bb%27"
        );
        assert!(join(&base, "/subscriptions/s?x=1").is_err());
        assert!(join(&base, "/subscriptions/../x").is_err());
        let other = Url::parse("http://127.0.0.1:9090/x").unwrap();
        assert!(!same_origin(&base, &other));
        assert!(same_origin(
            &base,
            &Url::parse("http://127.0.0.1:8080/y?z").unwrap()
        ));
    }

    #[test]
    fn azure_retry_after_headers_take_precedence() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_secs(7))
        );
        h.insert("x-ms-retry-after-ms", "1500".parse().unwrap());
        assert_eq!(
            retry_after(&h, SystemTime::now()),
            Some(Duration::from_millis(1500))
        );
    }

    #[test]
    fn stats_sum_by_operation_and_class() {
        let mut s = ClientStats::default();
        s.requests
            .entry("get_cluster")
            .or_default()
            .insert("2xx", 3);
        s.requests
            .entry("get_cluster")
            .or_default()
            .insert("429", 2);
        s.requests
            .entry("list_clusters")
            .or_default()
            .insert("2xx", 1);
        assert_eq!(s.total(), 6);
        assert_eq!(s.operation(Operation::GetCluster), 5);
        assert_eq!(s.throttled(), 2);
        assert_eq!(s.by_class("2xx"), 4);
        // Every operation has its own label (the metric label): a new operation cannot hide behind another's.
        let labels: std::collections::BTreeSet<&str> =
            Operation::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(labels.len(), Operation::ALL.len());
    }

    proptest::proptest! {
        /// `retry-after-ms`, `x-ms-retry-after-ms` and `Retry-After` of any value: never a panic, never a wait
        /// longer than MAX_SERVER_PAUSE.
        #[test]
        fn retry_after_headers_are_capped(
            ms in "[0-9]{0,30}",
            secs in "[0-9.eE+-]{0,30}",
            which in 0usize..3,
        ) {
            let mut h = HeaderMap::new();
            let name = ["retry-after-ms", "x-ms-retry-after-ms", "retry-after"][which];
            let value = if which == 2 { &secs } else { &ms };
            if let Ok(v) = value.parse() {
                h.insert(name, v);
            }
            if let Some(d) = retry_after(&h, SystemTime::now()) {
                proptest::prop_assert!(d <= MAX_SERVER_PAUSE);
            }
        }
    }

    #[test]
    fn an_uncapped_retry_after_is_capped() {
        let mut h = HeaderMap::new();
        h.insert("retry-after-ms", "18446744073709551615".parse().unwrap());
        assert_eq!(retry_after(&h, SystemTime::now()), Some(MAX_SERVER_PAUSE));
        let mut h = HeaderMap::new();
        h.insert("retry-after", "99999999999".parse().unwrap());
        assert_eq!(retry_after(&h, SystemTime::now()), Some(MAX_SERVER_PAUSE));
    }
}
