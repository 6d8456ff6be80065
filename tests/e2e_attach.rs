//! Attach on events, end to end: Event Grid → Functions host simulator → `acr-autoattach serve` → ARM
//! emulator, with no shortcut around any of them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/estate.rs"]
mod estate;

use acr_autoattach::model::{ACR_PULL_GUID, REPOSITORY_READER_GUID};
use azure_emulator::admin::{ClusterSpec, RegistrySpec};
use estate::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_cluster_is_attached_to_exactly_the_registries_that_select_it() {
    let bed = start(options()).await;
    let s1 = sub(&bed, 0);
    rg(&bed, &s1, "platform").await;
    rg(&bed, &s1, "apps").await;
    let all = registry(&bed, RegistrySpec::new(&s1, "platform", "acrall").tag("acr-autoattach", "*")).await;
    let prod = registry(&bed, RegistrySpec::new(&s1, "platform", "acrprod").tag("acr-autoattach", "env=prod").abac()).await;
    let off = registry(&bed, RegistrySpec::new(&s1, "platform", "acrprivate")).await;
    settle(&bed).await;

    let (_, dev) = cluster(&bed, ClusterSpec::new(&s1, "apps", "aks-dev").tag("env", "dev")).await;
    let (_, prd) = cluster(&bed, ClusterSpec::new(&s1, "apps", "aks-prod").tag("env", "prod")).await;
    settle(&bed).await;

    let failed = bed.host.invocations().iter().filter(|i| !i.succeeded()).count();
    if pulls(&bed, &all, &dev).await.len() != 1 {
        dump(&bed);
    }
    assert_eq!(pulls(&bed, &all, &dev).await, vec![(ACR_PULL_GUID.to_owned(), true)]);
    assert_eq!(pulls(&bed, &all, &prd).await, vec![(ACR_PULL_GUID.to_owned(), true)]);
    assert_eq!(pulls(&bed, &prod, &prd).await, vec![(REPOSITORY_READER_GUID.to_owned(), true)]);
    assert!(pulls(&bed, &prod, &dev).await.is_empty());
    assert!(pulls(&bed, &off, &dev).await.is_empty() && pulls(&bed, &off, &prd).await.is_empty());
    eprintln!("invocations: {} ({failed} failed, retried by Event Grid)", bed.host.invocations().len());
    bed.shutdown().await;
}
