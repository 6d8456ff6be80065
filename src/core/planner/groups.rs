//! Group mode (issue 16 point 2, `docs/grant-modes.md` §5).

#[allow(clippy::wildcard_imports)]
use super::*;

/// The order of a plan's group items: registry, role, kind, then group and principal.
pub(super) fn sort_group_items(items: &mut [GroupItem]) {
    items.sort_by(|a, b| {
        (&a.registry, a.role.definition_guid(), a.action.order())
            .cmp(&(&b.registry, b.role.definition_guid(), b.action.order()))
            .then_with(|| tie_break(&a.action).cmp(&tie_break(&b.action)))
    });
}

fn tie_break(action: &GroupAction) -> (&str, &str) {
    match action {
        GroupAction::EnsureGroup { .. } => ("", ""),
        GroupAction::AssignGroup { group_id, .. } => (group_id, ""),
        GroupAction::Leave {
            group_id,
            principal_id,
            ..
        } => (group_id, principal_id),
        GroupAction::RemoveAssignment {
            group_id,
            assignment,
            ..
        } => (group_id, &assignment.id),
    }
}
