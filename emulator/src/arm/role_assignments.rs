//! `Microsoft.Authorization/roleAssignments`: list, get, create, delete.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::paging::{invalid_skip_token, next_link_with};
use super::{Outcome, Request, authorization_failed, check_scope_exists, event};
use crate::app::{App, canonical_scope, lock, str_at};
use crate::bus::ArmOperationKind;
use crate::cursors::{self, AnySnapshot};
use crate::rbac;
use crate::stats::PageWork;
use crate::store::{AssignmentFacts, GraphTable, RoleAssignment, Store, assignment_graph_row};
use crate::token::Claims;

/// The role-assignment list filter: `atScope()`, `principalId eq '{id}'` / `assignedTo('{id}')`, or both joined
/// by `and` (azure-cli sends `atScope() and assignedTo('{id}')`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct AssignmentFilter {
    /// Only assignments at the scope or above it (none below).
    pub at_scope: bool,
    /// Only this principal's assignments.
    pub principal: Option<String>,
}

pub(crate) fn parse_assignment_filter(raw: Option<&String>) -> Result<AssignmentFilter, String> {
    let mut filter = AssignmentFilter::default();
    let Some(raw) = raw else {
        return Ok(filter);
    };
    let f = raw.trim();
    let unsupported = || {
        format!(
            "The filter '{f}' is not supported. Supported filters: atScope(), principalId eq '{{objectId}}', assignedTo('{{objectId}}'), and atScope() joined to one of the others by 'and'."
        )
    };
    for clause in super::generic::split_and(f) {
        let clause = clause.trim();
        if clause.eq_ignore_ascii_case("atScope()") && !filter.at_scope {
            filter.at_scope = true;
            continue;
        }
        let principal = principal_clause(clause).ok_or_else(unsupported)?;
        if filter.principal.replace(principal).is_some() {
            return Err(unsupported());
        }
    }
    Ok(filter)
}

/// `principalId eq '{id}'` or `assignedTo('{id}')`: the id, lower-cased.
fn principal_clause(clause: &str) -> Option<String> {
    let lower = clause.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("principalid eq ")
        .or_else(|| lower.strip_prefix("assignedto(")?.strip_suffix(')'))?;
    let id = rest.trim().trim_matches('\'').trim_matches('"');
    uuid::Uuid::parse_str(id).is_ok().then(|| id.to_owned())
}

/// A role-assignment list's snapshot: the matching assignments, ordered by id, shared with the store.
type AssignmentSnapshot = Vec<Arc<RoleAssignment>>;

const LIST_OPERATION: &str = "list_role_assignments";

/// `GET {scope}/providers/Microsoft.Authorization/roleAssignments`: the first page scans, filters and sorts once
/// into a snapshot (`cursors.rs`); the `nextLink`'s `$skipToken` names it, so every later page costs its own
/// rows (plus the caller's grants, read from the index, for the authorization every page gets).
pub(super) fn list_role_assignments(
    app: &App,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
) -> Outcome {
    let filter = match parse_assignment_filter(req.query.get("$filter")) {
        Ok(f) => f,
        Err(message) => {
            return Outcome::error(StatusCode::BAD_REQUEST, "UnsupportedQuery", message);
        }
    };
    let resume = match req.query.get("$skiptoken").map(|t| cursors::read_token(t)) {
        None => None,
        Some(Some(position)) => Some(position),
        Some(None) => return invalid_skip_token(),
    };
    let binding = cursors::binding(&[
        LIST_OPERATION,
        &claims.oid.to_ascii_lowercase(),
        &rbac::normalize_scope(scope),
        req.query.get("$filter").map_or("", String::as_str),
    ]);
    let mut work = PageWork {
        operation: LIST_OPERATION.into(),
        examined: 0,
        served: 0,
        opened_snapshot: resume.is_none(),
    };
    let action = "Microsoft.Authorization/roleAssignments/read";
    let fresh = {
        let store = lock(&app.store);
        let grants = store.grants_of(&claims.oid);
        work.examined += grants.len() as u64;
        // Authorization first, then existence, as ARM does.
        if !store.allowed_by(&grants, action, scope, None, None) {
            return authorization_failed(claims, action, scope);
        }
        if let Some(e) = check_scope_exists(&store, scope) {
            return e;
        }
        resume
            .is_none()
            .then(|| assignment_snapshot(&store, scope, &filter, &mut work))
    };
    let now = Instant::now();
    let (rows, offset, cursor) = match (fresh, resume) {
        (Some(rows), _) => (Arc::new(rows), 0, None),
        (None, Some((id, offset))) => {
            let kept = lock(&app.list_cursors)
                .resume(id, &binding, now)
                .and_then(|s| s.downcast::<AssignmentSnapshot>().ok());
            match kept {
                Some(rows) => (rows, offset, Some(id)),
                None => return invalid_skip_token(),
            }
        }
        (None, None) => (Arc::new(Vec::new()), 0, None),
    };
    let size = lock(&app.settings).role_assignment_page_size.max(1);
    let end = offset.saturating_add(size).min(rows.len());
    let page: Vec<Value> = rows
        .get(offset.min(end)..end)
        .unwrap_or_default()
        .iter()
        .map(|a| a.to_arm())
        .collect();
    work.served = page.len() as u64;
    let mut body = json!({ "value": page });
    if end < rows.len() {
        let id = cursor.unwrap_or_else(|| {
            let snapshot: Arc<AnySnapshot> = rows.clone();
            lock(&app.list_cursors).open(snapshot, binding, now)
        });
        body["nextLink"] = json!(next_link_with(req, &cursors::token(id, end)));
    }
    lock(&app.stats).record_page(work);
    Outcome::json(StatusCode::OK, body)
}

/// The assignments a list at `scope` with `filter` returns, ordered by id (case-insensitively). A principal
/// filter reads that principal's assignments from the index; otherwise every assignment is looked at.
fn assignment_snapshot(
    store: &Store,
    scope: &str,
    filter: &AssignmentFilter,
    work: &mut PageWork,
) -> AssignmentSnapshot {
    let target = rbac::normalize_scope(scope);
    let candidates: Vec<&Arc<RoleAssignment>> = match &filter.principal {
        Some(p) => store.assignments_of(p).collect(),
        None => store.role_assignments.values().collect(),
    };
    work.examined += candidates.len() as u64;
    let mut list: AssignmentSnapshot = candidates
        .into_iter()
        .filter(|a| {
            let s = a.scope_key();
            let above = rbac::is_at_or_above(&s, &target);
            if filter.at_scope {
                above
            } else {
                above || rbac::is_at_or_above(&target, &s)
            }
        })
        .cloned()
        .collect();
    work.examined += list.len() as u64;
    list.sort_by_cached_key(|a| a.id().to_ascii_lowercase());
    list
}

pub(super) fn find_assignment<'a>(
    store: &'a Store,
    scope: &str,
    name: &str,
) -> Option<&'a RoleAssignment> {
    store
        .role_assignments
        .get(&name.to_ascii_lowercase())
        .map(AsRef::as_ref)
        .filter(|a| a.scope_key() == rbac::normalize_scope(scope))
}

pub(super) fn get_role_assignment(app: &App, claims: &Claims, scope: &str, name: &str) -> Outcome {
    let store = lock(&app.store);
    let action = "Microsoft.Authorization/roleAssignments/read";
    // Authorization first, then existence, as ARM does.
    if !store.is_allowed(&claims.oid, action, scope, None, None) {
        return authorization_failed(claims, action, scope);
    }
    if let Some(e) = check_scope_exists(&store, scope) {
        return e;
    }
    match find_assignment(&store, scope, name) {
        Some(a) => Outcome::json(StatusCode::OK, a.to_arm()),
        None => Outcome::error(
            StatusCode::NOT_FOUND,
            "RoleAssignmentNotFound",
            format!("The role assignment '{name}' is not found."),
        ),
    }
}

pub(super) const PRINCIPAL_TYPES: [&str; 4] = ["User", "Group", "ServicePrincipal", "ForeignGroup"];

/// A role-assignment PUT body, validated against `RoleAssignmentCreateParameters` of the 2022-04-01 spec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct AssignmentBody {
    pub role_definition_id: String,
    pub principal_id: String,
    pub principal_type: Option<String>,
    pub description: Option<String>,
    pub condition: Option<String>,
    pub condition_version: Option<String>,
    pub delegated_managed_identity_resource_id: Option<String>,
}

/// Validates a role-assignment PUT body against the OpenAPI schema (required `properties`, required
/// `roleDefinitionId` and `principalId`, string types, the `principalType` enum). Returns ARM's 400 on failure.
pub(crate) fn validate_assignment_body(body: &[u8]) -> Result<AssignmentBody, (String, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        (
            "InvalidRequestContent".to_owned(),
            format!(
                "The request content was invalid and could not be deserialized: '{}'.",
                e.to_string().replace('\'', "")
            ),
        )
    })?;
    let bad = |message: String| {
        (
            "InvalidRequestContent".to_owned(),
            format!("The request content was invalid and could not be deserialized: '{message}'."),
        )
    };
    let Some(root) = value.as_object() else {
        return Err(bad("the body must be a JSON object".into()));
    };
    let Some(props) = root.get("properties") else {
        return Err((
            "MissingRequiredProperty".into(),
            "The request body is missing the required property 'properties'.".into(),
        ));
    };
    let Some(props) = props.as_object() else {
        return Err(bad("properties must be an object".into()));
    };
    let string = |name: &str| -> Result<Option<String>, (String, String)> {
        match props.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(bad(format!(
                "properties.{name} must be a string, found {other}"
            ))),
        }
    };
    let role_definition_id = string("roleDefinitionId")?.ok_or_else(|| {
        (
            "MissingRequiredProperty".to_owned(),
            "The request body is missing the required property 'properties.roleDefinitionId'."
                .to_owned(),
        )
    })?;
    let principal_id = string("principalId")?.ok_or_else(|| {
        (
            "MissingRequiredProperty".to_owned(),
            "The request body is missing the required property 'properties.principalId'."
                .to_owned(),
        )
    })?;
    let principal_type = string("principalType")?;
    if let Some(t) = &principal_type
        && !PRINCIPAL_TYPES.contains(&t.as_str())
    {
        {
            return Err((
                "InvalidPrincipalType".into(),
                format!(
                    "The value '{t}' of principalType is not valid. Allowed values: User, Group, ServicePrincipal, ForeignGroup."
                ),
            ));
        }
    }
    let condition = string("condition")?;
    let condition_version = string("conditionVersion")?;
    if let Some(v) = &condition_version
        && (v != "2.0" || condition.is_none())
    {
        {
            return Err((
                "InvalidConditionVersion".into(),
                "The conditionVersion must be '2.0' and requires a condition.".into(),
            ));
        }
    }
    if uuid::Uuid::parse_str(&principal_id).is_err() {
        return Err((
            "InvalidPrincipalId".into(),
            "A valid principal ID must be provided for role assignment.".into(),
        ));
    }
    if rbac::role_definition_guid(&role_definition_id).is_none()
        || !role_definition_id
            .to_ascii_lowercase()
            .contains("/providers/microsoft.authorization/roledefinitions/")
    {
        return Err((
            "InvalidRoleDefinitionId".into(),
            format!("The role definition ID '{role_definition_id}' is not valid."),
        ));
    }
    Ok(AssignmentBody {
        role_definition_id,
        principal_id: principal_id.to_ascii_lowercase(),
        principal_type,
        description: string("description")?,
        condition,
        condition_version,
        delegated_managed_identity_resource_id: string("delegatedManagedIdentityResourceId")?,
    })
}

/// `PUT …/roleAssignments/{name}`: validate the request, then — under one store lock, because names and
/// (principal, role, scope) triples are unique — authorize, check the scope, the role, conflicts, the principal and
/// the limit, store; then publish the event.
pub(super) fn put_role_assignment(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
    name: &str,
) -> Outcome {
    let body = match validate_assignment_request(req.body, name) {
        Ok(b) => b,
        Err(e) => return e,
    };
    let role_guid = rbac::role_definition_guid(&body.role_definition_id).unwrap_or_default();
    let (replication, limit) = {
        let settings = lock(&app.settings);
        (
            Duration::from_millis(settings.principal_replication_ms),
            settings.role_assignment_limit,
        )
    };
    let put = AssignmentPut {
        scope,
        name: name.to_ascii_lowercase(),
        role_guid,
        body,
        replication,
        limit,
    };
    let keep = app.graph_keep();
    let (status, value, unchanged) = {
        let mut store = lock(&app.store);
        let resolved_type = match check_assignment_put(&store, claims, &put) {
            Ok(t) => t,
            Err(e) => return e,
        };
        let existing = store.role_assignments.get(&put.name).cloned();
        let assignment = build_assignment(&put, existing.as_deref(), claims, resolved_type);
        let tenant = app.tenant_of_scope(&store, scope);
        store_assignment(&mut store, existing, assignment, &tenant, keep)
    };
    let mut outcome = Outcome::json(status, value.clone());
    if !unchanged {
        let id = str_at(&value, &["id"]).unwrap_or_default().to_owned();
        outcome.events.push(event(
            app,
            req,
            claims,
            ArmOperationKind::Write,
            &id,
            ASSIGNMENT_WRITE,
            Some(value),
        ));
    }
    outcome
}

const ASSIGNMENT_WRITE: &str = "Microsoft.Authorization/roleAssignments/write";

/// One role-assignment PUT, validated for shape.
struct AssignmentPut<'a> {
    scope: &'a str,
    /// The assignment name, lower-cased.
    name: String,
    role_guid: String,
    body: AssignmentBody,
    replication: Duration,
    limit: usize,
}

/// The name must be a GUID; the body must match the schema.
fn validate_assignment_request(body: &[u8], name: &str) -> Result<AssignmentBody, Outcome> {
    if uuid::Uuid::parse_str(name).is_err() {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "InvalidRoleAssignmentId",
            format!(
                "The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID."
            ),
        ));
    }
    validate_assignment_body(body)
        .map_err(|(code, message)| Outcome::error(StatusCode::BAD_REQUEST, &code, message))
}

/// Everything ARM checks against current state, in its order: authorization, the scope, the role definition,
/// name and triple conflicts, the principal, the subscription's limit. Returns the resolved principal type.
fn check_assignment_put(
    store: &Store,
    claims: &Claims,
    put: &AssignmentPut<'_>,
) -> Result<String, Outcome> {
    let scope = put.scope;
    // Authorization first, then existence, as ARM does.
    let facts = AssignmentFacts {
        role: &put.role_guid,
        principal_type: put.body.principal_type.as_deref().unwrap_or_default(),
    };
    if !store.is_allowed(&claims.oid, ASSIGNMENT_WRITE, scope, Some(facts), None) {
        return Err(authorization_failed(claims, ASSIGNMENT_WRITE, scope));
    }
    if let Some(e) = check_scope_exists(store, scope) {
        return Err(e);
    }
    if !store.role_definitions.contains_key(&put.role_guid) {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "RoleDefinitionDoesNotExist",
            format!(
                "The specified role definition with ID '{}' does not exist.",
                put.role_guid.replace('-', "")
            ),
        ));
    }
    check_assignment_conflicts(store, put)?;
    let resolved = resolve_principal_type(store, put)?;
    let sub = rbac::subscription_of(scope).unwrap_or_default();
    if !store.role_assignments.contains_key(&put.name)
        && store.assignments_in_subscription(&sub) >= put.limit
    {
        return Err(Outcome::error(
            StatusCode::BAD_REQUEST,
            "RoleAssignmentLimitExceeded",
            format!(
                "No more role assignments can be created in subscription '{sub}': the limit of {} role assignments per subscription has been reached. See https://aka.ms/rbac-limits",
                put.limit
            ),
        ));
    }
    Ok(resolved)
}

/// Names are unique tenant-wide: the same name with another principal, role or scope cannot be updated; and one
/// (principal, role, scope) has one assignment.
fn check_assignment_conflicts(store: &Store, put: &AssignmentPut<'_>) -> Result<(), Outcome> {
    let scope_key = rbac::normalize_scope(put.scope);
    let principal = &put.body.principal_id;
    if let Some(existing) = store.role_assignments.get(&put.name) {
        let same = existing.principal_id.eq_ignore_ascii_case(principal)
            && existing.role_guid == put.role_guid
            && existing.scope_key() == scope_key;
        if !same {
            return Err(Outcome::error(
                StatusCode::CONFLICT,
                "RoleAssignmentUpdateNotPermitted",
                "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
            ));
        }
    } else if store
        .assignments_of(principal)
        .any(|a| a.role_guid == put.role_guid && a.scope_key() == scope_key)
    {
        return Err(Outcome::error(
            StatusCode::CONFLICT,
            "RoleAssignmentExists",
            "The role assignment already exists.",
        ));
    }
    Ok(())
}

/// The directory look-up ARM does unless `principalType` is given (a replicated principal must then match it).
fn resolve_principal_type(store: &Store, put: &AssignmentPut<'_>) -> Result<String, Outcome> {
    let body = &put.body;
    let known = store.principal(&body.principal_id);
    match (&body.principal_type, known) {
        (Some(t), _) if t == "ServicePrincipal" => Ok(t.clone()),
        (declared, Some(p)) if p.created_at.elapsed() >= put.replication => {
            if let Some(d) = declared
                && d != p.kind.as_str()
                && d != "ForeignGroup"
            {
                return Err(Outcome::error(
                    StatusCode::BAD_REQUEST,
                    "UnmatchedPrincipalType",
                    format!(
                        "The PrincipalId '{}' has type '{}' , which is different from specified PrincipalType '{d}'.",
                        body.principal_id.replace('-', ""),
                        p.kind.as_str()
                    ),
                ));
            }
            Ok(declared
                .clone()
                .unwrap_or_else(|| p.kind.as_str().to_owned()))
        }
        // A declared type (any, as the error below advises) skips the directory look-up that replication delays.
        (Some(t), _) => Ok(t.clone()),
        _ => {
            let sub = rbac::subscription_of(put.scope).unwrap_or_default();
            let tenant = store
                .subscription(&sub)
                .map(|s| s.tenant_id.clone())
                .unwrap_or_default();
            Err(Outcome::error(
                StatusCode::BAD_REQUEST,
                "PrincipalNotFound",
                format!(
                    "Principal {} does not exist in the directory {tenant}. Check that you have the correct principal ID. If you are creating this principal and then immediately assigning a role, this error might be related to a replication delay. In this case, set the role assignment principalType property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
                    body.principal_id.replace('-', "")
                ),
            ))
        }
    }
}

/// The assignment to store: a new one, or the existing one with the updatable fields changed.
fn build_assignment(
    put: &AssignmentPut<'_>,
    existing: Option<&RoleAssignment>,
    claims: &Claims,
    principal_type: String,
) -> RoleAssignment {
    let now = OffsetDateTime::now_utc();
    let body = &put.body;
    RoleAssignment {
        name: existing.map_or_else(|| put.name.clone(), |e| e.name.clone()),
        scope: existing.map_or_else(|| canonical_scope(put.scope), |e| e.scope.clone()),
        role_guid: put.role_guid.clone(),
        principal_id: body.principal_id.clone(),
        principal_type,
        description: body.description.clone(),
        condition: body.condition.clone(),
        condition_version: body.condition_version.clone(),
        delegated_managed_identity_resource_id: body.delegated_managed_identity_resource_id.clone(),
        created_on: existing.map_or(now, |e| e.created_on),
        updated_on: now,
        created_by: existing.map_or_else(|| claims.oid.clone(), |e| e.created_by.clone()),
        updated_by: claims.oid.clone(),
    }
}

/// Stores the assignment (an unchanged re-PUT keeps the stored one) and its Resource Graph row. Returns the
/// status, the answer and whether nothing changed.
fn store_assignment(
    store: &mut Store,
    existing: Option<Arc<RoleAssignment>>,
    assignment: RoleAssignment,
    tenant: &str,
    keep: Duration,
) -> (StatusCode, Value, bool) {
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let unchanged = existing.as_ref().is_some_and(|e| {
        e.description == assignment.description
            && e.condition == assignment.condition
            && e.principal_type == assignment.principal_type
    });
    let stored = match existing {
        Some(e) if unchanged => e,
        _ => Arc::new(assignment),
    };
    store.graph_write(
        GraphTable::AuthorizationResources,
        &stored.id(),
        Some(assignment_graph_row(&stored, tenant)),
        Instant::now(),
        keep,
    );
    let value = stored.to_arm();
    store.insert_assignment(stored);
    (status, value, unchanged)
}

pub(super) fn delete_role_assignment(
    app: &Arc<App>,
    req: &Request<'_>,
    claims: &Claims,
    scope: &str,
    name: &str,
) -> Outcome {
    let action = "Microsoft.Authorization/roleAssignments/delete";
    let removed = {
        let mut store = lock(&app.store);
        if let Some(e) = check_scope_exists(&store, scope) {
            return e;
        }
        let existing = find_assignment(&store, scope, name)
            .map(|a| (a.role_guid.clone(), a.principal_type.clone()));
        let existing_role = existing.as_ref().map(|(role, _)| role.clone());
        let facts = existing
            .as_ref()
            .map(|(role, principal_type)| AssignmentFacts {
                role,
                principal_type,
            });
        if !store.is_allowed(&claims.oid, action, scope, None, facts) {
            return authorization_failed(claims, action, scope);
        }
        if existing_role.is_none() {
            return Outcome::empty(StatusCode::NO_CONTENT);
        }
        let removed = store.remove_assignment(name);
        if let Some(a) = &removed {
            store.graph_write(
                GraphTable::AuthorizationResources,
                &a.id(),
                None,
                Instant::now(),
                app.graph_keep(),
            );
        }
        removed
    };
    let Some(removed) = removed else {
        return Outcome::empty(StatusCode::NO_CONTENT);
    };
    let value = removed.to_arm();
    let mut outcome = Outcome::json(StatusCode::OK, value);
    outcome.events.push(event(
        app,
        req,
        claims,
        ArmOperationKind::Delete,
        &removed.id(),
        action,
        None,
    ));
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        assert_eq!(
            parse_assignment_filter(None),
            Ok(AssignmentFilter::default())
        );
        assert_eq!(
            parse_assignment_filter(Some(&"atScope()".to_owned())),
            Ok(AssignmentFilter {
                at_scope: true,
                principal: None
            })
        );
        let id = "ce2ce14e-85d7-4629-bdbc-454d0519d987";
        assert_eq!(
            parse_assignment_filter(Some(&format!("principalId eq '{id}'"))),
            Ok(AssignmentFilter {
                at_scope: false,
                principal: Some(id.into())
            })
        );
        assert_eq!(
            parse_assignment_filter(Some(&format!(
                "atScope() and assignedTo('{}')",
                id.to_uppercase()
            ))),
            Ok(AssignmentFilter {
                at_scope: true,
                principal: Some(id.into())
            })
        );
        assert!(parse_assignment_filter(Some(&"roleDefinitionId eq 'x'".to_owned())).is_err());
        assert!(parse_assignment_filter(Some(&"atScope() and atScope()".to_owned())).is_err());
        assert!(
            parse_assignment_filter(Some(&format!(
                "principalId eq '{id}' and assignedTo('{id}')"
            )))
            .is_err()
        );
    }
}
