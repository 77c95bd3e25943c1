//! Conditional status writes with conflict retry, and the condition helpers the three kinds
//! share.

use std::sync::Arc;

use tinkerbell_core::model::bmc::{JobCondition, TaskCondition, condition_status};
use tinkerbell_core::store::{Object, ObjectKey, Store, StoreError};

/// Attempts before a write that keeps conflicting is given up (the reconcile then backs off
/// and starts over).
const ATTEMPTS: usize = 8;

/// Read `key`, let `change` decide the new object (`None`: nothing to write), and write its
/// status conditionally on the resourceVersion read. On a conflict, read and decide again.
/// Returns the written object, or `None` when the object is gone or nothing was written.
pub(crate) async fn update<F>(
    store: &dyn Store,
    key: &ObjectKey,
    mut change: F,
) -> Result<Option<Object>, StoreError>
where
    F: FnMut(&Object) -> Option<Object>,
{
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let cur = match store.get(key.kind, &key.namespace, &key.name).await {
            Ok(o) => o,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let Some(mut new) = change(&cur) else {
            return Ok(None);
        };
        new.meta_mut().resource_version = cur.resource_version().map(str::to_string);
        match store.update_status(new).await {
            Ok(o) => return Ok(Some(o)),
            Err(e @ StoreError::Conflict { .. }) => {
                tracing::debug!(object = %key, "status write conflicted; reading again");
                last = Some(e);
            }
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::NotFound(key.clone())))
}

/// A Job or Task condition (same shape).
pub(crate) trait Condition: Clone + PartialEq {
    fn type_(&self) -> &str;
    fn status(&self) -> &str;
    fn make(type_: &str, status: &str, message: Option<String>) -> Self;
}

/// Both condition types have the same fields.
macro_rules! impl_condition {
    ($($t:ident),*) => {$(
        impl Condition for $t {
            fn type_(&self) -> &str {
                self.type_.as_deref().unwrap_or("")
            }
            fn status(&self) -> &str {
                self.status.as_deref().unwrap_or("")
            }
            fn make(type_: &str, status: &str, message: Option<String>) -> Self {
                $t {
                    type_: Some(type_.into()),
                    status: Some(status.into()),
                    message,
                }
            }
        }
    )*};
}

impl_condition!(JobCondition, TaskCondition);

/// Whether `conds` has condition `type_` with status True.
pub(crate) fn is_true<C: Condition>(conds: &Option<Vec<C>>, type_: &str) -> bool {
    conds
        .iter()
        .flatten()
        .any(|c| c.type_() == type_ && c.status() == condition_status::TRUE)
}

/// Set condition `type_` (replacing one of the same type), as upstream's `SetCondition`.
pub(crate) fn set<C: Condition>(
    conds: &mut Option<Vec<C>>,
    type_: &str,
    status: &str,
    message: Option<String>,
) {
    let list = conds.get_or_insert_with(Vec::new);
    let c = C::make(type_, status, message.filter(|m| !m.is_empty()));
    match list.iter_mut().find(|x| x.type_() == type_) {
        Some(x) => *x = c,
        None => list.push(c),
    }
}

/// Clone the payload of `Arc<T>` for a change.
pub(crate) fn edit<T: Clone>(a: &Arc<T>) -> T {
    (**a).clone()
}
