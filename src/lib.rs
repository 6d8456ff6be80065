//! acr-autoattach: grants AKS kubelet identities pull access to the container registries whose opt-in tag
//! selects them, verifies it continuously and repairs drift.

pub mod model;
