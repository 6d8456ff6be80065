//! Never green while blind (issue 10, rule 7): before a verification run inventories, it proves it can see
//! what it must verify.

#[allow(clippy::wildcard_imports)]
use super::*;

impl<C: AzureConnect> Engine<C> {
    /// Never green while blind (issue 10, rule 7): every subscription to verify is visible and enabled, there is
    /// at least one, and on each the identity holds (directly or through a group, at the subscription or
    /// above) the read rights the inventory needs. Resource Graph and ARM lists silently leave out what the
    /// caller cannot read, so an empty answer proves nothing: the rights are checked from the identity's own
    /// role assignments (one list per subscription, one GET per distinct role).
    pub(super) async fn check_sight(
        &self,
        azure: &C::Ops,
        subscriptions: &[String],
    ) -> Result<(), EngineError> {
        let object_id = azure.handler_object_id().await;
        let who = object_id
            .clone()
            .unwrap_or_else(|| "(unknown object id)".to_owned());
        let blind = |detail: String| EngineError::ScopeNotVisible { detail };
        if subscriptions.is_empty() {
            return Err(blind(format!(
                "no subscription is visible to the identity {who}: grant it the acr-autoattach reader role \
                 (Microsoft.Resources/subscriptions/read, {}) on the subscriptions to verify",
                INVENTORY_READS.join(", ")
            )));
        }
        let visible = self.visible_subscriptions(azure).await?;
        for sub in subscriptions {
            match visible
                .iter()
                .find(|v| v.subscription_id.eq_ignore_ascii_case(sub))
            {
                None => {
                    return Err(blind(format!(
                        "subscription {sub} is not visible to the identity {who}: it lacks \
                         Microsoft.Resources/subscriptions/read there (grant it the acr-autoattach reader role)"
                    )));
                }
                Some(v) if !v.is_enabled() => {
                    return Err(blind(format!(
                        "subscription {sub} is not enabled (state {})",
                        v.state.as_deref().unwrap_or("unknown")
                    )));
                }
                Some(_) => {}
            }
        }
        let Some(object_id) = object_id else {
            return Err(blind(
                "the identity's token carries no object id (oid): its read rights cannot be checked".into(),
            ));
        };
        let mut definitions: HashMap<String, Option<RoleDefinition>> = HashMap::new();
        let mut problems = Vec::new();
        for sub in subscriptions {
            let scope = format!("/subscriptions/{sub}");
            let held = match azure
                .list_role_assignments(&scope, &AssignmentFilter::AssignedTo(object_id.clone()))
                .await
            {
                Ok(held) => held,
                Err(e @ AzureError::Forbidden { .. }) => {
                    problems.push(format!(
                        "the identity {object_id} lacks Microsoft.Authorization/roleAssignments/read on \
                         subscription {sub} ({e})"
                    ));
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let sub_id = ResourceId::parse(&scope).map_err(|e| blind(e.to_string()))?;
            let above: Vec<&RoleAssignment> = held
                .iter()
                .filter(|a| {
                    let s = a.scope.trim();
                    s == "/"
                        || s.to_ascii_lowercase()
                            .starts_with("/providers/microsoft.management/managementgroups/")
                        || sub_id.is_within(s)
                })
                .collect();
            for a in &above {
                if !definitions.contains_key(a.role_definition_guid.as_str()) {
                    let def = azure
                        .get_role_definition(&scope, &a.role_definition_guid)
                        .await
                        .ok()
                        .flatten();
                    definitions.insert(a.role_definition_guid.to_string(), def);
                }
            }
            let missing: Vec<&str> = INVENTORY_READS
                .iter()
                .copied()
                .filter(|action| {
                    !above.iter().any(|a| {
                        definitions
                            .get(a.role_definition_guid.as_str())
                            .and_then(Option::as_ref)
                            .is_some_and(|d| planner::permits(&d.actions, &d.not_actions, action))
                    })
                })
                .collect();
            if !missing.is_empty() {
                problems.push(format!(
                    "the identity {object_id} lacks {} on subscription {sub} (grant it the acr-autoattach \
                     reader role there); what it cannot read would be reported as absent",
                    missing.join(", ")
                ));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(blind(problems.join("; ")))
        }
    }
}
