//! Microsoft Graph security groups: create (`POST /v1.0/groups`, with `owners@odata.bind` / `members@odata.bind`),
//! get, list with `$filter`, owners, members (list with paging, add by `$ref`, remove by `$ref`), a group's
//! `transitiveMembers` (nested groups followed, paged) and a service principal's `transitiveMemberOf`. Each call checks the application permissions in the caller's token as
//! `docs/grant-modes.md` records them; an application that owns a group may also read it and manage its members
//! (observed, behind `Settings::graph_owners_manage_members`).

use std::time::Instant;

use http::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::app::{App, lock};
use crate::arm::{self, Outcome, Request};
use crate::groups::{self, Group, Membership};
use crate::store::{Principal, PrincipalKind, Store};
use crate::token::Claims;

use super::graph_common::{
    CONTEXT, CREATE_GROUPS, READ_APPS, READ_GROUPS, READ_USERS, WRITE_APPS, WRITE_MEMBERS,
    bad_request, denied, directory_object, group_json, has_role, limited, not_found, page,
};

/// Graph allows at most this many owners plus members in one create request.
const MAX_BINDS: usize = 20;

/// The group routes; `None` when `rest` (the path after `/v1.0/`) is not one of them.
pub(super) fn route(app: &App, req: &Request<'_>, claims: &Claims, rest: &str) -> Option<Outcome> {
    let rest = rest.replace("%24", "$");
    let parts: Vec<&str> = rest.split('/').collect();
    let owners_manage = lock(&app.settings).graph_owners_manage_members;
    let page_size = lock(&app.settings).graph_page_size;
    let ctx = Ctx {
        req,
        claims,
        owners_manage,
        page_size,
    };
    let method = req.method.clone();
    let outcome = match (method, parts.as_slice()) {
        (Method::POST, ["groups"]) => create_group(app, &ctx),
        (Method::GET, ["groups"]) => list_groups(&lock(&app.store), &ctx),
        (Method::GET, ["groups", id]) => with_readable(&lock(&app.store), &ctx, id, |_, g| {
            Outcome::json(StatusCode::OK, entity(g))
        }),
        (Method::GET, ["groups", id, "owners"]) => {
            with_readable(&lock(&app.store), &ctx, id, |s, g| {
                list_objects(s, &ctx, &g.owners)
            })
        }
        (Method::GET, ["groups", id, "members"]) => {
            with_readable(&lock(&app.store), &ctx, id, |s, g| {
                let members: Vec<String> =
                    g.current_members().into_iter().map(str::to_owned).collect();
                list_objects(s, &ctx, &members)
            })
        }
        (Method::GET, ["groups", id, "transitiveMembers"]) => {
            with_readable(&lock(&app.store), &ctx, id, |s, g| {
                list_objects(s, &ctx, &groups::transitive_members(&s.groups, &g.id))
            })
        }
        (Method::POST, ["groups", id, "members", "$ref"]) => add_member(app, &ctx, id),
        (Method::DELETE, ["groups", id, "members", member, "$ref"]) => {
            remove_member(app, &ctx, id, member)
        }
        (Method::GET, ["servicePrincipals", id, "transitiveMemberOf"]) => {
            transitive_member_of(&lock(&app.store), &ctx, id)
        }
        _ => return None,
    };
    Some(outcome)
}

/// The request and the caller, as every group call needs them.
struct Ctx<'a> {
    req: &'a Request<'a>,
    claims: &'a Claims,
    owners_manage: bool,
    page_size: usize,
}

impl Ctx<'_> {
    fn owns(&self, g: &Group) -> bool {
        self.owners_manage && g.is_owner(&self.claims.oid)
    }

    fn may_read(&self, g: &Group) -> bool {
        has_role(self.claims, READ_GROUPS) || self.owns(g)
    }
}

fn entity(g: &Group) -> Value {
    let mut body = group_json(g);
    body["@odata.context"] = json!(format!("{CONTEXT}#groups/$entity"));
    body
}

/// Runs `f` on group `id` if it exists and the caller may read it (404 first: Graph answers 404 for a group
/// that does not exist whatever the caller's rights).
fn with_readable(
    store: &Store,
    ctx: &Ctx<'_>,
    id: &str,
    f: impl FnOnce(&Store, &Group) -> Outcome,
) -> Outcome {
    match store.groups.get(&id.to_ascii_lowercase()) {
        None => not_found(id),
        Some(g) if ctx.may_read(g) => f(store, g),
        Some(_) => denied(),
    }
}

/// The objects with these ids (owners or members), paged.
fn list_objects(store: &Store, ctx: &Ctx<'_>, ids: &[String]) -> Outcome {
    let items: Vec<Value> = ids
        .iter()
        .filter_map(|id| store.principal(id))
        .map(|p| directory_object(store, p))
        .collect();
    page(
        ctx.req,
        &format!("{CONTEXT}#directoryObjects"),
        items,
        ctx.page_size,
    )
}

/// The id at the end of an `@odata.id` / `@odata.bind` reference (`https://graph.microsoft.com/v1.0/directoryObjects/{id}`,
/// `.../servicePrincipals/{id}`, `.../users/{id}`, `.../groups/{id}`).
fn reference_id(reference: &str) -> Option<String> {
    let last = reference.trim().trim_end_matches('/').rsplit('/').next()?;
    let last = last.strip_suffix("/$ref").unwrap_or(last);
    uuid::Uuid::parse_str(last).ok().map(|u| u.to_string())
}

/// Whether the caller may name `p` as an owner or member at create time: itself always; another object only with
/// a permission that reads its type (as the create-group page says for `Group.Create`).
fn may_bind(claims: &Claims, p: &Principal) -> bool {
    p.object_id.eq_ignore_ascii_case(&claims.oid)
        || match p.kind {
            PrincipalKind::ServicePrincipal => has_role(claims, READ_APPS),
            PrincipalKind::User => has_role(claims, READ_USERS),
            PrincipalKind::Group => has_role(claims, READ_GROUPS),
        }
}

/// The ids of `field` (`owners@odata.bind` or `members@odata.bind`), each resolved and allowed.
fn binds(
    store: &Store,
    claims: &Claims,
    body: &Value,
    field: &str,
) -> Result<Vec<String>, Outcome> {
    let Some(raw) = body.get(field) else {
        return Ok(Vec::new());
    };
    let Some(list) = raw.as_array() else {
        return Err(bad_request(&format!(
            "The property '{field}' must be an array of references."
        )));
    };
    let mut ids = Vec::new();
    for item in list {
        let reference = item.as_str().unwrap_or_default();
        let Some(id) = reference_id(reference) else {
            return Err(bad_request(&format!(
                "Invalid object identifier '{reference}'."
            )));
        };
        let Some(p) = store.principal(&id) else {
            return Err(not_found(&id));
        };
        if !may_bind(claims, p) {
            return Err(denied());
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// Checks the required properties of a security group; `Err` is Graph's 400.
fn validate_new_group(body: &Value) -> Result<(String, String, bool, bool), Outcome> {
    let required = |name: &str| {
        bad_request(&format!(
            "A value is required for property '{name}' of resource 'Group'."
        ))
    };
    let display_name = body
        .get("displayName")
        .and_then(Value::as_str)
        .ok_or_else(|| required("displayName"))?;
    let nickname = body
        .get("mailNickname")
        .and_then(Value::as_str)
        .ok_or_else(|| required("mailNickname"))?;
    let mail_enabled = body
        .get("mailEnabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| required("mailEnabled"))?;
    let security_enabled = body
        .get("securityEnabled")
        .and_then(Value::as_bool)
        .ok_or_else(|| required("securityEnabled"))?;
    let invalid = |name: &str| {
        bad_request(&format!(
            "Invalid value specified for property '{name}' of resource 'Group'."
        ))
    };
    if display_name.trim().is_empty() || display_name.chars().count() > 256 {
        return Err(invalid("displayName"));
    }
    let bad_char =
        |c: char| !c.is_ascii() || c.is_ascii_control() || "@()\\[]\";:.<>, ".contains(c);
    if nickname.is_empty() || nickname.len() > 64 || nickname.chars().any(bad_char) {
        return Err(invalid("mailNickname"));
    }
    let group_types = body
        .get("groupTypes")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    if group_types > 0 || mail_enabled || !security_enabled {
        return Err(bad_request(
            "This emulator creates security groups only: groupTypes empty, mailEnabled false, securityEnabled true.",
        ));
    }
    Ok((
        display_name.to_owned(),
        nickname.to_owned(),
        mail_enabled,
        security_enabled,
    ))
}

/// `POST /v1.0/groups`: a security group, owned and populated as the binds say.
fn create_group(app: &App, ctx: &Ctx<'_>) -> Outcome {
    if !has_role(ctx.claims, CREATE_GROUPS) {
        return denied();
    }
    let Ok(body) = serde_json::from_slice::<Value>(ctx.req.body) else {
        return bad_request("The request body is not valid JSON.");
    };
    let (display_name, mail_nickname, mail_enabled, security_enabled) =
        match validate_new_group(&body) {
            Ok(v) => v,
            Err(e) => return e,
        };
    let id = app.new_id();
    let now = Instant::now();
    let mut store = lock(&app.store);
    let (owners, members) = match (
        binds(&store, ctx.claims, &body, "owners@odata.bind"),
        binds(&store, ctx.claims, &body, "members@odata.bind"),
    ) {
        (Ok(o), Ok(m)) => (o, m),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if owners.len() + members.len() > MAX_BINDS {
        return bad_request(
            "A maximum of 20 owners and members can be added when a group is created.",
        );
    }
    let created = OffsetDateTime::now_utc();
    let mut group = Group {
        id: id.clone(),
        display_name: display_name.clone(),
        description: body
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned),
        mail_nickname,
        mail_enabled,
        security_enabled,
        created,
        owners,
        members: std::collections::BTreeMap::new(),
    };
    for m in &members {
        group.add_member(m, now, store.membership_delay);
    }
    let tenant = app.config.default_tenant.clone();
    store.principals.insert(
        id.clone(),
        Principal {
            object_id: id.clone(),
            app_id: String::new(),
            display_name,
            kind: PrincipalKind::Group,
            service_principal_type: String::new(),
            tenant_id: tenant,
            managed_identity_resource_id: None,
            created_time: created,
            created_at: now,
        },
    );
    let answer = entity(&group);
    store.groups.insert(id, group);
    Outcome::json(StatusCode::CREATED, answer)
}

/// Whether the caller may add or remove `member` in `g`: as an owner (observed), or with a member-writing
/// permission plus, for a service-principal member, one that writes service principals (as documented).
fn may_write_member(ctx: &Ctx<'_>, g: &Group, member: Option<&Principal>) -> bool {
    ctx.owns(g)
        || (has_role(ctx.claims, WRITE_MEMBERS)
            && (member.is_none_or(|m| m.kind != PrincipalKind::ServicePrincipal)
                || has_role(ctx.claims, WRITE_APPS)))
}

/// `POST /v1.0/groups/{id}/members/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`: 204, 400 when it
/// already is a member, 404 when the group or the object does not exist.
fn add_member(app: &App, ctx: &Ctx<'_>, id: &str) -> Outcome {
    let reference = serde_json::from_slice::<Value>(ctx.req.body)
        .ok()
        .and_then(|v| {
            v.get("@odata.id")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
    let Some(reference) = reference else {
        return bad_request(
            "The request body must be a reference: {\"@odata.id\": \"https://graph.microsoft.com/v1.0/directoryObjects/{id}\"}.",
        );
    };
    let Some(member_id) = reference_id(&reference) else {
        return bad_request(&format!("Invalid object identifier '{reference}'."));
    };
    let now = Instant::now();
    let mut store = lock(&app.store);
    let delay = store.membership_delay;
    let member = store.principal(&member_id).cloned();
    let key = id.to_ascii_lowercase();
    let Some(group) = store.groups.get(&key) else {
        return not_found(id);
    };
    if !may_write_member(ctx, group, member.as_ref()) {
        return denied();
    }
    if member.is_none() {
        return not_found(&member_id);
    }
    if member_id == key {
        return bad_request("A group cannot be a member of itself.");
    }
    let Some(group) = store.groups.get_mut(&key) else {
        return not_found(id);
    };
    if group.add_member(&member_id, now, delay) {
        Outcome::empty(StatusCode::NO_CONTENT)
    } else {
        bad_request(
            "One or more added object references already exist for the following modified properties: 'members'.",
        )
    }
}

/// `DELETE /v1.0/groups/{id}/members/{member}/$ref`: 204, or 404 when the group does not exist or `member` is not
/// one of its members.
fn remove_member(app: &App, ctx: &Ctx<'_>, id: &str, member_id: &str) -> Outcome {
    let now = Instant::now();
    let mut store = lock(&app.store);
    let member = store.principal(member_id).cloned();
    let key = id.to_ascii_lowercase();
    let Some(group) = store.groups.get(&key) else {
        return not_found(id);
    };
    if !may_write_member(ctx, group, member.as_ref()) {
        return denied();
    }
    let Some(group) = store.groups.get_mut(&key) else {
        return not_found(id);
    };
    if group.remove_member(member_id, now) {
        Outcome::empty(StatusCode::NO_CONTENT)
    } else {
        not_found(member_id)
    }
}

/// `GET /v1.0/servicePrincipals/{id}/transitiveMemberOf`: the groups it belongs to, directly or nested, as the
/// directory holds them now (no token delay). Without a group-reading permission each group comes back with its
/// type and id only, as Graph does for objects the caller may not read.
fn transitive_member_of(store: &Store, ctx: &Ctx<'_>, id: &str) -> Outcome {
    if !has_role(ctx.claims, READ_APPS) {
        return denied();
    }
    let Some(sp) = store
        .principal(id)
        .filter(|p| p.kind == PrincipalKind::ServicePrincipal)
    else {
        return not_found(id);
    };
    let full_groups = has_role(ctx.claims, READ_GROUPS);
    let items: Vec<Value> =
        groups::transitive_groups(&store.groups, &sp.object_id, Membership::is_current)
            .into_iter()
            .map(|g| {
                let body = group_json(g);
                if full_groups || ctx.owns(g) {
                    body
                } else {
                    limited(&body)
                }
            })
            .collect();
    page(
        ctx.req,
        &format!("{CONTEXT}#directoryObjects"),
        items,
        ctx.page_size,
    )
}

/// `GET /v1.0/groups?$filter=…`: `displayName eq '…'`, `startswith(displayName,'…')`, `mailNickname eq '…'`,
/// `id eq '…'`, joined by `and`; string comparisons ignore case, as the directory's do.
fn list_groups(store: &Store, ctx: &Ctx<'_>) -> Outcome {
    if !has_role(ctx.claims, READ_GROUPS) {
        return denied();
    }
    let clauses = match ctx.req.query.get("$filter") {
        None => Vec::new(),
        Some(f) => match parse_filter(f) {
            Some(c) => c,
            None => {
                return arm::graph_error(
                    StatusCode::BAD_REQUEST,
                    "Request_UnsupportedQuery",
                    &format!(
                        "Unsupported query '{f}'. This emulator supports displayName eq, startswith(displayName,…), mailNickname eq and id eq, joined by and."
                    ),
                );
            }
        },
    };
    let items: Vec<Value> = store
        .groups
        .values()
        .filter(|g| clauses.iter().all(|c| c.matches(g)))
        .map(group_json)
        .collect();
    page(ctx.req, &format!("{CONTEXT}#groups"), items, ctx.page_size)
}

/// One clause of a group `$filter`.
#[derive(Debug, PartialEq, Eq)]
enum Clause {
    Eq(Field, String),
    StartsWith(Field, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    DisplayName,
    MailNickname,
    Id,
}

impl Clause {
    fn matches(&self, g: &Group) -> bool {
        let value = |f: Field| match f {
            Field::DisplayName => g.display_name.as_str(),
            Field::MailNickname => g.mail_nickname.as_str(),
            Field::Id => g.id.as_str(),
        };
        match self {
            Self::Eq(f, v) => value(*f).eq_ignore_ascii_case(v),
            Self::StartsWith(f, v) => value(*f)
                .to_ascii_lowercase()
                .starts_with(&v.to_ascii_lowercase()),
        }
    }
}

fn field(name: &str) -> Option<Field> {
    match name.trim() {
        "displayName" => Some(Field::DisplayName),
        "mailNickname" => Some(Field::MailNickname),
        "id" => Some(Field::Id),
        _ => None,
    }
}

/// A quoted OData string (`'it''s'` → `it's`).
fn quoted(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() >= 2 && s.starts_with('\'') && s.ends_with('\''))
        .then(|| s[1..s.len() - 1].replace("''", "'"))
}

/// Splits at ` and ` outside quotes.
fn split_and(filter: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut in_quote) = (0, false);
    let bytes = filter.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            in_quote = !in_quote;
        } else if !in_quote && filter[i..].to_ascii_lowercase().starts_with(" and ") {
            parts.push(&filter[start..i]);
            i += 5;
            start = i;
            continue;
        }
        i += 1;
    }
    parts.push(&filter[start..]);
    parts
}

fn parse_filter(filter: &str) -> Option<Vec<Clause>> {
    split_and(filter)
        .into_iter()
        .map(|clause| {
            let c = clause.trim();
            if let Some(inner) = c
                .strip_prefix("startswith(")
                .or_else(|| c.strip_prefix("startsWith("))
                .and_then(|r| r.strip_suffix(')'))
            {
                let (name, value) = inner.split_once(',')?;
                return Some(Clause::StartsWith(field(name)?, quoted(value)?));
            }
            let (name, value) = c.split_once(" eq ")?;
            Some(Clause::Eq(field(name)?, quoted(value)?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_with_quotes_and_and() {
        assert_eq!(
            parse_filter("displayName eq 'a and b''s' and startswith(mailNickname,'acr')"),
            Some(vec![
                Clause::Eq(Field::DisplayName, "a and b's".into()),
                Clause::StartsWith(Field::MailNickname, "acr".into()),
            ])
        );
        assert_eq!(parse_filter("securityEnabled eq true"), None);
        assert_eq!(parse_filter("displayName eq x"), None);
        assert_eq!(
            reference_id(
                "https://graph.microsoft.com/v1.0/directoryObjects/7F951DDA-4ED3-4680-A7CA-43FE172D538D"
            ),
            Some("7f951dda-4ed3-4680-a7ca-43fe172d538d".into())
        );
        assert_eq!(
            reference_id("https://graph.microsoft.com/v1.0/users/me"),
            None
        );
    }
}
