//! Builders of core values for unit tests, in one place. (Integration tests build whole estates through the
//! emulator: `tests/support/estate.rs`.)
#![allow(clippy::unwrap_used)]

use crate::core::model::{
    Cluster, ClusterPrincipal, Registry, ResourceId, RoleAssignment, RoleAssignmentMode, Tags,
    ownership_description,
};
use crate::core::planner::{Observed, PlanSettings};

pub const SUB: &str = "11111111-1111-4111-8111-111111111111";
pub const PRINCIPAL: &str = "0000aaaa-0000-4000-8000-000000000001";

pub fn cluster(tags: &[(&str, &str)]) -> Cluster {
    Cluster {
        id: ResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/apps/providers/Microsoft.ContainerService/managedClusters/aks1"
        ))
        .unwrap(),
        location: "westeurope".into(),
        tenant_id: None,
        tags: tags.iter().copied().collect::<Tags>(),
        provisioning_state: "Succeeded".into(),
        principal: ClusterPrincipal::Kubelet {
            object_id: PRINCIPAL.into(),
            client_id: None,
        },
    }
}

pub fn registry(tag: Option<&str>, mode: RoleAssignmentMode) -> Registry {
    Registry {
        id: ResourceId::parse(&format!(
            "/subscriptions/{SUB}/resourceGroups/platform/providers/Microsoft.ContainerRegistry/registries/acr1"
        ))
        .unwrap(),
        location: "westeurope".into(),
        tenant_id: None,
        tags: tag
            .map(|v| vec![("acr-autoattach", v)])
            .unwrap_or_default()
            .into_iter()
            .collect::<Tags>(),
        mode,
    }
}

/// An assignment of `role` to [`PRINCIPAL`] at `scope`; one made by this project (`owned_by`) carries the
/// deterministic name, as the real ones do (detach removes nothing else).
pub fn assignment(scope: &str, role: &str, owned_by: Option<&Cluster>) -> RoleAssignment {
    let deterministic = owned_by.and_then(|_| {
        let registry = crate::core::model::ResourceId::parse(scope).ok()?;
        let pull = crate::core::model::PullRole::from_definition_guid(role)?;
        Some(crate::core::model::assignment_name(&registry, PRINCIPAL, pull).to_string())
    });
    let name = deterministic.unwrap_or_else(|| format!("x-{role}"));
    RoleAssignment {
        id: format!("{scope}/providers/Microsoft.Authorization/roleAssignments/{name}").into(),
        name,
        scope: scope.to_owned().into(),
        role_definition_guid: role.to_owned().into(),
        principal_id: PRINCIPAL.to_owned().into(),
        principal_type: Some("ServicePrincipal".into()),
        description: owned_by.map(|c| ownership_description(&c.id).into()),
        condition: None,
    }
}

pub fn settings(detach: bool) -> PlanSettings {
    let mut s = PlanSettings::new("acr-autoattach");
    s.detach = detach;
    s
}

pub fn observed(c: Cluster, r: Registry, assignments: Vec<RoleAssignment>) -> Observed {
    Observed {
        clusters: vec![c],
        registries: vec![r],
        assignments,
        ..Observed::default()
    }
}

/// The tool's group's own AcrPull assignment at `registry` (deterministic name, the group's mark).
pub fn group_assignment(registry: &Registry, group: &str) -> RoleAssignment {
    let spec = crate::core::planner::AssignmentSpec::for_group(
        &registry.id,
        group,
        crate::core::model::PullRole::AcrPull,
    );
    RoleAssignment {
        id: spec.assignment_id().into(),
        name: spec.name.to_string(),
        scope: registry.id.to_string().into(),
        role_definition_guid: crate::core::model::PullRole::AcrPull
            .definition_guid()
            .into(),
        principal_id: group.into(),
        principal_type: Some("Group".into()),
        description: Some(spec.description.into()),
        condition: None,
    }
}
