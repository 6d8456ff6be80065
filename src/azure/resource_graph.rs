//! Resource Graph queries (`POST /providers/Microsoft.ResourceGraph/resources`), paged by `$skipToken`.

use reqwest::Method;
use serde_json::{Value, json};

use super::ScopedClient;
use super::arm::api_versions;
use super::error::AzureError;
use super::http::{Audience, Call, Operation, join, set_query};
use super::wire;

/// Rows per page requested (Resource Graph's maximum is 1000).
const PAGE_SIZE: u32 = 1000;
/// Resource Graph accepts at most this many subscriptions per query.
const SUBSCRIPTIONS_PER_QUERY: usize = 1000;

/// The query shapes the inventory sends (and the emulator implements).
pub mod queries {
    pub const CLUSTERS: &str = "resources | where type =~ 'microsoft.containerservice/managedclusters' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc";
    pub const REGISTRIES: &str = "resources | where type =~ 'microsoft.containerregistry/registries' | project id, name, type, location, tenantId, subscriptionId, resourceGroup, tags, properties | order by id asc";
    pub const ROLE_ASSIGNMENTS: &str = "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' | project id, name, properties | order by id asc";

    /// Role assignments of the given principals only. Ids that are not GUID-like are dropped (they could
    /// break out of the string literal).
    pub fn role_assignments_of(principals: &[String]) -> String {
        let list: Vec<String> = principals
            .iter()
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            .map(|p| format!("'{p}'"))
            .collect();
        format!(
            "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' and tolower(tostring(properties.principalId)) in ({}) | project id, name, properties | order by id asc",
            list.join(", ")
        )
    }
}

impl ScopedClient {
    /// All rows of `query` over `subscriptions`, following `$skipToken` to the end (bounded).
    pub async fn resource_graph(
        &self,
        subscriptions: &[String],
        query: &str,
    ) -> Result<Vec<Value>, AzureError> {
        let mut rows = Vec::new();
        self.resource_graph_pages(subscriptions, query, |mut page| rows.append(&mut page))
            .await?;
        Ok(rows)
    }

    /// The rows of `query` converted by `parse` page by page: each page's JSON is dropped as soon as its rows are
    /// converted, so only the compact rows are ever held. A row that does not convert is skipped with a warning
    /// naming it (`what` and its id).
    pub async fn resource_graph_parsed<T>(
        &self,
        subscriptions: &[String],
        query: &str,
        what: &str,
        mut parse: impl FnMut(&Value) -> Result<T, wire::WireError>,
    ) -> Result<(Vec<T>, Vec<String>), AzureError> {
        let mut rows = Vec::new();
        let mut warnings = Vec::new();
        self.resource_graph_pages(subscriptions, query, |page| {
            wire::convert_rows(page, what, &mut parse, &mut rows, &mut warnings);
        })
        .await?;
        Ok((rows, warnings))
    }

    /// Sends `query` page by page, handing each page's rows to `on_page` before asking for the next.
    async fn resource_graph_pages(
        &self,
        subscriptions: &[String],
        query: &str,
        mut on_page: impl FnMut(Vec<Value>),
    ) -> Result<(), AzureError> {
        let op = Operation::ResourceGraph;
        let mut url = join(
            &self.inner().resource_graph,
            "/providers/Microsoft.ResourceGraph/resources",
        )?;
        set_query(&mut url, &[("api-version", api_versions::RESOURCE_GRAPH)]);
        let chunks: Vec<&[String]> = if subscriptions.is_empty() {
            vec![&[][..]]
        } else {
            subscriptions.chunks(SUBSCRIPTIONS_PER_QUERY).collect()
        };
        for chunk in chunks {
            let mut skip_token: Option<String> = None;
            let mut pages = 0;
            loop {
                pages += 1;
                if pages > self.inner().max_pages {
                    return Err(AzureError::Decode {
                        operation: op.as_str(),
                        message: "too many pages".into(),
                    });
                }
                let mut options = json!({"$top": PAGE_SIZE, "resultFormat": "objectArray"});
                if let Some(t) = &skip_token {
                    options["$skipToken"] = json!(t);
                }
                let mut body = json!({"query": query, "options": options});
                if !chunk.is_empty() {
                    body["subscriptions"] = json!(chunk);
                }
                let call = Call {
                    op,
                    method: Method::POST,
                    url: url.clone(),
                    body: Some(&body),
                    audience: Audience::ResourceGraph,
                    retry_principal_not_found: false,
                };
                let page = self.execute(&call).await?.json(op)?;
                let (data, next) =
                    wire::take_resource_graph_page(page).ok_or_else(|| AzureError::Decode {
                        operation: op.as_str(),
                        message: "no `data`".into(),
                    })?;
                on_page(data);
                match next {
                    Some(t) if Some(&t) != skip_token.as_ref() => skip_token = Some(t),
                    Some(_) => {
                        return Err(AzureError::Decode {
                            operation: op.as_str(),
                            message: "$skipToken loops".into(),
                        });
                    }
                    None => break,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::queries;

    #[test]
    fn principal_filter_query_matches_the_emulated_shape_and_drops_unsafe_ids() {
        let q = queries::role_assignments_of(&["AB-12".into(), "x') or (1".into(), "cd".into()]);
        assert_eq!(
            q,
            "authorizationresources | where type =~ 'microsoft.authorization/roleassignments' and tolower(tostring(properties.principalId)) in ('ab-12', 'cd') | project id, name, properties | order by id asc"
        );
    }
}
