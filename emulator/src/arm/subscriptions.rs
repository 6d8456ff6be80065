//! `Microsoft.Resources/subscriptions`: list and get.

use http::StatusCode;
use serde_json::{Value, json};

use super::paging::page;
use super::{Outcome, Request, authorization_failed};
use crate::app::{App, lock};
use crate::token::Claims;

pub(super) fn list_subscriptions(app: &App, req: &Request<'_>, claims: &Claims) -> Outcome {
    let items: Vec<Value> = {
        let store = lock(&app.store);
        store
            .subscriptions
            .values()
            .filter(|s| {
                s.tenant_id.eq_ignore_ascii_case(&claims.tid)
                    && store.has_any_access(&claims.oid, &format!("/subscriptions/{}", s.id))
            })
            .map(crate::store::Subscription::to_arm)
            .collect()
    };
    let size = lock(&app.settings).list_page_size;
    let mut outcome = page(req, &items, size);
    if let Some(body) = outcome.body.as_mut() {
        let count = body["value"].as_array().map_or(0, Vec::len);
        body["count"] = json!({"type": "Total", "value": count});
    }
    outcome
}

pub(super) fn get_subscription(app: &App, claims: &Claims, sub: &str) -> Outcome {
    let store = lock(&app.store);
    let scope = format!("/subscriptions/{}", sub.to_ascii_lowercase());
    let Some(s) = store.subscription(sub) else {
        return Outcome::error(
            StatusCode::NOT_FOUND,
            "SubscriptionNotFound",
            format!("The subscription '{sub}' could not be found."),
        );
    };
    if !store.has_any_access(&claims.oid, &scope) {
        return authorization_failed(claims, "Microsoft.Resources/subscriptions/read", &scope);
    }
    Outcome::json(StatusCode::OK, s.to_arm())
}
