//! Routing by path as `management.azure.com` does, and the stats label of each route.

use http::Method;

use crate::app::canonical_scope;
use crate::limits::RequestClass;
use crate::rbac;
use crate::store::ResourceKind;

/// A parsed ARM path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// The generic resource list (`/subscriptions/{s}[/resourceGroups/{rg}]/resources`).
    GenericResources {
        sub: String,
        rg: Option<String>,
    },
    Subscriptions,
    Subscription {
        sub: String,
    },
    ResourceGroups {
        sub: String,
    },
    ResourceGroup {
        sub: String,
        rg: String,
    },
    Collection {
        sub: String,
        rg: Option<String>,
        kind: ResourceKind,
    },
    Item {
        sub: String,
        rg: String,
        kind: ResourceKind,
        name: String,
    },
    Tags {
        scope: String,
    },
    RoleAssignments {
        scope: String,
    },
    RoleAssignment {
        scope: String,
        name: String,
    },
    RoleDefinitions {
        scope: String,
    },
    RoleDefinition {
        scope: String,
        guid: String,
    },
    /// A managed-cluster operation's status (the `Azure-AsyncOperation` URL of a cluster PUT).
    ClusterOperation {
        sub: String,
        id: String,
    },
    Unknown,
}

pub(super) fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub(super) fn kind_of(namespace: &str, ty: &str) -> Option<ResourceKind> {
    if eq(namespace, "Microsoft.ContainerService") && eq(ty, "managedClusters") {
        Some(ResourceKind::Cluster)
    } else if eq(namespace, "Microsoft.ContainerRegistry") && eq(ty, "registries") {
        Some(ResourceKind::Registry)
    } else {
        None
    }
}

/// A role assignment, role definition or tags route: `segs[i]` is the last `providers` segment followed by
/// `Microsoft.Authorization` or `Microsoft.Resources`; what comes before it is the scope.
fn extension_route(segs: &[&str], i: usize) -> Route {
    let scope = canonical_scope(&segs[..i].join("/"));
    let rest = &segs[i + 1..];
    match rest {
        [ns, t] if eq(ns, "Microsoft.Authorization") && eq(t, "roleAssignments") => {
            Route::RoleAssignments { scope }
        }
        [ns, t, name] if eq(ns, "Microsoft.Authorization") && eq(t, "roleAssignments") => {
            Route::RoleAssignment {
                scope,
                name: (*name).to_owned(),
            }
        }
        [ns, t] if eq(ns, "Microsoft.Authorization") && eq(t, "roleDefinitions") => {
            Route::RoleDefinitions { scope }
        }
        [ns, t, guid] if eq(ns, "Microsoft.Authorization") && eq(t, "roleDefinitions") => {
            Route::RoleDefinition {
                scope,
                guid: (*guid).to_owned(),
            }
        }
        [ns, t, d]
            if eq(ns, "Microsoft.Resources")
                && eq(t, "tags")
                && eq(d, "default")
                && scope != "/" =>
        {
            Route::Tags { scope }
        }
        _ => Route::Unknown,
    }
}

pub(crate) fn parse_route(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    // Extension resources (role assignments and definitions, tags) hang off any scope: find the last
    // `providers/Microsoft.Authorization|Microsoft.Resources` pair.
    if let Some(i) = (0..segs.len().saturating_sub(1)).rev().find(|&i| {
        eq(segs[i], "providers")
            && (eq(segs[i + 1], "Microsoft.Authorization")
                || eq(segs[i + 1], "Microsoft.Resources"))
    }) {
        return extension_route(&segs, i);
    }
    match segs.as_slice() {
        [s] if eq(s, "subscriptions") => Route::Subscriptions,
        [s, sub] if eq(s, "subscriptions") => Route::Subscription {
            sub: (*sub).to_owned(),
        },
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resources") => Route::GenericResources {
            sub: (*sub).to_owned(),
            rg: None,
        },
        [s, sub, g, rg, r]
            if eq(s, "subscriptions") && eq(g, "resourcegroups") && eq(r, "resources") =>
        {
            Route::GenericResources {
                sub: (*sub).to_owned(),
                rg: Some((*rg).to_owned()),
            }
        }
        [s, sub, r] if eq(s, "subscriptions") && eq(r, "resourcegroups") => Route::ResourceGroups {
            sub: (*sub).to_owned(),
        },
        [s, sub, r, rg] if eq(s, "subscriptions") && eq(r, "resourcegroups") => {
            Route::ResourceGroup {
                sub: (*sub).to_owned(),
                rg: (*rg).to_owned(),
            }
        }
        [s, sub, p, ns, ty] if eq(s, "subscriptions") && eq(p, "providers") => {
            match kind_of(ns, ty) {
                Some(kind) => Route::Collection {
                    sub: (*sub).to_owned(),
                    rg: None,
                    kind,
                },
                None => Route::Unknown,
            }
        }
        [s, sub, r, rg, p, ns, ty]
            if eq(s, "subscriptions") && eq(r, "resourcegroups") && eq(p, "providers") =>
        {
            match kind_of(ns, ty) {
                Some(kind) => Route::Collection {
                    sub: (*sub).to_owned(),
                    rg: Some((*rg).to_owned()),
                    kind,
                },
                None => Route::Unknown,
            }
        }
        [s, sub, p, ns, l, _location, o, id]
            if eq(s, "subscriptions")
                && eq(p, "providers")
                && eq(ns, "Microsoft.ContainerService")
                && eq(l, "locations")
                && eq(o, "operations") =>
        {
            Route::ClusterOperation {
                sub: (*sub).to_owned(),
                id: (*id).to_owned(),
            }
        }
        [s, sub, r, rg, p, ns, ty, name]
            if eq(s, "subscriptions") && eq(r, "resourcegroups") && eq(p, "providers") =>
        {
            match kind_of(ns, ty) {
                Some(kind) => Route::Item {
                    sub: (*sub).to_owned(),
                    rg: (*rg).to_owned(),
                    kind,
                    name: (*name).to_owned(),
                },
                None => Route::Unknown,
            }
        }
        _ => Route::Unknown,
    }
}

/// The stats label of a request (`GET managedClusters`, `LIST registries`, `PUT roleAssignments`, …).
pub(crate) fn label(method: &Method, route: &Route) -> String {
    let m = method.as_str();
    let (verb, noun) = match route {
        Route::Subscriptions => ("LIST", "subscriptions"),
        Route::Subscription { .. } => (m, "subscriptions"),
        Route::ResourceGroups { .. } => ("LIST", "resourceGroups"),
        Route::ResourceGroup { .. } => (m, "resourceGroups"),
        Route::Collection { kind, .. } => ("LIST", kind.label()),
        Route::Item { kind, .. } => (m, kind.label()),
        Route::Tags { .. } => (m, "tags"),
        Route::RoleAssignments { .. } => ("LIST", "roleAssignments"),
        Route::RoleAssignment { .. } => (m, "roleAssignments"),
        Route::RoleDefinitions { .. } => ("LIST", "roleDefinitions"),
        Route::RoleDefinition { .. } => (m, "roleDefinitions"),
        Route::GenericResources { .. } => ("LIST", "resources"),
        Route::ClusterOperation { .. } => (m, "operations"),
        Route::Unknown => (m, "unknown"),
    };
    let verb = if verb == "GET"
        && matches!(
            route,
            Route::Subscriptions
                | Route::ResourceGroups { .. }
                | Route::Collection { .. }
                | Route::RoleAssignments { .. }
                | Route::RoleDefinitions { .. }
        ) {
        "LIST"
    } else {
        verb
    };
    format!("{verb} {noun}")
}

pub(super) fn route_subscription(route: &Route) -> Option<String> {
    match route {
        Route::Subscriptions | Route::Unknown => None,
        Route::Subscription { sub }
        | Route::ClusterOperation { sub, .. }
        | Route::ResourceGroups { sub }
        | Route::GenericResources { sub, .. }
        | Route::ResourceGroup { sub, .. }
        | Route::Collection { sub, .. }
        | Route::Item { sub, .. } => Some(sub.to_ascii_lowercase()),
        Route::Tags { scope }
        | Route::RoleAssignments { scope }
        | Route::RoleAssignment { scope, .. }
        | Route::RoleDefinitions { scope }
        | Route::RoleDefinition { scope, .. } => rbac::subscription_of(scope),
    }
}

pub(super) fn request_class(method: &Method) -> RequestClass {
    match *method {
        Method::GET | Method::HEAD => RequestClass::Read,
        Method::DELETE => RequestClass::Delete,
        _ => RequestClass::Write,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ResourceKind;

    #[test]
    fn routes() {
        assert_eq!(parse_route("/subscriptions"), Route::Subscriptions);
        assert_eq!(
            parse_route(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"
            ),
            Route::Item {
                sub: "s".into(),
                rg: "rg".into(),
                kind: ResourceKind::Cluster,
                name: "c".into()
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/providers/Microsoft.ContainerRegistry/registries"),
            Route::Collection {
                sub: "s".into(),
                rg: None,
                kind: ResourceKind::Registry
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r/providers/Microsoft.Authorization/roleAssignments/x"),
            Route::RoleAssignment { scope: "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r".into(), name: "x".into() }
        );
        assert_eq!(
            parse_route("/providers/Microsoft.Authorization/roleDefinitions/g"),
            Route::RoleDefinition {
                scope: "/".into(),
                guid: "g".into()
            }
        );
        assert_eq!(
            parse_route(
                "/subscriptions/s/resourcegroups/rg/providers/Microsoft.Resources/tags/default"
            ),
            Route::Tags {
                scope: "/subscriptions/s/resourcegroups/rg".into()
            }
        );
        assert_eq!(
            parse_route("/subscriptions/s/providers/Microsoft.Compute/virtualMachines"),
            Route::Unknown
        );
    }
}
