//! The Tinkerbell CRDs on a cluster: install them (server-side apply, as `kubectl apply
//! --server-side` does) and check that a cluster has them before a service starts on it.
//!
//! Why a check at start-up: a service on `--backend kube` against a cluster without the CRDs
//! would otherwise retry 404s forever; the operator gets one message naming the missing CRDs.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::StoreError;
use crate::model::all_crds;

/// The field manager our server-side applies use.
pub const FIELD_MANAGER: &str = "tinkerbell";

/// Server-side apply every CRD of [`all_crds`] and wait (at most `timeout`) until each is
/// `Established`, so objects of every kind can be written as soon as this returns.
pub async fn install_crds(client: &Client, timeout: Duration) -> Result<(), StoreError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let crds = all_crds();
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &pp, &Patch::Apply(crd))
            .await
            .map_err(|e| crd_error(&name, e))?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for crd in &crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        loop {
            let cur = api.get(&name).await.map_err(|e| crd_error(&name, e))?;
            if is_established(&cur) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(StoreError::CrdsMissing {
                    missing: vec![format!("{name} (not Established within {timeout:?})")],
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn is_established(crd: &CustomResourceDefinition) -> bool {
    crd.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        })
}

fn crd_error(name: &str, e: kube::Error) -> StoreError {
    StoreError::KubeCall {
        what: format!("CustomResourceDefinition {name}"),
        source: e,
    }
}
