//! `nextLink` / `$skipToken` paging of ARM lists.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Outcome, Request};

/// The `nextLink` URL for a page starting at `offset`.
pub(super) fn next_link(req: &Request<'_>, offset: usize) -> String {
    next_link_with(req, &URL_SAFE_NO_PAD.encode(format!("offset:{offset}")))
}

/// The `nextLink` URL: this request's URL with `$skipToken` set to `token`.
pub(super) fn next_link_with(req: &Request<'_>, token: &str) -> String {
    let kept: Vec<String> = url::form_urlencoded::parse(req.raw_query.as_bytes())
        .filter(|(k, _)| !k.eq_ignore_ascii_case("$skipToken"))
        .map(|(k, v)| format!("{}={}", encode(&k), encode(&v)))
        .collect();
    let mut query = kept.join("&");
    if !query.is_empty() {
        query.push('&');
    }
    format!("{}{}?{query}$skipToken={token}", req.origin, req.path)
}

pub(super) fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace("%24", "$")
}

/// ARM's answer to a `$skipToken` it cannot continue (malformed, expired, or another caller's or list's).
pub(super) fn invalid_skip_token() -> Outcome {
    Outcome::error(
        StatusCode::BAD_REQUEST,
        "InvalidSkipToken",
        "The provided skip token is invalid or has expired.",
    )
}

pub(super) fn skip_offset(req: &Request<'_>) -> Result<usize, Outcome> {
    match req.query.get("$skiptoken") {
        None => Ok(0),
        Some(token) => URL_SAFE_NO_PAD
            .decode(token.as_bytes())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(invalid_skip_token),
    }
}

pub(super) fn page(req: &Request<'_>, items: &[Value], page_size: usize) -> Outcome {
    let offset = match skip_offset(req) {
        Ok(o) => o,
        Err(e) => return e,
    };
    let size = page_size.max(1);
    let end = offset.saturating_add(size).min(items.len());
    let slice: Vec<Value> = items
        .get(offset.min(items.len())..end)
        .unwrap_or_default()
        .to_vec();
    let mut body = json!({ "value": slice });
    if end < items.len() {
        body["nextLink"] = json!(next_link(req, end));
    }
    Outcome::json(StatusCode::OK, body)
}
