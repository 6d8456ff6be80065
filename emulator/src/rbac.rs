//! The permission model: role definitions (Azure's built-ins that matter here, plus custom ones), action
//! matching with wildcards, and scope ancestry. Pure functions over data.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub const OWNER: &str = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635";
pub const CONTRIBUTOR: &str = "b24988ac-6180-42a0-ab88-20f7382dd24c";
pub const READER: &str = "acdd72a7-3385-48ef-bd42-f606fba81ae7";
pub const USER_ACCESS_ADMINISTRATOR: &str = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9";
pub const RBAC_ADMINISTRATOR: &str = "f58310d9-a9f6-439a-9e8d-f62e7b41a168";
pub const ACR_PULL: &str = "7f951dda-4ed3-4680-a7ca-43fe172d538d";
pub const ACR_PUSH: &str = "8311e382-0749-4cb8-b61a-304f252e45ec";
pub const REPOSITORY_READER: &str = "b93aa761-3e63-49ed-ac28-beffa264f7ac";
pub const REPOSITORY_WRITER: &str = "2a1e307c-b015-4ebd-883e-5b7698a07328";
pub const REPOSITORY_CONTRIBUTOR: &str = "2efddaa5-3f1f-4df3-97df-af3f13818f4c";
/// The custom read-only role the emulator creates for the handler (a fixed GUID so tests can name it).
pub const HANDLER_READER: &str = "5d1b4d3e-8a51-4c1e-9b35-6c2a51e0f0a1";

/// The control-plane action a registry's data plane checks for pull in `LegacyRegistryPermissions` mode.
pub const REGISTRY_PULL: &str = "Microsoft.ContainerRegistry/registries/pull/read";
/// The data action it checks in `AbacRepositoryPermissions` mode.
pub const REPOSITORY_CONTENT_READ: &str =
    "Microsoft.ContainerRegistry/registries/repositories/content/read";

/// A role definition (built-in or custom).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleDefinition {
    /// The GUID (lower case).
    pub name: String,
    pub role_name: String,
    pub description: String,
    pub built_in: bool,
    pub actions: Vec<String>,
    pub not_actions: Vec<String>,
    pub data_actions: Vec<String>,
    pub not_data_actions: Vec<String>,
    pub assignable_scopes: Vec<String>,
}

impl RoleDefinition {
    fn built_in(
        name: &str,
        role_name: &str,
        description: &str,
        actions: &[&str],
        not_actions: &[&str],
        data: &[&str],
    ) -> Self {
        Self {
            name: name.to_owned(),
            role_name: role_name.to_owned(),
            description: description.to_owned(),
            built_in: true,
            actions: actions.iter().map(|s| (*s).to_owned()).collect(),
            not_actions: not_actions.iter().map(|s| (*s).to_owned()).collect(),
            data_actions: data.iter().map(|s| (*s).to_owned()).collect(),
            not_data_actions: Vec::new(),
            assignable_scopes: vec!["/".to_owned()],
        }
    }

    /// Whether the role's control-plane actions allow `action`.
    pub fn allows(&self, action: &str) -> bool {
        self.actions.iter().any(|p| action_matches(p, action))
            && !self.not_actions.iter().any(|p| action_matches(p, action))
    }

    /// Whether the role's data actions allow `data_action`.
    pub fn allows_data(&self, data_action: &str) -> bool {
        self.data_actions
            .iter()
            .any(|p| action_matches(p, data_action))
            && !self
                .not_data_actions
                .iter()
                .any(|p| action_matches(p, data_action))
    }

    /// The ARM body (`GET .../roleDefinitions/{guid}`), with the id under `scope_prefix` (e.g. `/subscriptions/{s}`
    /// or empty for the tenant-level form).
    pub fn to_arm(&self, scope_prefix: &str) -> Value {
        json!({
            "id": format!("{scope_prefix}/providers/Microsoft.Authorization/roleDefinitions/{}", self.name),
            "name": self.name,
            "type": "Microsoft.Authorization/roleDefinitions",
            "properties": {
                "roleName": self.role_name,
                "type": if self.built_in { "BuiltInRole" } else { "CustomRole" },
                "description": self.description,
                "assignableScopes": self.assignable_scopes,
                "permissions": [{
                    "actions": self.actions,
                    "notActions": self.not_actions,
                    "dataActions": self.data_actions,
                    "notDataActions": self.not_data_actions,
                }],
                "createdOn": "2015-02-02T21:55:09.8806423Z",
                "updatedOn": "2024-04-16T21:55:09.8806423Z",
                "createdBy": null,
                "updatedBy": null,
            }
        })
    }
}

/// The built-in roles of arm.md, with Azure's real actions and data actions.
pub fn built_in_roles() -> Vec<RoleDefinition> {
    const REPO_READ: [&str; 2] = [
        "Microsoft.ContainerRegistry/registries/repositories/metadata/read",
        "Microsoft.ContainerRegistry/registries/repositories/content/read",
    ];
    vec![
        RoleDefinition::built_in(
            OWNER,
            "Owner",
            "Grants full access to manage all resources, including the ability to assign roles in Azure RBAC.",
            &["*"],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            CONTRIBUTOR,
            "Contributor",
            "Grants full access to manage all resources, but does not allow you to assign roles in Azure RBAC, manage assignments in Azure Blueprints, or share image galleries.",
            &["*"],
            &[
                "Microsoft.Authorization/*/Delete",
                "Microsoft.Authorization/*/Write",
                "Microsoft.Authorization/elevateAccess/Action",
                "Microsoft.Blueprint/blueprintAssignments/write",
                "Microsoft.Blueprint/blueprintAssignments/delete",
                "Microsoft.Compute/galleries/share/action",
                "Microsoft.Purview/consents/write",
                "Microsoft.Purview/consents/delete",
                "Microsoft.Resources/deploymentStacks/manageDenySetting/action",
                "Microsoft.Subscription/cancel/action",
                "Microsoft.Subscription/enable/action",
            ],
            &[],
        ),
        RoleDefinition::built_in(
            READER,
            "Reader",
            "View all resources, but does not allow you to make any changes.",
            &["*/read"],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            USER_ACCESS_ADMINISTRATOR,
            "User Access Administrator",
            "Lets you manage user access to Azure resources.",
            &["*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            RBAC_ADMINISTRATOR,
            "Role Based Access Control Administrator",
            "Manage access to Azure resources by assigning roles using Azure RBAC. This role does not allow you to manage access using other ways, such as Azure Policy.",
            &[
                "Microsoft.Authorization/roleAssignments/write",
                "Microsoft.Authorization/roleAssignments/delete",
                "*/read",
                "Microsoft.Support/*",
            ],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            ACR_PULL,
            "AcrPull",
            "acr pull",
            &["Microsoft.ContainerRegistry/registries/pull/read"],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            ACR_PUSH,
            "AcrPush",
            "acr push",
            &[
                "Microsoft.ContainerRegistry/registries/pull/read",
                "Microsoft.ContainerRegistry/registries/push/write",
            ],
            &[],
            &[],
        ),
        RoleDefinition::built_in(
            REPOSITORY_READER,
            "Container Registry Repository Reader",
            "Allows for read access to Azure Container Registry repositories, but excluding catalog listing.",
            &[],
            &[],
            &REPO_READ,
        ),
        RoleDefinition::built_in(
            REPOSITORY_WRITER,
            "Container Registry Repository Writer",
            "Allows for read, write access to Azure Container Registry repositories, but excluding catalog listing.",
            &[],
            &[],
            &[
                REPO_READ[0],
                REPO_READ[1],
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
            ],
        ),
        RoleDefinition::built_in(
            REPOSITORY_CONTRIBUTOR,
            "Container Registry Repository Contributor",
            "Allows for read, write, and delete access to Azure Container Registry repositories, but excluding catalog listing.",
            &[],
            &[],
            &[
                REPO_READ[0],
                REPO_READ[1],
                "Microsoft.ContainerRegistry/registries/repositories/metadata/write",
                "Microsoft.ContainerRegistry/registries/repositories/content/write",
                "Microsoft.ContainerRegistry/registries/repositories/metadata/delete",
                "Microsoft.ContainerRegistry/registries/repositories/content/delete",
            ],
        ),
    ]
}

/// The custom read-only role the handler gets by default: exactly the reads it needs, no pull.
pub fn handler_reader_role() -> RoleDefinition {
    RoleDefinition {
        name: HANDLER_READER.to_owned(),
        role_name: "acr-autoattach reader".to_owned(),
        description: "Reads clusters, registries, subscriptions, resource groups, role assignments and definitions.".to_owned(),
        built_in: false,
        actions: [
            "Microsoft.ContainerService/managedClusters/read",
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleDefinitions/read",
            "Microsoft.Resources/subscriptions/read",
            "Microsoft.Resources/subscriptions/resourceGroups/read",
        ]
        .map(str::to_owned)
        .to_vec(),
        not_actions: Vec::new(),
        data_actions: Vec::new(),
        not_data_actions: Vec::new(),
        assignable_scopes: vec!["/".to_owned()],
    }
}

/// Azure's action pattern match: case-insensitive, `*` matches any run of characters (also `/`).
pub fn action_matches(pattern: &str, action: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let action = action.to_ascii_lowercase();
    glob(pattern.as_bytes(), action.as_bytes())
}

fn glob(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative wildcard match with single backtrack point (classic linear algorithm).
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Normalises a scope for comparison: lower case, leading `/`, no trailing `/`; the root is `/`.
pub fn normalize_scope(scope: &str) -> String {
    let trimmed = scope.trim().trim_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", trimmed.to_ascii_lowercase())
    }
}

/// Whether `ancestor` is `scope` itself or lies above it (both normalised).
pub fn is_at_or_above(ancestor: &str, scope: &str) -> bool {
    ancestor == "/" || scope == ancestor || scope.starts_with(&format!("{ancestor}/"))
}

/// The trailing GUID of a role definition id in any of its forms, lower-cased.
pub fn role_definition_guid(id: &str) -> Option<String> {
    let last = id.trim_end_matches('/').rsplit('/').next()?;
    uuid::Uuid::parse_str(last).ok().map(|g| g.to_string())
}

/// The subscription id of a scope, lower-cased, if it lies in one.
pub fn subscription_of(scope: &str) -> Option<String> {
    let mut segments = scope.trim_matches('/').split('/');
    match (segments.next(), segments.next()) {
        (Some(k), Some(v)) if k.eq_ignore_ascii_case("subscriptions") && !v.is_empty() => {
            Some(v.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// The resource group name of a scope (original case), if it lies in one.
pub fn resource_group_of(scope: &str) -> Option<String> {
    let mut segments = scope.trim_matches('/').split('/').skip(2);
    match (segments.next(), segments.next()) {
        (Some(k), Some(v)) if k.eq_ignore_ascii_case("resourcegroups") && !v.is_empty() => {
            Some(v.to_owned())
        }
        _ => None,
    }
}

/// The ABAC condition of the handler's Role Based Access Control Administrator assignment (as the design's
/// infrastructure writes it, `infra/modules/attach-condition.txt`): it may only write and delete assignments of
/// AcrPull and Container Registry Repository Reader to service principals.
pub fn pull_roles_only_condition() -> String {
    format!(
        "((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/write'}})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{ACR_PULL}, {REPOSITORY_READER}}} AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}})) AND ((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/delete'}})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {{{ACR_PULL}, {REPOSITORY_READER}}} AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {{'ServicePrincipal'}}))"
    )
}

/// [`pull_roles_only_condition`] widened for group mode: the pull roles may also be assigned to groups
/// (`docs/grant-modes.md`).
pub fn pull_roles_to_principals_and_groups_condition() -> String {
    pull_roles_only_condition().replace("{'ServicePrincipal'}", "{'ServicePrincipal', 'Group'}")
}

/// A role-assignment condition of the restricted form Azure's "constrain roles" option writes for Role Based
/// Access Control Administrator: which role GUIDs may be written and deleted (`None`: that action is not
/// constrained). When neither is found the condition has another shape; the store then denies role-assignment
/// writes and deletes through it, as an unreadable condition must not widen access.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConstrainedRoles {
    pub write: Option<Vec<String>>,
    pub delete: Option<Vec<String>>,
    /// The principal types an assignment may be written for (`None`: not constrained).
    pub write_principal_types: Option<Vec<String>>,
    /// The principal types an assignment may be deleted for (`None`: not constrained).
    pub delete_principal_types: Option<Vec<String>>,
}

/// Parses `@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {…}`
/// (writes) and `@Resource[…:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {…}` (deletes) out of a condition.
pub fn parse_constrained_roles(condition: &str) -> ConstrainedRoles {
    fn guids_after(condition: &str, marker: &str) -> Option<Vec<String>> {
        let lower = condition.to_ascii_lowercase();
        let start = lower.find(&marker.to_ascii_lowercase())?;
        let rest = &lower[start..];
        let open = rest.find('{')?;
        let close = rest[open..].find('}')? + open;
        Some(
            rest[open + 1..close]
                .split(',')
                .filter_map(|g| uuid::Uuid::parse_str(g.trim()).ok().map(|u| u.to_string()))
                .collect(),
        )
    }
    fn strings_after(condition: &str, marker: &str) -> Option<Vec<String>> {
        let lower = condition.to_ascii_lowercase();
        let start = lower.find(&marker.to_ascii_lowercase())?;
        let rest = &condition[start..];
        let open = rest.find('{')?;
        let close = rest[open..].find('}')? + open;
        Some(
            rest[open + 1..close]
                .split(',')
                .map(|v| v.trim().trim_matches('\'').to_owned())
                .filter(|v| !v.is_empty())
                .collect(),
        )
    }
    ConstrainedRoles {
        write_principal_types: strings_after(
            condition,
            "@Request[Microsoft.Authorization/roleAssignments:PrincipalType]",
        ),
        delete_principal_types: strings_after(
            condition,
            "@Resource[Microsoft.Authorization/roleAssignments:PrincipalType]",
        ),
        write: guids_after(
            condition,
            "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]",
        ),
        delete: guids_after(
            condition,
            "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(action_matches(
            "*",
            "Microsoft.ContainerRegistry/registries/pull/read"
        ));
        assert!(action_matches(
            "*/read",
            "Microsoft.ContainerRegistry/registries/pull/read"
        ));
        assert!(!action_matches(
            "*/read",
            "Microsoft.ContainerRegistry/registries/write"
        ));
        assert!(action_matches(
            "Microsoft.Authorization/*/Write",
            "microsoft.authorization/roleAssignments/write"
        ));
        assert!(!action_matches(
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/roleAssignments/read"
        ));
        assert!(action_matches(
            "Microsoft.ContainerRegistry/*",
            "Microsoft.ContainerRegistry/registries/read"
        ));
        assert!(!action_matches(
            "Microsoft.ContainerRegistry/registries/read",
            "Microsoft.ContainerRegistry/registries/pull/read"
        ));
    }

    #[test]
    fn built_ins_grant_what_arm_md_says() {
        let roles = built_in_roles();
        let role = |id: &str| {
            roles
                .iter()
                .find(|r| r.name == id)
                .cloned()
                .unwrap_or_else(handler_reader_role)
        };
        assert!(role(READER).allows("Microsoft.ContainerRegistry/registries/pull/read"));
        assert!(role(CONTRIBUTOR).allows("Microsoft.ContainerService/managedClusters/write"));
        assert!(!role(CONTRIBUTOR).allows("Microsoft.Authorization/roleAssignments/write"));
        assert!(role(RBAC_ADMINISTRATOR).allows("Microsoft.Authorization/roleAssignments/write"));
        assert!(
            !role(RBAC_ADMINISTRATOR).allows("Microsoft.ContainerService/managedClusters/write")
        );
        assert!(!role(REPOSITORY_READER).allows("Microsoft.ContainerRegistry/registries/read"));
        assert!(!handler_reader_role().allows("Microsoft.ContainerRegistry/registries/pull/read"));
    }

    #[test]
    fn scopes() {
        let sub = normalize_scope("/subscriptions/ABC/");
        let rg = normalize_scope("/subscriptions/abc/resourceGroups/RG");
        assert!(is_at_or_above(&sub, &rg));
        assert!(!is_at_or_above(&rg, &sub));
        assert!(is_at_or_above("/", &sub));
        assert!(!is_at_or_above(&normalize_scope("/subscriptions/ab"), &sub));
        assert_eq!(
            subscription_of("/subscriptions/ABC/resourceGroups/x").as_deref(),
            Some("abc")
        );
        assert_eq!(
            resource_group_of("/subscriptions/ABC/resourceGroups/x/providers/a/b/c").as_deref(),
            Some("x")
        );
        assert_eq!(
            role_definition_guid("/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/7F951DDA-4ED3-4680-A7CA-43FE172D538D").as_deref(),
            Some(ACR_PULL)
        );
    }

    #[test]
    fn constrained_roles_condition() {
        let c = "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR (@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d, b93aa761-3e63-49ed-ac28-beffa264f7ac})) AND ((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR (@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {7f951dda-4ed3-4680-a7ca-43fe172d538d}))";
        assert_eq!(
            parse_constrained_roles(&pull_roles_only_condition()).write,
            Some(vec![ACR_PULL.to_owned(), REPOSITORY_READER.to_owned()])
        );
        let handler = parse_constrained_roles(&pull_roles_only_condition());
        assert_eq!(
            handler.write_principal_types,
            Some(vec!["ServicePrincipal".to_owned()])
        );
        assert_eq!(
            parse_constrained_roles(&pull_roles_to_principals_and_groups_condition())
                .delete_principal_types,
            Some(vec!["ServicePrincipal".to_owned(), "Group".to_owned()])
        );
        let parsed = parse_constrained_roles(c);
        assert_eq!(
            parsed.write,
            Some(vec![ACR_PULL.to_owned(), REPOSITORY_READER.to_owned()])
        );
        assert_eq!(parsed.delete, Some(vec![ACR_PULL.to_owned()]));
    }
}
