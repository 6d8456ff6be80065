//! Domain types shared by the pure core (events, selectors, planner) and the edges (Azure client, host,
//! telemetry). Data only: nothing here performs I/O.

use std::collections::BTreeMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// An ARM resource id (or scope). Azure compares ids case-insensitively and returns them in varying case
/// (`resourcegroups` vs `resourceGroups`), so equality, ordering and hashing ignore ASCII case while the
/// original spelling is kept for display. The text is shared (`Arc<str>`): a clone, as every plan item and pair
/// result makes of its cluster's and registry's ids, costs a reference count, not a copy of the id.
#[derive(Clone)]
pub struct ResourceId(Arc<str>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceIdError {
    #[error("resource id is empty")]
    Empty,
    #[error("resource id `{0}` does not start with /subscriptions/{{id}}")]
    NoSubscription(String),
    #[error("resource id `{0}` has an empty segment")]
    EmptySegment(String),
}

impl ResourceId {
    /// Parses an ARM id. Surrounding whitespace and a trailing `/` are dropped; the id must start with
    /// `/subscriptions/{id}` and have no empty segment.
    pub fn parse(raw: &str) -> Result<Self, ResourceIdError> {
        let trimmed = raw.trim().trim_end_matches('/');
        if trimmed.is_empty() {
            return Err(ResourceIdError::Empty);
        }
        let with_slash: Arc<str> = if trimmed.starts_with('/') {
            Arc::from(trimmed)
        } else {
            Arc::from(format!("/{trimmed}"))
        };
        let mut segments = with_slash[1..].split('/');
        let first = segments.next().unwrap_or_default();
        let sub = segments.next().unwrap_or_default();
        if !first.eq_ignore_ascii_case("subscriptions") || sub.is_empty() {
            return Err(ResourceIdError::NoSubscription(raw.to_owned()));
        }
        if with_slash[1..].split('/').any(str::is_empty) {
            return Err(ResourceIdError::EmptySegment(raw.to_owned()));
        }
        Ok(Self(with_slash))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id lower-cased: the key for maps and for the deterministic assignment name.
    pub fn key(&self) -> String {
        self.0.to_ascii_lowercase()
    }

    fn segments(&self) -> impl Iterator<Item = &str> {
        self.0[1..].split('/')
    }

    pub fn subscription_id(&self) -> &str {
        self.segments().nth(1).unwrap_or_default()
    }

    /// The resource group name, when the id lies inside one.
    pub fn resource_group(&self) -> Option<&str> {
        let mut it = self.segments().skip(2);
        match (it.next(), it.next()) {
            (Some(k), Some(v)) if k.eq_ignore_ascii_case("resourcegroups") => Some(v),
            _ => None,
        }
    }

    /// `namespace/type[/childType…]` lower-cased, e.g. `microsoft.containerservice/managedclusters`;
    /// `None` for a subscription or resource group scope.
    pub fn resource_type(&self) -> Option<String> {
        let segs: Vec<&str> = self.segments().collect();
        let p = segs
            .iter()
            .rposition(|s| s.eq_ignore_ascii_case("providers"))?;
        let rest = &segs[p + 1..];
        if rest.len() < 3 {
            return None;
        }
        let mut t = rest[0].to_ascii_lowercase();
        for (i, s) in rest[1..].iter().enumerate() {
            if i % 2 == 0 {
                t.push('/');
                t.push_str(&s.to_ascii_lowercase());
            }
        }
        Some(t)
    }

    /// The last segment (the resource's name).
    pub fn name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The subscription scope `/subscriptions/{id}` in the id's own spelling.
    pub fn subscription_scope(&self) -> String {
        format!("/subscriptions/{}", self.subscription_id())
    }

    /// The resource group scope, when the id lies inside one.
    pub fn resource_group_scope(&self) -> Option<String> {
        self.resource_group().map(|rg| {
            format!(
                "/subscriptions/{}/resourceGroups/{rg}",
                self.subscription_id()
            )
        })
    }

    /// True when the id is exactly `/subscriptions/{s}/resourceGroups/{rg}/providers/{namespace}/{type}/{name}`
    /// for `kind` (compared case-insensitively): no nested provider, no child segment, not at subscription
    /// level. The only shape in which this project accepts a cluster or registry id (issue 10, rule 1).
    pub fn is_exact(&self, kind: ArmKind) -> bool {
        let (namespace, type_name) = kind.namespace_and_type();
        // `None`: any value (the subscription, resource group and resource names).
        let shape = [
            Some("subscriptions"),
            None,
            Some("resourceGroups"),
            None,
            Some("providers"),
            Some(namespace),
            Some(type_name),
            None,
        ];
        let mut segs = self.segments();
        shape.iter().all(|want| {
            segs.next()
                .is_some_and(|s| want.is_none_or(|w| s.eq_ignore_ascii_case(w)))
        }) && segs.next().is_none()
    }

    /// True when `scope` is this id or one of its ancestors (compared case-insensitively, on segment
    /// boundaries). `/` (the root / a management group path that does not start with /subscriptions) is not
    /// handled here.
    pub fn is_within(&self, scope: &str) -> bool {
        let scope = scope.trim().trim_end_matches('/').as_bytes();
        let me = self.0.as_bytes();
        me.get(..scope.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scope))
            && matches!(me.get(scope.len()), None | Some(b'/'))
    }
}

/// The two resource types whose ids this project acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ArmKind {
    ManagedCluster,
    Registry,
}

impl ArmKind {
    /// The provider namespace and the resource type, as ARM spells them.
    pub fn namespace_and_type(self) -> (&'static str, &'static str) {
        match self {
            Self::ManagedCluster => ("Microsoft.ContainerService", "managedClusters"),
            Self::Registry => ("Microsoft.ContainerRegistry", "registries"),
        }
    }
}

/// True for the canonical GUID shape `8-4-4-4-12` hex digits (subscription ids in events must be GUIDs).
pub fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

impl TryFrom<String> for ResourceId {
    type Error = ResourceIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ResourceId> for String {
    fn from(value: ResourceId) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl PartialEq for ResourceId {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}
impl Eq for ResourceId {}
impl Hash for ResourceId {
    /// The lower-cased bytes, fed in chunks (byte by byte costs a hasher round per byte).
    fn hash<H: Hasher>(&self, state: &mut H) {
        let mut lower = [0u8; 64];
        for chunk in self.0.as_bytes().chunks(lower.len()) {
            let lower = &mut lower[..chunk.len()];
            lower.copy_from_slice(chunk);
            lower.make_ascii_lowercase();
            state.write(lower);
        }
        state.write_u8(0xff);
    }
}
impl PartialOrd for ResourceId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ResourceId {
    /// The order of the lower-cased ids ([`ResourceId::key`]), without building them.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let (a, b) = (self.0.as_bytes(), other.0.as_bytes());
        // The first byte that differs ignoring case decides; ids share long prefixes, which this skips fast.
        a.iter()
            .zip(b)
            .map(|(x, y)| (x.to_ascii_lowercase(), y.to_ascii_lowercase()))
            .find(|(x, y)| x != y)
            .map_or_else(|| a.len().cmp(&b.len()), |(x, y)| x.cmp(&y))
    }
}
impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResourceId({})", self.0)
    }
}

/// Resource tags. Keys compare case-insensitively (as Azure does), values case-sensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tags(BTreeMap<String, String>);

impl Tags {
    pub fn new(map: BTreeMap<String, String>) -> Self {
        Self(map)
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// What `az`/the handler runs in: `enforce` creates what is missing, `audit` only verifies and reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Enforce,
    Audit,
}

/// A registry's `properties.roleAssignmentMode` (2025-11-01 and later; absent means legacy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RoleAssignmentMode {
    #[default]
    LegacyRegistryPermissions,
    AbacRepositoryPermissions,
}

/// The only roles this project ever assigns: a hard allow-list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PullRole {
    AcrPull,
    #[serde(rename = "Container Registry Repository Reader")]
    RepositoryReader,
}

pub const ACR_PULL_GUID: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
pub const REPOSITORY_READER_GUID: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";

impl PullRole {
    /// The role a registry in `mode` honours for pulls.
    pub fn for_mode(mode: RoleAssignmentMode) -> Self {
        match mode {
            RoleAssignmentMode::LegacyRegistryPermissions => Self::AcrPull,
            RoleAssignmentMode::AbacRepositoryPermissions => Self::RepositoryReader,
        }
    }

    /// The built-in role definition GUID (lower-case).
    pub fn definition_guid(self) -> &'static str {
        match self {
            Self::AcrPull => ACR_PULL_GUID,
            Self::RepositoryReader => REPOSITORY_READER_GUID,
        }
    }

    /// The full role definition id to send in a PUT at a registry in `subscription_id`.
    pub fn definition_id(self, subscription_id: &str) -> String {
        [
            "/subscriptions/",
            subscription_id,
            "/providers/Microsoft.Authorization/roleDefinitions/",
            self.definition_guid(),
        ]
        .concat()
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Self::AcrPull => "AcrPull",
            Self::RepositoryReader => "Container Registry Repository Reader",
        }
    }

    /// The allow-list check: `Some` only for one of the two pull roles.
    pub fn from_definition_guid(guid: &str) -> Option<Self> {
        let g = role_guid(guid);
        if g == ACR_PULL_GUID {
            Some(Self::AcrPull)
        } else if g == REPOSITORY_READER_GUID {
            Some(Self::RepositoryReader)
        } else {
            None
        }
    }
}

impl fmt::Display for PullRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// The trailing GUID of a role definition id in any of the forms ARM returns, lower-cased.
pub fn role_guid(role_definition_id: &str) -> String {
    role_guid_text(role_definition_id).to_ascii_lowercase()
}

/// The trailing GUID of a role definition id as written (not lower-cased): [`role_guid`] without the copy.
pub fn role_guid_text(role_definition_id: &str) -> &str {
    role_definition_id
        .trim()
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// Who must be granted pull access for a cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClusterPrincipal {
    /// `identityProfile.kubeletidentity` of a managed-identity cluster.
    Kubelet {
        object_id: String,
        client_id: Option<String>,
    },
    /// A service-principal cluster: the application (client) id; the object id comes from Microsoft Graph.
    ServicePrincipal { client_id: String },
    /// No kubelet identity yet (the cluster is still being created).
    NotYetKnown,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub id: ResourceId,
    pub location: String,
    /// The tenant the cluster lives in, when known (from the subscription or the event).
    pub tenant_id: Option<String>,
    pub tags: Tags,
    /// `properties.provisioningState` as ARM reports it.
    pub provisioning_state: String,
    pub principal: ClusterPrincipal,
}

impl Cluster {
    /// Ready for attachment: provisioning has succeeded and the kubelet identity (or SP) is known.
    pub fn is_ready(&self) -> bool {
        self.provisioning_state.eq_ignore_ascii_case("Succeeded")
            && !matches!(self.principal, ClusterPrincipal::NotYetKnown)
    }
}

/// Who gets access for a service-principal cluster, as `Observed.principals` holds it: the object id the
/// directory lookup found, or why there is none. `lookup` is `None` when the directory was not asked, and
/// `Some(None)` when it has no such application. The one wording of an unresolved principal.
pub fn service_principal_resolution(
    client_id: &str,
    lookup: Option<Option<String>>,
) -> Result<String, String> {
    match lookup {
        Some(Some(object_id)) => Ok(object_id),
        Some(None) => Err(format!(
            "no service principal with appId {client_id} in the directory"
        )),
        None => Err(SERVICE_PRINCIPAL_NOT_LOOKED_UP.to_owned()),
    }
}

/// Why a service-principal cluster's object id is unknown when the directory was not asked.
pub const SERVICE_PRINCIPAL_NOT_LOOKED_UP: &str = "service principal not looked up";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub id: ResourceId,
    pub location: String,
    pub tenant_id: Option<String>,
    pub tags: Tags,
    pub mode: RoleAssignmentMode,
}

mod role_assignment;
pub use role_assignment::{OWNERSHIP_MARK, RoleAssignment, ownership_description};
mod mark;
pub use mark::member_since_description;
mod shared_str;
pub use shared_str::{Interner, SharedStr};
mod names;
pub use names::{
    ASSIGNMENT_NAME_NAMESPACE, assignment_name, role_assignment_body, role_assignment_id,
};

/// A role definition as far as pull coverage is concerned (custom roles are judged by their actions).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinition {
    /// Lower-cased GUID.
    pub guid: String,
    pub role_name: String,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
}

/// The verification result of one (cluster, registry) pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairStatus {
    Compliant,
    Repaired,
    Missing,
    Pending,
    Failed,
    Detached,
}

impl PairStatus {
    pub const ALL: [Self; 6] = [
        Self::Compliant,
        Self::Repaired,
        Self::Missing,
        Self::Pending,
        Self::Failed,
        Self::Detached,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compliant => "compliant",
            Self::Repaired => "repaired",
            Self::Missing => "missing",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Detached => "detached",
        }
    }

    /// Whether the pair ends the run with pull access in place (or correctly without it).
    pub fn is_healthy(self) -> bool {
        matches!(self, Self::Compliant | Self::Repaired | Self::Detached)
    }
}

impl fmt::Display for PairStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairResult {
    pub cluster_id: ResourceId,
    pub registry_id: ResourceId,
    pub principal_id: Option<SharedStr>,
    pub role: Option<PullRole>,
    pub status: PairStatus,
    pub reason: Option<String>,
    /// The assignment that satisfies (or was removed for) the pair, when there is one.
    pub assignment_id: Option<SharedStr>,
    /// Seconds from the triggering event's time to the verified attach (event path only).
    pub latency_seconds: Option<f64>,
    /// Why the pair failed, typed (the human text is `reason`). In-process only: the JSON shape is unchanged.
    #[serde(skip)]
    pub failure: Option<PairFailure>,
}

/// A pair's failed write or read-back: the error kind (the metric label, e.g. `forbidden`, `throttled`) and
/// whether retrying can help. The event path retries an invocation whose pair failed transiently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairFailure {
    pub kind: &'static str,
    pub transient: bool,
    /// What happened, for people.
    pub detail: String,
}

impl PairFailure {
    /// The kind of a failure that is not an Azure error: the write was not sent before the deadline.
    pub const BUDGET_EXHAUSTED: &'static str = "budget_exhausted";
    /// The kind of a created assignment that a fresh read did not show yet.
    pub const NOT_VISIBLE: &'static str = "not_visible";

    /// A failure retrying can help with.
    pub fn transient(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            transient: true,
            detail: detail.into(),
        }
    }

    /// A failure retrying cannot help with.
    pub fn permanent(kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            kind,
            transient: false,
            detail: detail.into(),
        }
    }

    /// The pair's `reason` text: `transient: …` or `<kind>: …` (the wording reports and logs have always had).
    pub fn reason(&self) -> String {
        if self.transient {
            format!("transient: {}", self.detail)
        } else {
            format!("{}: {}", self.kind, self.detail)
        }
    }
}

/// Per-registry verification results.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistryStatus {
    InvalidSelector,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegistryResult {
    pub registry_id: ResourceId,
    pub status: RegistryStatus,
    pub reason: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn id(s: &str) -> ResourceId {
        ResourceId::parse(s).unwrap()
    }

    #[test]
    fn resource_ids_compare_case_insensitively_and_keep_spelling() {
        let a = id(
            "/subscriptions/S1/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1",
        );
        let b = id(
            "/subscriptions/s1/resourceGroups/RG/providers/microsoft.containerservice/managedclusters/AKS1/",
        );
        assert_eq!(a, b);
        assert_eq!(
            a.as_str(),
            "/subscriptions/S1/resourcegroups/rg/providers/Microsoft.ContainerService/managedClusters/aks1"
        );
        assert_eq!(a.subscription_id(), "S1");
        assert_eq!(a.resource_group(), Some("rg"));
        assert_eq!(a.name(), "aks1");
        assert_eq!(
            a.resource_type().as_deref(),
            Some("microsoft.containerservice/managedclusters")
        );
        assert!(a.is_within("/subscriptions/s1/resourceGroups/RG"));
        assert!(a.is_within("/subscriptions/s1"));
        assert!(!a.is_within("/subscriptions/s"));
        assert!(!a.is_within("/subscriptions/s1/resourceGroups/R"));
    }

    #[test]
    fn child_resource_types_and_bad_ids() {
        let t = id(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a/agentPools/p",
        );
        assert_eq!(
            t.resource_type().as_deref(),
            Some("microsoft.containerservice/managedclusters/agentpools")
        );
        assert!(ResourceId::parse("").is_err());
        assert!(ResourceId::parse("/resourceGroups/x").is_err());
        assert!(ResourceId::parse("/subscriptions//x").is_err());
        assert!(id("/subscriptions/s").resource_type().is_none());
    }

    #[test]
    fn assignment_names_are_deterministic_and_case_insensitive() {
        let r1 = id(
            "/subscriptions/S/resourceGroups/R/providers/Microsoft.ContainerRegistry/registries/Acr",
        );
        let r2 = id(
            "/subscriptions/s/resourcegroups/r/providers/microsoft.containerregistry/registries/acr",
        );
        let a = assignment_name(&r1, "ABC", PullRole::AcrPull);
        assert_eq!(a, assignment_name(&r2, "abc", PullRole::AcrPull));
        // Pinned: names already in Azure depend on it (Python: uuid5(namespace, "{registry id}|{principal}|{role
        // guid}" lower-cased)).
        assert_eq!(a.to_string(), "ba617ca2-ced5-5c6b-88a9-2c87a1b2a9de");
        assert_eq!(a, assignment_name(&r1, " ABC ", PullRole::AcrPull));
        assert_ne!(a, assignment_name(&r1, "abc", PullRole::RepositoryReader));
        assert_eq!(a.get_version_num(), 5);
    }

    #[test]
    fn ownership_mark_round_trips() {
        let c = id(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.ContainerService/managedClusters/a",
        );
        let ra = RoleAssignment {
            id: "x".into(),
            name: "x".into(),
            scope: "/".into(),
            role_definition_guid: ACR_PULL_GUID.into(),
            principal_id: "p".into(),
            principal_type: None,
            description: Some(ownership_description(&c).into()),
            condition: None,
        };
        assert!(ra.is_owned());
        assert_eq!(ra.owner_cluster(), Some(c.clone()));
        for near_miss in [
            format!("managed-by: acr-autoattachcluster={c}"),
            format!(" {}", ownership_description(&c)),
            format!("{} extra", ownership_description(&c)),
            format!("{}/agentPools/x", ownership_description(&c)),
            format!(
                "{OWNERSHIP_MARK} cluster=/subscriptions/s/providers/Microsoft.ContainerService/managedClusters/a"
            ),
        ] {
            let odd = RoleAssignment {
                description: Some(near_miss.clone().into()),
                ..ra.clone()
            };
            assert!(
                !odd.is_owned() && odd.owner_cluster().is_none(),
                "{near_miss}"
            );
        }
        let human = RoleAssignment {
            description: Some("made by alice".into()),
            ..ra
        };
        assert!(!human.is_owned());
        assert_eq!(human.owner_cluster(), None);
    }

    #[test]
    fn role_allow_list() {
        assert_eq!(
            PullRole::from_definition_guid(
                "/subscriptions/x/providers/Microsoft.Authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D"
            ),
            Some(PullRole::AcrPull)
        );
        assert_eq!(
            PullRole::from_definition_guid("8311e382-0749-4cb8-b61a-304f252e45ec"),
            None
        );
        assert_eq!(
            PullRole::for_mode(RoleAssignmentMode::AbacRepositoryPermissions),
            PullRole::RepositoryReader
        );
    }

    #[test]
    fn tags_keys_case_insensitive_values_case_sensitive() {
        let t: Tags = [("Env", "Prod")].into_iter().collect();
        assert_eq!(t.get("env"), Some("Prod"));
        assert_ne!(t.get("ENV"), Some("prod"));
    }
}

/// The outcome of one verification run over a scope (the timer, or `acr-autoattach verify`): what the report,
/// the CLI's exit code, telemetry and alerting are made from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VerificationReport {
    /// RFC 3339 time the run started.
    pub started_at: String,
    pub duration_seconds: f64,
    pub mode: Mode,
    /// Every cluster and registry in scope (registries: the opted-in ones), so a matrix can show unselected
    /// pairs too.
    pub clusters: Vec<ResourceId>,
    pub registries: Vec<ResourceId>,
    /// One result per selected (cluster, registry) pair the run reached.
    pub pairs: Vec<PairResult>,
    pub registry_results: Vec<RegistryResult>,
    /// False when the run stopped early (deadline) and some pairs were not verified.
    pub complete: bool,
    /// Pairs in scope that the run did not reach (only when `complete` is false).
    pub unverified_pairs: usize,
    /// Azure requests the run made.
    pub azure_requests: u64,
    /// Where the inventory came from, or why it could not be taken. Serialised as `inventory_source`:
    /// `resource_graph`, `arm` or `failed: <reason>`.
    #[serde(rename = "inventory_source")]
    pub inventory: InventoryOutcome,
    /// Per subscription holding a registry in scope: the role assignments counted against Azure's limit.
    #[serde(default)]
    pub capacity: Vec<SubscriptionCapacity>,
}

/// Azure's fixed maximum of role assignments per subscription (at subscription, resource-group and resource
/// scope; management-group assignments do not count). It cannot be raised.
pub const ROLE_ASSIGNMENT_LIMIT: u64 = 4_000;
/// Share of [`ROLE_ASSIGNMENT_LIMIT`] in use at which a verification run alerts, in percent.
pub const CAPACITY_ALERT_PERCENT: u64 = 90;
/// The failure kind (and reason prefix) of a pair that could not be written because its subscription is full.
pub const LIMIT_REASON_PREFIX: &str = "role_assignment_limit_exceeded";

/// How close one subscription is to Azure's role-assignment limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionCapacity {
    pub subscription: String,
    /// Assignments at the subscription, its resource groups and resources.
    pub assignments: u64,
    pub limit: u64,
    /// Azure refused a PUT in this run with `RoleAssignmentLimitExceeded`.
    #[serde(default)]
    pub exhausted: bool,
}

impl SubscriptionCapacity {
    /// At or above [`CAPACITY_ALERT_PERCENT`] of the limit, or refused by Azure.
    pub fn near_limit(&self) -> bool {
        self.exhausted
            || self.assignments.saturating_mul(100)
                >= self.limit.saturating_mul(CAPACITY_ALERT_PERCENT)
    }

    /// One line for logs and the `verify` output.
    pub fn line(&self) -> String {
        let note = if self.exhausted {
            " - FULL: Azure refused a new assignment (RoleAssignmentLimitExceeded)"
        } else if self.near_limit() {
            " - near Azure's limit: assign roles to groups or remove unused assignments"
        } else {
            ""
        };
        format!(
            "role assignments in subscription {}: {} of {} ({}%){note}",
            self.subscription,
            self.assignments,
            self.limit,
            self.percent()
        )
    }

    pub fn percent(&self) -> u64 {
        (self.assignments.saturating_mul(100))
            .checked_div(self.limit)
            .unwrap_or(100)
    }
}

/// Where a run's inventory came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventorySource {
    ResourceGraph,
    Arm,
}

impl InventorySource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResourceGraph => "resource_graph",
            Self::Arm => "arm",
        }
    }
}

/// How a verification run's inventory went: taken from a source, or failed (then the run verified nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InventoryOutcome {
    Taken(InventorySource),
    Failed(String),
}

impl InventoryOutcome {
    /// Why the inventory failed, when it did.
    pub fn failure(&self) -> Option<&str> {
        match self {
            Self::Taken(_) => None,
            Self::Failed(reason) => Some(reason),
        }
    }
}

impl fmt::Display for InventoryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Taken(source) => f.write_str(source.as_str()),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
        }
    }
}

impl Serialize for InventoryOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InventoryOutcome {
    /// The inverse of the serialised form (reports read back from JSON): the one place that reads the text.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_str() {
            "resource_graph" => Ok(Self::Taken(InventorySource::ResourceGraph)),
            "arm" => Ok(Self::Taken(InventorySource::Arm)),
            other => match other.strip_prefix("failed: ") {
                Some(reason) => Ok(Self::Failed(reason.to_owned())),
                None => Err(serde::de::Error::custom(format!(
                    "unknown inventory source {other:?}"
                ))),
            },
        }
    }
}

impl VerificationReport {
    /// Counts by status, every status present (zero included), in a stable order.
    pub fn counts(&self) -> Vec<(PairStatus, usize)> {
        PairStatus::ALL
            .iter()
            .map(|s| (*s, self.pairs.iter().filter(|p| p.status == *s).count()))
            .collect()
    }

    /// True when every verified pair is healthy, no registry has an invalid selector, and the run was complete.
    pub fn all_compliant(&self) -> bool {
        self.complete
            && self.registry_results.is_empty()
            && self.pairs.iter().all(|p| p.status.is_healthy())
    }
}
